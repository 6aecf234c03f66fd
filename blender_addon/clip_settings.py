"""The Clips panel's settings (per scene): who, what, which cameras, how many clips and frames.

Choices come from the clips.render contract (``protocol/kinds.py``): the procedural motions, the
camera rig kinds and the image passes are the contract's lists, not copies.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .job_params import MOTION_FILE
from .wire import kinds_module

kinds = kinds_module()

SCENE_CAMERAS, RIG = "SCENE", "RIG"
SAMPLED, SELECTED_BODIES = "SAMPLED", "SELECTED"


class AVS_ClipSettings(bpy.types.PropertyGroup):
    __slots__ = ()  # Blender 5 warns about property groups without it

    people_source: EnumProperty(
        name="People",
        items=[(SAMPLED, "Sampled", "People sampled per clip: SMPL-X bodies with a shape, look and motion"),
               (SELECTED_BODIES, "Selected Bodies",
                "The selected SMPL-X bodies (avatar-studio bodies and avatars), each playing its action "
                "over the frame range, where it is in the scene; only their look is sampled")],
        default=SAMPLED,
    )
    people: IntProperty(name="People", description="People per clip (at least)", default=1, min=1,
                        max=kinds.CLIP_MAX_PEOPLE)
    people_max: IntProperty(name="Up To", description="People per clip at most (sampled per clip)",
                            default=1, min=1, max=kinds.CLIP_MAX_PEOPLE)
    motion: EnumProperty(
        name="Motion",
        items=[*((m, m.title(), f"Procedural {m}") for m in kinds.PROCEDURAL_MOTIONS),
               (MOTION_FILE, "File on Backend", "An AMASS .npz or .bvh inside the backend's input roots")],
        default="walk",
    )
    motion_path: StringProperty(name="Motion File",
                                description="Path on the backend (inside its input roots)")
    camera_source: EnumProperty(
        name="Cameras",
        items=[(RIG, "Rig", "Cameras sampled around the people per clip"),
               (SCENE_CAMERAS, "Scene Cameras",
                "The selected cameras (else every camera of the scene), animated, over the frame range")],
        default=RIG,
    )
    rig: EnumProperty(name="Rig", items=[(k, k.title(), "") for k in kinds.CLIP_RIG_KINDS], default="ring")
    rig_count: IntProperty(name="Count", default=4, min=1, max=64)
    frames: IntProperty(name="Frames", default=8, min=1, max=1000,
                        description="Frames per clip (rigs; scene cameras use the frame range)")
    width: IntProperty(name="Width", default=256, min=16, max=2048)
    height: IntProperty(name="Height", description="Rigs only; scene cameras keep the render aspect",
                        default=256, min=16, max=2048)
    clips: IntProperty(name="Clips", default=1, min=1, max=1000)
    seed: IntProperty(name="Seed", default=0, min=0)
    passes: EnumProperty(
        name="Passes",
        items=[(p, p.title(), f"Write the {p} pass") for p in kinds.CLIP_PASSES],
        options={"ENUM_FLAG"},
        # The GT overlay too (off in a spec): Load Clip shows it as a strip above each RGB strip.
        default={*kinds.CLIP_DEFAULT_PASSES, "overlay"},
    )
    dataset_dir: StringProperty(name="Dataset", description="A clips dataset folder on this machine",
                                subtype="DIR_PATH")
    load_people: BoolProperty(
        name="People", default=True,
        description="Also load the clip's people as animated SMPL-X bodies (posed by body.mesh jobs)",
    )
    load_index: IntProperty(name="Clip", description="Which clip of the dataset to load", default=0, min=0)
