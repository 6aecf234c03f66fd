"""The Footage panel: pick the shot (a sequencer strip or a Movie Clip), the avatar and its motion,
the camera, depth, route, where the avatar stands, shadow and lighting; Insert Avatar / Decompose /
Cancel, and the last footage job's state. Settings: ``footage_settings.py``; what is sent:
``footage_export.py``; the operators: ``operators/footage.py``."""

from __future__ import annotations

import textwrap

import bpy

from . import bridge
from .footage_settings import (
    AVATAR_FOLDER,
    DEPTH_PATH,
    MOTION_ACTION,
    MOTION_FILE,
    SOURCE_CLIP,
)

WIDTH = 38  # characters per label line; the sidebar does not wrap labels


class AVS_PT_footage(bpy.types.Panel):
    """Insert an avatar into shot footage (footage.insert): layers back as strips above the footage"""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar Studio"
    bl_idname = "AVS_PT_footage"
    bl_label = "Footage"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 - Blender reads a plain set

    def draw(self, context: bpy.types.Context) -> None:
        from .operators import footage as footage_ops

        layout = self.layout
        scene = context.scene
        settings = scene.avatar_studio.footage
        layout.prop(settings, "source", expand=True)
        if settings.source == SOURCE_CLIP:
            layout.prop(settings, "clip")
        elif scene.sequence_editor is not None:
            layout.prop_search(settings, "strip_name", scene.sequence_editor, "strips_all", text="Strip")
        else:
            layout.label(text="Add the footage to the sequencer first", icon="INFO")
        layout.prop(settings, "use_scene_range")

        box = layout.box()
        box.prop(settings, "avatar_source", expand=True)
        box.prop(settings, "avatar_dir" if settings.avatar_source == AVATAR_FOLDER else "avatar_object")
        box.prop(settings, "motion")
        if settings.motion == MOTION_FILE:
            box.prop(settings, "motion_path")
        elif settings.motion == MOTION_ACTION:
            box.prop(settings, "motion_armature")

        layout.prop(settings, "camera")
        layout.prop(settings, "depth_source")
        if settings.depth_source == DEPTH_PATH:
            layout.prop(settings, "depth_path")
        layout.prop(settings, "route", expand=True)
        layout.prop(settings, "place_from_cursor")
        if not settings.place_from_cursor:
            layout.prop(settings, "place")
        row = layout.row(align=True)
        row.prop(settings, "heading")
        row.prop(settings, "shadow")
        layout.prop(settings, "lighting")
        layout.prop(settings, "paths_on_backend")

        if bridge.get_bridge().has_job_kind("footage.insert"):
            row = layout.row(align=True)
            row.operator("avatar_studio.footage_insert", icon="SEQUENCE").kind = "footage.insert"
            row.operator("avatar_studio.footage_insert", text="Decompose",
                         icon="RENDERLAYERS").kind = "footage.decompose"
            row.operator("avatar_studio.footage_cancel", text="", icon="X")
        else:
            layout.label(text="Needs a backend with footage.insert", icon="INFO")
        column = layout.column(align=True)
        if footage_ops.progress["message"]:
            for line in textwrap.wrap(footage_ops.progress["message"], WIDTH):
                column.label(text=line)
        item = footage_ops.last_footage_job(scene)
        if item is not None:
            text = f"{item.kind}: {item.state}"
            if item.state == "running":
                text += f" {100 * item.fraction:.0f}% {item.stage}"
            column.label(text=text)
            for line in textwrap.wrap(item.error, WIDTH)[:4] if item.error else ():
                column.label(text=line, icon="ERROR")


CLASSES = (AVS_PT_footage,)
