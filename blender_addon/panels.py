"""Sidebar panels in the 3D View (tab "Avatar Studio"): Connection, Body, Avatar, Clips, Footage, Jobs."""

from __future__ import annotations

import bpy

from . import avatar_panel, bridge, clip_settings, local_backend, props, scene_export
from .footage_panel import AVS_PT_footage

STATE_ICONS = {
    "submitting": "EXPORT",
    "queued": "SORTTIME",
    "running": "PLAY",
    "succeeded": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "CANCEL",
    "unknown": "QUESTION",
}


class _SidebarPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Avatar Studio"


class AVS_PT_connection(_SidebarPanel, bpy.types.Panel):
    bl_idname = "AVS_PT_connection"
    bl_label = "Connection"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        the_bridge = bridge.get_bridge()
        layout.label(text=the_bridge.status_text(), icon=the_bridge.status_icon())
        row = layout.row(align=True)
        if the_bridge.want_connection:
            row.operator("avatar_studio.disconnect", icon="UNLINKED")
        else:
            row.operator("avatar_studio.connect", icon="LINKED")
        row = layout.row(align=True)
        if local_backend.is_running():
            row.label(text=f"Local backend pid {local_backend.pid()}")
            row.operator("avatar_studio.stop_backend", text="", icon="PAUSE")
        else:
            row.operator("avatar_studio.start_backend", icon="PLAY")
        if the_bridge.client is not None and the_bridge.client.server_info:
            info = the_bridge.client.server_info
            layout.label(
                text=f"Server {info.get('server_version', '?')}, protocol {info.get('protocol_version', '?')}"
            )


class AVS_PT_body(_SidebarPanel, bpy.types.Panel):
    bl_idname = "AVS_PT_body"
    bl_label = "Body"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.operator("avatar_studio.add_body", icon="ARMATURE_DATA")
        arm_obj = scene_export.find_smplx_armature(context)
        if arm_obj is None:
            layout.label(text="Select an SMPL-X body to shape and animate it", icon="INFO")
            return
        settings = arm_obj.avatar_studio_body
        layout.label(text=arm_obj.name, icon="OUTLINER_OB_ARMATURE")
        layout.prop(settings, "gender")
        column = layout.column(align=True)
        column.label(text="Shape")
        for index in range(len(settings.betas)):
            column.prop(settings, "betas", index=index, text=f"Beta {index}", slider=True)
        column = layout.column(align=True)
        column.label(text="Expression")
        for index in range(len(settings.expression)):
            column.prop(settings, "expression", index=index, text=f"Expression {index}", slider=True)
        layout.operator("avatar_studio.apply_shape", icon="MOD_MESHDEFORM")
        layout.operator("avatar_studio.load_amass", icon="ANIM")
        layout.operator("avatar_studio.pose_on_backend", icon="POSE_HLT")


class AVS_PT_preview(_SidebarPanel, bpy.types.Panel):
    bl_idname = "AVS_PT_preview"
    bl_label = "Preview Render"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.avatar_studio
        layout.prop(settings, "preview_width")
        layout.prop(settings, "use_selected_cameras")
        row = layout.row(align=True)
        for name in ("preview_mask", "preview_depth", "preview_normals", "preview_pose"):
            row.prop(settings, name, toggle=True)
        layout.label(text=f"Frames {context.scene.frame_start}-{context.scene.frame_end}")
        layout.operator("avatar_studio.render_preview", icon="RENDER_ANIMATION")


class AVS_PT_avatar(_SidebarPanel, bpy.types.Panel):
    bl_idname = "AVS_PT_avatar"
    bl_label = "Avatar"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 - Blender reads a plain set

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(context.scene.avatar_studio.avatar, "source", expand=True)
        if context.scene.avatar_studio.avatar.source != "VIEWS":  # prompt / photo: avatar_panel.py
            avatar_panel.draw_generated(layout, context.scene)
            return
        # Say what runs: avatar.from_views sculpts, textures and rigs an avatar from the views of
        # a synthetic character made on the backend.
        column = layout.column(align=True)
        if bridge.get_bridge().has_job_kind("avatar.from_views"):
            for line in ("A textured, rigged SMPL-X avatar", "from views of a synthetic character."):
                column.label(text=line)
            layout.operator("avatar_studio.generate_avatar", icon="OUTLINER_OB_ARMATURE")
            # Any character in the scene: render the selection, fit SMPL-X, rig and texture it.
            layout.operator("avatar_studio.avatar_from_selected", icon="MOD_ARMATURE")
            from .operators.from_selected import progress as selected_progress

            if selected_progress["message"]:
                layout.label(text=selected_progress["message"])
            avatar_panel.draw_random(layout, context.scene)  # a trained 3DGM run: Random Avatar
        else:
            for line in (
                "Needs a backend with avatar.from_views:",
                "a synthetic character's views to a",
                "textured, rigged SMPL-X avatar.",
            ):
                column.label(text=line)


class AVS_PT_clips(_SidebarPanel, bpy.types.Panel):
    """Synthetic training clips (clips.render): SMPL-X people with a motion, seen by a sampled rig
    or the scene's (animated) cameras, with exact ground truth; Load Clip brings one back."""

    bl_idname = "AVS_PT_clips"
    bl_label = "Clips"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 - Blender reads a plain set

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.avatar_studio.clips
        layout.prop(settings, "people_source", expand=True)
        if settings.people_source == clip_settings.SAMPLED:
            row = layout.row(align=True)
            row.prop(settings, "people")
            row.prop(settings, "people_max")
            layout.prop(settings, "motion")
            if settings.motion == clip_settings.MOTION_FILE:
                layout.prop(settings, "motion_path")
        else:
            layout.label(text="Selected bodies, their actions, where they stand")
        layout.prop(settings, "camera_source", expand=True)
        if settings.camera_source == clip_settings.RIG:
            row = layout.row(align=True)
            row.prop(settings, "rig", text="")
            row.prop(settings, "rig_count")
            layout.prop(settings, "frames")
            row = layout.row(align=True)
            row.prop(settings, "width")
            row.prop(settings, "height")
        else:
            scene = context.scene
            layout.label(text=f"Frames {scene.frame_start}-{scene.frame_end}, selected or all cameras")
            layout.prop(settings, "width")
        row = layout.row(align=True)
        row.prop(settings, "clips")
        row.prop(settings, "seed")
        layout.prop(settings, "passes")
        if bridge.get_bridge().has_job_kind("clips.render"):
            layout.operator("avatar_studio.render_clips", icon="RENDER_ANIMATION")
        else:
            layout.label(text="Needs a backend with clips.render", icon="INFO")
        box = layout.box()
        box.prop(settings, "dataset_dir")
        row = box.row(align=True)
        row.prop(settings, "load_index")
        row.prop(settings, "load_people", toggle=True)
        row.operator("avatar_studio.load_clip", icon="IMPORT")


class AVS_UL_jobs(bpy.types.UIList):
    bl_idname = "AVS_UL_jobs"

    def draw_item(
        self,
        context: bpy.types.Context,
        layout: bpy.types.UILayout,
        data: object,
        item: props.AVS_JobItem,
        icon: int,
        active_data: object,
        active_property: str,
        index: int = 0,
        flt_flag: int = 0,
    ) -> None:
        row = layout.row(align=True)
        row.label(text=item.kind, icon=STATE_ICONS.get(item.state, "QUESTION"))
        importing = bridge.get_bridge().import_progress(item.job_id) if item.job_id else None
        if importing is not None:  # results downloading or importing, a little per pump
            row.label(text=importing)
            row.operator("avatar_studio.cancel_job", text="", icon="X").job_id = item.job_id
        elif item.state in ("queued", "running", "unknown"):
            row.progress(factor=item.fraction, type="BAR", text=f"{item.fraction * 100:.0f}%")
            cancel = row.operator("avatar_studio.cancel_job", text="", icon="X")
            cancel.job_id = item.job_id
        else:
            row.label(text=item.state)


class AVS_PT_jobs(_SidebarPanel, bpy.types.Panel):
    bl_idname = "AVS_PT_jobs"
    bl_label = "Jobs"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.avatar_studio
        layout.template_list("AVS_UL_jobs", "", settings, "jobs", settings, "active_job_index", rows=4)
        row = layout.row(align=True)
        row.prop(settings, "auto_import")
        row.operator("avatar_studio.fetch_jobs", text="Fetch", icon="IMPORT")
        if not 0 <= settings.active_job_index < len(settings.jobs):
            return
        item = settings.jobs[settings.active_job_index]
        box = layout.box()
        box.label(text=f"{item.kind}  {item.job_id[:12] or '(not accepted yet)'}")
        box.label(text=f"State: {item.state}  {item.stage}")
        importing = bridge.get_bridge().import_progress(item.job_id) if item.job_id else None
        if importing is not None:
            box.label(text=importing, icon="IMPORT")
        elif item.message:
            box.label(text=item.message)
        if item.error:
            box.label(text=item.error, icon="ERROR")
        row = box.row(align=True)
        row.operator("avatar_studio.cancel_job", text="Cancel", icon="X").job_id = item.job_id
        row.operator("avatar_studio.reattach_job", text="Re-attach", icon="FILE_REFRESH").job_id = item.job_id
        row.operator("avatar_studio.import_job", text="Open Result", icon="IMPORT").job_id = item.job_id
        row = layout.row(align=True)
        row.operator("avatar_studio.remove_job", icon="REMOVE").index = settings.active_job_index
        row.operator("avatar_studio.clear_finished_jobs", icon="TRASH")


CLASSES = (
    AVS_PT_connection,
    AVS_PT_body,
    AVS_PT_preview,
    AVS_PT_avatar,
    AVS_PT_clips,
    AVS_PT_footage,
    AVS_UL_jobs,
    AVS_PT_jobs,
)
