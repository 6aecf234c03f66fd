"""Job operators: render a preview, cancel, re-attach, import (open) a result, tidy the list."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from .. import bridge, job_params, props, scene_export
from . import gates


def _item(context: bpy.types.Context, job_id: str) -> props.AVS_JobItem | None:
    return next((i for i in context.scene.avatar_studio.jobs if i.job_id == job_id), None)


class AVS_OT_render_preview(bpy.types.Operator):
    """Render the active body's animation through the selected cameras (or the scene camera) over the
    frame range; the passes come back as strips in the Video Sequence Editor"""

    bl_idname = "avatar_studio.render_preview"
    bl_label = "Render Preview"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected_with_body(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = context.scene
        settings = scene.avatar_studio
        arm_obj = scene_export.find_smplx_armature(context)
        try:
            cameras = scene_export.scene_cameras(context, settings.use_selected_cameras)
            motion = scene_export.export_smplx_motion(scene, arm_obj)
            paths = scene_export.export_camera_paths(scene, cameras, width=settings.preview_width)
        except scene_export.ExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        passes = [
            name
            for name, wanted in (
                ("mask", settings.preview_mask),
                ("depth", settings.preview_depth),
                ("normal", settings.preview_normals),
                ("pose", settings.preview_pose),
            )
            if wanted
        ]
        the_bridge = bridge.get_bridge()
        frames = job_params.motion_frames(motion)
        # One job per camera: each comes back as its own set of strips (one per pass).
        for camera, path in zip(cameras, paths, strict=True):
            the_bridge.submit(
                scene,
                "body.preview",
                job_params.body_preview_params(motion, path, passes),
                target=arm_obj.name,
                frame_start=int(motion[job_params.POSE.frame_start]),
                meta={"camera_name": camera.name, "frame_count": frames},
            )
        self.report({"INFO"}, f"rendering {frames} frames through {len(cameras)} camera(s)")
        return {"FINISHED"}


class _JobOperator:
    job_id: StringProperty(name="Job ID")

    @classmethod
    def _job(cls, context: bpy.types.Context, job_id: str) -> props.AVS_JobItem | None:
        return _item(context, job_id)


class AVS_OT_cancel_job(_JobOperator, bpy.types.Operator):
    """Ask the backend to cancel this job, or stop downloading and importing its results"""

    bl_idname = "avatar_studio.cancel_job"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.connected() or bool(bridge.get_bridge().results)

    def execute(self, context: bpy.types.Context) -> set[str]:
        the_bridge = bridge.get_bridge()
        if the_bridge.cancel_import(self.job_id):  # an import is local: it stops at once
            self.report({"INFO"}, "import cancelled")
            return {"FINISHED"}
        item = self._job(context, self.job_id)
        if item is None or item.state in props.TERMINAL_STATES:
            self.report({"WARNING"}, "that job is not running")
            return {"CANCELLED"}
        if not the_bridge.connected:
            self.report({"WARNING"}, "connect to a backend first")
            return {"CANCELLED"}
        the_bridge.cancel(self.job_id)
        return {"FINISHED"}


class AVS_OT_reattach_job(_JobOperator, bpy.types.Operator):
    """Follow this job again: its state, progress and results come back from the backend"""

    bl_idname = "avatar_studio.reattach_job"
    bl_label = "Re-attach Job"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.connected()

    def execute(self, context: bpy.types.Context) -> set[str]:
        if self._job(context, self.job_id) is None:
            self.report({"ERROR"}, f"no job {self.job_id} in this scene")
            return {"CANCELLED"}
        bridge.get_bridge().reattach(self.job_id)
        return {"FINISHED"}


class AVS_OT_import_job(_JobOperator, bpy.types.Operator):
    """Download this job's results and import them into the scene (again)"""

    bl_idname = "avatar_studio.import_job"
    bl_label = "Import Result"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.connected()

    def execute(self, context: bpy.types.Context) -> set[str]:
        item = self._job(context, self.job_id)
        if item is None or item.state != "succeeded":
            self.report({"ERROR"}, "only a succeeded job has results to import")
            return {"CANCELLED"}
        item.imported = False
        bridge.get_bridge().start_import(context.scene, item)
        return {"FINISHED"}


class AVS_OT_fetch_jobs(bpy.types.Operator):
    """Add the backend's jobs (also those submitted from the command line or another Blender)"""

    bl_idname = "avatar_studio.fetch_jobs"
    bl_label = "Fetch Backend Jobs"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.connected()

    def execute(self, context: bpy.types.Context) -> set[str]:
        bridge.get_bridge().fetch_jobs(context.scene)
        return {"FINISHED"}


class AVS_OT_remove_job(bpy.types.Operator):
    """Remove a job from this list (it stays on the backend)"""

    bl_idname = "avatar_studio.remove_job"
    bl_label = "Remove Job"

    index: IntProperty(default=-1)

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs = context.scene.avatar_studio.jobs
        index = self.index if self.index >= 0 else context.scene.avatar_studio.active_job_index
        if not 0 <= index < len(jobs):
            return {"CANCELLED"}
        jobs.remove(index)
        context.scene.avatar_studio.active_job_index = max(0, min(index, len(jobs) - 1))
        return {"FINISHED"}


class AVS_OT_clear_finished_jobs(bpy.types.Operator):
    """Remove finished jobs from this list"""

    bl_idname = "avatar_studio.clear_finished_jobs"
    bl_label = "Clear Finished"

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs = context.scene.avatar_studio.jobs
        for index in reversed(range(len(jobs))):
            if jobs[index].state in props.TERMINAL_STATES:
                jobs.remove(index)
        context.scene.avatar_studio.active_job_index = 0
        return {"FINISHED"}


CLASSES = (
    AVS_OT_render_preview,
    AVS_OT_cancel_job,
    AVS_OT_reattach_job,
    AVS_OT_import_job,
    AVS_OT_fetch_jobs,
    AVS_OT_remove_job,
    AVS_OT_clear_finished_jobs,
)
