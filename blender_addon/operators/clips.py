"""Clips operators: render a dataset on the backend (clips.render) and load one clip of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
from bpy.props import IntProperty, StringProperty

from .. import bridge, job_params, scene_export
from ..clip_settings import SCENE_CAMERAS, SELECTED_BODIES
from ..importers.clip import clip_folder
from ..importers.dispatch import CLIP_BODIES, CLIP_DATASET, CLIP_INDEX
from . import gates


def clip_cameras(context: bpy.types.Context) -> list[bpy.types.Object]:
    """The selected cameras (name order), else every camera of the scene."""
    selected = sorted((o for o in getattr(context, "selected_objects", []) if o.type == "CAMERA"),
                      key=lambda o: o.name)
    everything = sorted((o for o in context.scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
    cameras = selected or everything
    if not cameras:
        raise scene_export.ExportError("no camera in the scene: add one, or use a rig")
    return cameras


def clip_bodies(context: bpy.types.Context) -> list[bpy.types.Object]:
    """The selected SMPL-X bodies (an avatar-studio body's armature, or its mesh), name order."""
    found: dict[str, bpy.types.Object] = {}
    for obj in getattr(context, "selected_objects", []):
        if obj.type == "MESH" and obj.parent is not None:
            obj = obj.parent
        if obj.avatar_studio_body.is_body and scene_export.is_smplx_armature(obj):
            found[obj.name] = obj
    if not found:
        raise scene_export.ExportError("no SMPL-X body selected: select bodies, or use sampled people")
    limit = job_params.kinds.CLIP_MAX_PEOPLE
    if len(found) > limit:
        raise scene_export.ExportError(f"{len(found)} bodies selected; a clip holds at most {limit} people")
    return [found[name] for name in sorted(found)]


def build_clips_params(context: bpy.types.Context) -> tuple[dict[str, Any], int]:
    """The clips.render params of the Clips panel and the scene frame clip frame 0 lands on. With
    "Selected Bodies", each body's animation over the frame range (the camera paths' too) is one
    person, exported by the one SMPL-X export (``scene_export.export_smplx_motion``)."""
    scene = context.scene
    settings = scene.avatar_studio.clips
    bodies = None
    if settings.people_source == SELECTED_BODIES:
        bodies = [scene_export.export_smplx_motion(scene, arm) for arm in clip_bodies(context)]
    if settings.camera_source != SCENE_CAMERAS:
        return job_params.clips_render_params(settings, bodies=bodies), scene.frame_start
    paths = scene_export.export_camera_paths(scene, clip_cameras(context), width=settings.width)
    return job_params.clips_render_params(settings, paths, bodies), scene.frame_start


class AVS_OT_render_clips(bpy.types.Operator):
    """Render synthetic training clips with exact ground truth on the backend (clips.render); the
    first clip comes back as animated cameras and RGB strips"""

    bl_idname = "avatar_studio.render_clips"
    bl_label = "Render Clips"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected(cls) and gates.poll_job_kind(cls, "clips.render")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            params, frame_start = build_clips_params(context)
            job_params.validate("clips.render", params)
        except (scene_export.ExportError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        meta = {CLIP_INDEX: 0, CLIP_BODIES: context.scene.avatar_studio.clips.load_people}
        bridge.get_bridge().submit(context.scene, "clips.render", params, frame_start=frame_start, meta=meta)
        self.report({"INFO"}, "clips requested (see the Jobs panel)")
        return {"FINISHED"}


class AVS_OT_load_clip(bpy.types.Operator):
    """Load one clip of a clips dataset folder: its cameras (animated, exact K, R, t) and its RGB
    frames as strips in the Video Sequence Editor"""

    bl_idname = "avatar_studio.load_clip"
    bl_label = "Load Clip"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender reads a plain set

    directory: StringProperty(name="Dataset", subtype="DIR_PATH")
    clip: IntProperty(name="Clip", default=-1, min=-1, description="-1: the panel's clip number")

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if not self.directory and not context.scene.avatar_studio.clips.dataset_dir:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.avatar_studio.clips
        folder = Path(bpy.path.abspath(self.directory or settings.dataset_dir))
        index = settings.load_index if self.clip < 0 else self.clip
        try:
            clip_folder(folder, index)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings.dataset_dir = str(folder)
        # In steps across the bridge's pumps, like a job's results (the Jobs panel shows progress).
        bridge.get_bridge().import_local(context.scene, "clips.render", f"clip:{folder}:{index}", {}, {}, {},
                                         meta={CLIP_DATASET: str(folder), CLIP_INDEX: index,
                                               CLIP_BODIES: settings.load_people}, folder=folder,
                                         frame_start=context.scene.frame_start)
        return {"FINISHED"}


CLASSES = (AVS_OT_render_clips, AVS_OT_load_clip)
