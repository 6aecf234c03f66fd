"""Scene export: what the backend needs from the Blender scene, in the protocol's conventions.

- :func:`export_smplx_motion`: the selected SMPL-X armature's animation over a frame range as
  per-frame SMPL-X parameters (docs/protocol.md "SMPL-X parameters"): each bone's evaluated pose
  (actions, NLA, constraints included) becomes the joint's rotation relative to its parent in the
  Y-up model frame, axis-angle, split into ``global_orient``/``body_pose``/hands/face in SMPL-X
  joint order; the pelvis position becomes ``transl``. The armature object's own transform is
  folded into ``global_orient`` and ``transl`` (object scale is not supported).
- :func:`export_camera_paths`: cameras over the frame range as ``CameraPath`` payloads. The camera
  math is ``protocol/cameras.py``'s (the one Blender <-> protocol conversion); this module only
  copies bpy fields into it.

Frames are visited once with ``scene.frame_set`` and the original frame is restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bpy
import numpy as np

from . import axes, rig_math, smplx_rig
from .importers.action import bone_joint_map, rest_rotations
from .wire import cameras_module, kinds_module, smplx


class ExportError(ValueError):
    """The scene cannot be exported as asked (no SMPL-X armature, no camera, bad frame range)."""


def frame_range(scene: bpy.types.Scene) -> tuple[int, int]:
    return scene.frame_start, scene.frame_end


def is_smplx_armature(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == "ARMATURE" and len(bone_joint_map(obj)) == smplx_rig.NUM_JOINTS


def find_smplx_armature(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active object if it is (or is skinned to) an SMPL-X armature, else a selected one."""
    candidates = [context.active_object, *getattr(context, "selected_objects", [])]
    for obj in candidates:
        if obj is None:
            continue
        if obj.type == "MESH" and obj.parent is not None:
            obj = obj.parent
        if is_smplx_armature(obj):
            return obj
    return None


def _frames(start: int, end: int) -> list[int]:
    if end < start:
        raise ExportError(f"empty frame range {start}..{end}")
    return list(range(start, end + 1))


def _visit_frames(scene: bpy.types.Scene, frames: Sequence[int], visit: Any) -> None:
    original = scene.frame_current
    try:
        for frame in frames:
            scene.frame_set(frame)
            visit(frame)
    finally:
        scene.frame_set(original)


def _pose_sample(
    arm_obj: bpy.types.Object,
    depsgraph: bpy.types.Depsgraph,
    bones: list[bpy.types.Bone],
    parents: list[int],
    rest_rot: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(J, 3, 3) SMPL-X local rotations and the pelvis position (protocol world) at this frame."""
    evaluated = arm_obj.evaluated_get(depsgraph)
    pose_bones = [evaluated.pose.bones[b.name] for b in bones]
    pose_matrices = np.array([np.array(pb.matrix) for pb in pose_bones])
    world = np.array(arm_obj.matrix_world)
    object_rot = world[:3, :3] / np.linalg.norm(world[:3, :3], axis=0, keepdims=True)
    if any(len(pb.constraints) for pb in pose_bones):
        # Constraints act after the keys: derive each joint's rotation from the final pose matrices.
        pose_rot = pose_matrices[:, :3, :3]
        pose_rot = pose_rot / np.linalg.norm(pose_rot, axis=1, keepdims=True)
        deform = pose_rot @ np.linalg.inv(rest_rot)  # skinning rotation, armature space
        relative = np.array([deform[j] if p < 0 else deform[p].T @ deform[j] for j, p in enumerate(parents)])
        local = axes.PROTOCOL_FROM_BLENDER @ relative @ axes.BLENDER_FROM_PROTOCOL
    else:
        # Straight from the animated local transforms: no float32 products along the chains.
        basis = np.array([np.array(pb.matrix_basis.to_3x3().normalized()) for pb in pose_bones])
        local = rig_math.basis_to_smplx(basis, rest_rot, axes.BLENDER_FROM_PROTOCOL)
    # The armature object's rotation turns the whole body: it belongs to the root joint.
    local[0] = axes.PROTOCOL_FROM_BLENDER @ object_rot @ axes.BLENDER_FROM_PROTOCOL @ local[0]
    pelvis_world = world[:3, :3] @ pose_matrices[0, :3, 3] + world[:3, 3]
    return local, axes.to_protocol(pelvis_world)


def export_smplx_motion(
    scene: bpy.types.Scene,
    arm_obj: bpy.types.Object,
    frame_start: int | None = None,
    frame_end: int | None = None,
) -> dict[str, Any]:
    """The SMPL-X parameters payload of ``arm_obj``'s animation over ``frame_start..frame_end``."""
    joint_bones = bone_joint_map(arm_obj)
    if sorted(joint_bones) != list(range(smplx_rig.NUM_JOINTS)):
        raise ExportError(
            f"{arm_obj.name} is not an SMPL-X armature (needs the 55 joints, found {len(joint_bones)})"
        )
    start, end = frame_range(scene)
    frames = _frames(start if frame_start is None else frame_start, end if frame_end is None else frame_end)
    bones = [joint_bones[j] for j in range(smplx_rig.NUM_JOINTS)]
    rest_rot = rest_rotations(bones)
    rest_pelvis = axes.to_protocol(np.array(bones[0].head_local))
    # The model's pelvis in protocol space: the object transform is part of the motion, not the rest.
    local_rotations: list[np.ndarray] = []
    pelvis: list[np.ndarray] = []
    depsgraph = bpy.context.evaluated_depsgraph_get()

    def visit(_frame: int) -> None:
        local, pelvis_pos = _pose_sample(arm_obj, depsgraph, bones, list(smplx_rig.PARENTS), rest_rot)
        local_rotations.append(local)
        pelvis.append(pelvis_pos)

    _visit_frames(scene, frames, visit)
    aa = rig_math.matrix_to_aa(np.stack(local_rotations))  # (F, 55, 3)
    payload: dict[str, Any] = smplx.split_full_pose(aa)  # the protocol's pose field layout
    names = kinds_module().names(kinds_module().SMPLX_POSE)  # the payload's field names
    payload[names.transl] = np.stack(pelvis) - rest_pelvis
    settings = arm_obj.avatar_studio_body
    payload[names.betas] = np.array(settings.betas, dtype=np.float64)
    payload[names.expression] = np.array(settings.expression, dtype=np.float64)
    payload[names.gender] = settings.gender
    payload[names.fps] = scene.render.fps / scene.render.fps_base
    payload[names.frame_start] = frames[0]
    return payload


def blender_camera(scene: bpy.types.Scene, cam_obj: bpy.types.Object) -> Any:
    """The bpy fields of a camera at the current frame, as ``protocol.cameras.BlenderCamera``."""
    cameras = cameras_module()
    data = cam_obj.data
    if data.type != "PERSP":
        raise ExportError(f"camera {cam_obj.name} is {data.type.lower()}; only perspective cameras export")
    render = scene.render
    return cameras.BlenderCamera(
        lens=data.lens,
        sensor_width=data.sensor_width,
        sensor_height=data.sensor_height,
        sensor_fit=data.sensor_fit,
        shift_x=data.shift_x,
        shift_y=data.shift_y,
        clip_start=data.clip_start,
        clip_end=data.clip_end,
        resolution_x=render.resolution_x,
        resolution_y=render.resolution_y,
        resolution_percentage=render.resolution_percentage,
        pixel_aspect_x=render.pixel_aspect_x,
        pixel_aspect_y=render.pixel_aspect_y,
        matrix_world=np.array(cam_obj.matrix_world),
    )


def scene_cameras(context: bpy.types.Context, use_selected: bool = True) -> list[bpy.types.Object]:
    """Selected cameras (in name order) if asked and any, else the scene camera."""
    selected = sorted(
        (o for o in getattr(context, "selected_objects", []) if o.type == "CAMERA"), key=lambda o: o.name
    )
    if use_selected and selected:
        return selected
    if context.scene.camera is not None:
        return [context.scene.camera]
    raise ExportError("no camera: select cameras or set the scene camera")


def export_camera_paths(
    scene: bpy.types.Scene,
    camera_objects: Sequence[bpy.types.Object],
    frame_start: int | None = None,
    frame_end: int | None = None,
    *,
    width: int | None = None,
) -> list[Any]:
    """One ``CameraPath`` per camera over the frame range (animated cameras are sampled per frame).

    ``width`` renders at another resolution (height follows the scene's aspect), same field of view.
    """
    if not camera_objects:
        raise ExportError("no cameras to export")
    cameras = cameras_module()
    start, end = frame_range(scene)
    frames = _frames(start if frame_start is None else frame_start, end if frame_end is None else frame_end)
    samples: dict[str, list[Any]] = {cam.name: [] for cam in camera_objects}

    def visit(_frame: int) -> None:
        for cam in camera_objects:
            fields = blender_camera(scene, cam)
            if width is not None:
                _resize(fields, width)
            samples[cam.name].append(fields)

    _visit_frames(scene, frames, visit)
    fps = scene.render.fps / scene.render.fps_base
    return [
        cameras.camera_path_from_blender(
            samples[cam.name], fps=fps, frame_start=frames[0], names=[f"{cam.name}:{f}" for f in frames]
        )
        for cam in camera_objects
    ]


def _resize(fields: Any, new_width: int) -> None:
    """Render ``new_width`` pixels wide with the scene's aspect and the same field of view."""
    width, height = fields.image_size()
    fields.resolution_x, fields.resolution_y = int(new_width), max(1, round(height * new_width / width))
    fields.resolution_percentage = 100
