"""Body operators: add an SMPL-X body, apply its shape, load an AMASS motion, pose it on the backend."""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import axes, bridge, job_params, motion_io, scene_export
from ..importers.action import apply_pose_action, bone_joint_map
from . import gates


class AVS_OT_add_body(bpy.types.Operator):
    """Add an SMPL-X body (mesh + armature of the 55 joints + skinning weights) made by the backend"""

    bl_idname = "avatar_studio.add_body"
    bl_label = "Add SMPL-X Body"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    name: StringProperty(name="Name", default="SMPLX")
    gender: EnumProperty(
        name="Gender",
        items=[("neutral", "Neutral", ""), ("male", "Male", ""), ("female", "Female", "")],
        default="neutral",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected(cls)

    def execute(self, context: bpy.types.Context) -> set[str]:
        shape = job_params.default_shape(self.gender)
        item = bridge.get_bridge().submit(
            context.scene,
            "body.mesh",
            job_params.body_mesh_params(shape),
            meta={**shape, "name": self.name},
            auto_import=True,
        )
        self.report({"INFO"}, f"requested a {self.gender} body from the backend ({item.request_key[:8]})")
        return {"FINISHED"}


class AVS_OT_apply_shape(bpy.types.Operator):
    """Rebuild the active body's mesh and joints for its shape and expression sliders"""

    bl_idname = "avatar_studio.apply_shape"
    bl_label = "Apply Shape"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected_with_body(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        arm_obj = scene_export.find_smplx_armature(context)
        shape = job_params.shape_params(arm_obj.avatar_studio_body)
        bridge.get_bridge().submit(
            context.scene,
            "body.mesh",
            job_params.body_mesh_params(shape),
            target=arm_obj.name,
            meta={**shape, "name": arm_obj.name},
            auto_import=True,
        )
        return {"FINISHED"}


class AVS_OT_pose_on_backend(bpy.types.Operator):
    """Send the active body's animation over the frame range; the backend's posed body comes back
    as a new body with that motion as an action (a check of the rig against the backend)"""

    bl_idname = "avatar_studio.pose_on_backend"
    bl_label = "Pose on Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected_with_body(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        arm_obj = scene_export.find_smplx_armature(context)
        try:
            motion = scene_export.export_smplx_motion(context.scene, arm_obj)
        except scene_export.ExportError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        shape = job_params.shape_params(arm_obj.avatar_studio_body)
        bridge.get_bridge().submit(
            context.scene,
            "body.mesh",
            job_params.body_mesh_params(shape, motion),
            frame_start=int(motion[job_params.POSE.frame_start]),
            meta={**shape, "name": f"{arm_obj.name} posed", "import_motion": True, "source": arm_obj.name},
        )
        return {"FINISHED"}


class AVS_OT_generate_avatar(bpy.types.Operator):
    """Sculpt, texture and rig an avatar on the backend (avatar.from_views, from the views of a
    synthetic character); it comes back as a textured mesh with an SMPL-X armature"""

    bl_idname = "avatar_studio.generate_avatar"
    bl_label = "Generate Avatar"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    name: StringProperty(name="Name", default="Avatar")
    shape: EnumProperty(
        name="Character",
        items=[("average", "Average", ""), ("tall", "Tall", ""), ("broad", "Broad", "")],
        default="average",
    )
    skirt: BoolProperty(name="Skirt", default=True)
    hair: BoolProperty(name="Hair", default=True)
    quality: EnumProperty(
        name="Quality",
        items=[
            ("DRAFT", "Draft", "Small grid and few iterations"),
            ("STANDARD", "Standard", "Backend defaults"),
        ],
        default="DRAFT",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected(cls) and gates.poll_job_kind(cls, "avatar.from_views")

    def execute(self, context: bpy.types.Context) -> set[str]:
        params = job_params.synthetic_avatar_params(self.quality, self.shape, self.skirt, self.hair)
        bridge.get_bridge().submit(context.scene, "avatar.from_views", params, meta={"name": self.name})
        self.report({"INFO"}, "avatar requested; it takes minutes on a CPU (see the Jobs panel)")
        return {"FINISHED"}


class AVS_OT_load_amass(bpy.types.Operator, ImportHelper):
    """Load an AMASS .npz motion (SMPL-X, SMPL+H or SMPL) onto the active body as an action"""

    bl_idname = "avatar_studio.load_amass"
    bl_label = "Load AMASS Motion"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender reads a plain set

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    z_up: BoolProperty(
        name="Z-Up World",
        default=True,
        description="The file's world is Z up (true for AMASS); off for Y-up motions",
    )
    use_shape: BoolProperty(
        name="Use File's Shape",
        default=False,
        description="Copy the file's betas to the body (then Apply Shape)",
    )
    set_frame_range: BoolProperty(name="Set Frame Range", default=True)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if scene_export.find_smplx_armature(context) is None:
            cls.poll_message_set("select an SMPL-X body")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        arm_obj = scene_export.find_smplx_armature(context)
        scene = context.scene
        scene_fps = scene.render.fps / scene.render.fps_base
        rest_pelvis = axes.to_protocol(np.array(bone_joint_map(arm_obj)[0].head_local))
        try:
            motion = motion_io.load_amass(self.filepath, rest_pelvis=rest_pelvis, z_up=self.z_up)
        except motion_io.MotionFileError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        played = motion_io.resample(motion, scene_fps)  # slerp, as the backend resamples
        apply_pose_action(
            arm_obj,
            motion_io.local_rotations(played),
            played.transl,
            frame_start=scene.frame_current,
            name=bpy.path.display_name_from_filepath(self.filepath),
        )
        if self.use_shape:
            settings = arm_obj.avatar_studio_body
            count = min(len(settings.betas), len(motion.betas))
            settings.betas[:count] = motion.betas[:count].tolist()
        if self.set_frame_range:
            first = scene.frame_current
            scene.frame_start, scene.frame_end = first, first + played.n_frames - 1
        self.report({"INFO"}, f"loaded {played.n_frames} frames at {scene_fps:g} fps (file: {motion.fps:g})")
        return {"FINISHED"}


CLASSES = (
    AVS_OT_generate_avatar,
    AVS_OT_add_body,
    AVS_OT_apply_shape,
    AVS_OT_pose_on_backend,
    AVS_OT_load_amass,
)
