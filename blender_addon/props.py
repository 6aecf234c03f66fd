"""Blender properties the add-on stores: the job list (per scene, saved in the .blend so jobs can be
re-attached after a file reload), render/preview settings, and per-object SMPL-X body settings."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .avatar_settings import AVS_AvatarSettings
from .clip_settings import AVS_ClipSettings
from .footage_settings import AVS_FootageSettings
from .wire import messages, smplx

NUM_BETAS = smplx.NUM_BETAS
NUM_EXPRESSION = smplx.NUM_EXPRESSION

JOB_STATE_ITEMS = [
    ("submitting", "Submitting", "Sent, waiting for the backend to accept it"),
    ("queued", "Queued", "Waiting for a worker"),
    ("running", "Running", "Running on the backend"),
    ("succeeded", "Succeeded", "Finished; results can be imported"),
    ("failed", "Failed", "The job failed; see its message"),
    ("cancelled", "Cancelled", "Cancelled"),
    ("unknown", "Unknown", "The backend is unreachable; the job will be re-attached on reconnect"),
]
TERMINAL_STATES = messages.TERMINAL_STATES  # the protocol's job state machine (docs/protocol.md §5)


class AVS_JobItem(bpy.types.PropertyGroup):
    """One backend job as this scene knows it (mirrors the protocol's job record)."""

    __slots__ = ()  # Blender 5 warns about property groups without it

    job_id: StringProperty(name="Job ID")
    kind: StringProperty(name="Kind")
    state: EnumProperty(name="State", items=JOB_STATE_ITEMS, default="submitting")
    fraction: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    stage: StringProperty(name="Stage")
    message: StringProperty(name="Message")
    error: StringProperty(name="Error")
    # What to do with the result: the object a body.mesh result updates, the frame a preview starts at.
    target: StringProperty(name="Target", description="Object the result is imported into")
    frame_start: IntProperty(name="Start Frame", default=1)
    auto_import: BoolProperty(name="Auto Import", default=True)
    imported: BoolProperty(name="Imported", default=False)
    result_dir: StringProperty(name="Result Folder", subtype="DIR_PATH")
    request_key: StringProperty(
        name="Idempotency Key", description="Sent with the submit; a retry cannot run the job twice"
    )
    meta: StringProperty(
        name="Meta", description="Small JSON summary of what was submitted (shape, gender, frames)"
    )


class AVS_SceneSettings(bpy.types.PropertyGroup):
    __slots__ = ()  # Blender 5 warns about property groups without it
    jobs: CollectionProperty(type=AVS_JobItem)
    active_job_index: IntProperty(name="Active Job", default=0)
    auto_import: BoolProperty(
        name="Import Results",
        description="Import a job's results into the scene as soon as it succeeds",
        default=True,
    )
    preview_width: IntProperty(name="Width", default=256, min=16, max=4096)
    preview_height: IntProperty(name="Height", default=256, min=16, max=4096)
    preview_mask: BoolProperty(name="Mask", default=True)
    preview_depth: BoolProperty(name="Depth", default=True)
    preview_normals: BoolProperty(name="Normals", default=True)
    preview_pose: BoolProperty(name="Pose", description="OpenPose conditioning images", default=True)
    use_selected_cameras: BoolProperty(
        name="Selected Cameras",
        description="Render through every selected camera (else the scene's active camera)",
        default=True,
    )
    clips: PointerProperty(type=AVS_ClipSettings)
    avatar: PointerProperty(type=AVS_AvatarSettings)
    footage: PointerProperty(type=AVS_FootageSettings)


class AVS_BodySettings(bpy.types.PropertyGroup):
    """On the armature (and mesh) of an SMPL-X body the add-on created."""

    __slots__ = ()  # Blender 5 warns about property groups without it

    is_body: BoolProperty(name="Is SMPL-X Body", default=False)
    gender: EnumProperty(
        name="Gender",
        items=[("neutral", "Neutral", ""), ("male", "Male", ""), ("female", "Female", "")],
        default="neutral",
    )
    betas: FloatVectorProperty(name="Shape", size=NUM_BETAS, min=-5.0, max=5.0, soft_min=-3.0, soft_max=3.0)
    expression: FloatVectorProperty(
        name="Expression", size=NUM_EXPRESSION, min=-5.0, max=5.0, soft_min=-3.0, soft_max=3.0
    )
    motion_fps: FloatProperty(name="Motion FPS", default=30.0, min=1.0)


CLASSES = (AVS_JobItem, AVS_ClipSettings, AVS_AvatarSettings, AVS_FootageSettings, AVS_SceneSettings,
           AVS_BodySettings)


def register_properties() -> None:
    bpy.types.Scene.avatar_studio = PointerProperty(type=AVS_SceneSettings)
    bpy.types.Object.avatar_studio_body = PointerProperty(type=AVS_BodySettings)


def unregister_properties() -> None:
    del bpy.types.Object.avatar_studio_body
    del bpy.types.Scene.avatar_studio


def find_job(job_id: str) -> list[tuple[bpy.types.Scene, AVS_JobItem]]:
    """Every (scene, item) that tracks ``job_id`` (a job normally lives in one scene)."""
    found = []
    for scene in bpy.data.scenes:
        settings = getattr(scene, "avatar_studio", None)
        if settings is None:
            continue
        for item in settings.jobs:
            if item.job_id == job_id:
                found.append((scene, item))
    return found


def active_jobs() -> list[AVS_JobItem]:
    """Jobs in any scene that are not finished (to re-attach after a reconnect or file load)."""
    return [
        item
        for scene in bpy.data.scenes
        if getattr(scene, "avatar_studio", None) is not None
        for item in scene.avatar_studio.jobs
        if item.state not in TERMINAL_STATES and item.job_id
    ]
