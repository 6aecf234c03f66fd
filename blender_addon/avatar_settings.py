"""The Avatar panel's settings (per scene): which source (views, prompt, photo) and the generation
knobs of avatar.from_text / avatar.from_image.

The quality choices are the contract's (``kinds.GENERATE_QUALITY``), not a copy; the reference image
is a path the backend reads, so for a local backend it must lie inside the server's input roots
(``serve --input-root``), as the Clips panel's motion file does.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .wire import kinds_module

kinds = kinds_module()
# Ranges and defaults of the Advanced knobs are the contract's (protocol/kinds.py), not copies.
_TEXT = kinds.contract("avatar.from_text")
_IMAGE = kinds.contract("avatar.from_image")
_NAMES = kinds.names("avatar.from_text")
_IMAGE_NAMES = kinds.names("avatar.from_image")
_SIZE, _STEPS = _TEXT.param(_NAMES.size).type, _TEXT.param(_NAMES.steps).type
_GUIDANCE, _SCHEDULER = _TEXT.param(_NAMES.guidance), _TEXT.param(_NAMES.scheduler)
_FIT_BODY = _IMAGE.param(_IMAGE_NAMES.fit_body)
_NOISE = kinds.contract("avatar.from_noise")
_TRUNCATION = _NOISE.param(kinds.names("avatar.from_noise").truncation)

FROM_VIEWS, FROM_PROMPT, FROM_PHOTO = "VIEWS", "PROMPT", "PHOTO"
# The job kind each source submits (the views source keeps its synthetic-character operator).
SOURCE_KIND = {FROM_VIEWS: "avatar.from_views", FROM_PROMPT: "avatar.from_text",
               FROM_PHOTO: "avatar.from_image"}


class AVS_AvatarSettings(bpy.types.PropertyGroup):
    __slots__ = ()  # Blender 5 warns about property groups without it

    source: EnumProperty(
        name="Source",
        items=[(FROM_VIEWS, "From Views", "Views of a synthetic character (avatar.from_views)"),
               (FROM_PROMPT, "From Prompt", "K views generated from a text prompt (avatar.from_text)"),
               (FROM_PHOTO, "From Photo",
                "A photo as the front view, the others generated (avatar.from_image)")],
        default=FROM_VIEWS,
    )
    prompt: StringProperty(name="Prompt", default="a person in casual clothes", maxlen=2000)
    negative_prompt: StringProperty(name="Negative", description="Empty: the backend's default", maxlen=2000)
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same views")
    image_path: StringProperty(
        name="Photo", subtype="FILE_PATH",
        description="A .png/.jpg/.webp the backend reads: for a local backend, inside its input roots",
    )
    views: IntProperty(name="Views", default=8, min=1, max=32,
                       description="Views on a ring around the body, the first in front")
    quality: EnumProperty(
        name="Quality",
        items=[(q, q.title(), f"the backend's {q} preset (docs/avatar.md)") for q in kinds.GENERATE_QUALITY],
        default="draft",
    )
    fit_body: BoolProperty(name="Fit Body to Photo", default=_FIT_BODY.default,
                           description="Fit the body's shape and pose to the photo (else an A-posed body)")
    # Advanced (the panel's collapsible box): 0 = the quality preset's size / steps.
    show_advanced: BoolProperty(name="Advanced", default=False, options={"SKIP_SAVE"})
    size: IntProperty(name="Size", default=0, min=0, max=_SIZE.hi, step=8,
                      description=f"View side in pixels, a multiple of 8 from {_SIZE.lo} (0: the quality's)")
    steps: IntProperty(name="Steps", default=0, min=0, max=_STEPS.hi,
                       description="Denoising steps (0: the quality's)")
    guidance: FloatProperty(name="Guidance", default=_GUIDANCE.default, min=_GUIDANCE.type.lo,
                            max=_GUIDANCE.type.hi, description="Classifier-free guidance scale")
    scheduler: EnumProperty(
        name="Scheduler",
        items=[(s, s, f"the {s} sampler") for s in _SCHEDULER.type.values],
        default=_SCHEDULER.default,
    )
    # Random avatar (avatar.from_noise): a trained 3DGM run folder the backend reads; the button
    # shows only when it is set.
    threedgm_checkpoint: StringProperty(
        name="3DGM Run", subtype="DIR_PATH",
        description="A `3dgm train` run folder (checkpoint.pt) the backend reads: inside its input roots",
    )
    truncation: FloatProperty(name="Truncation", default=_TRUNCATION.default, min=_TRUNCATION.type.lo,
                              max=_TRUNCATION.type.hi, description="0: the mean avatar; 1: untruncated")
    # The last generated-avatar job submitted from this scene (its previews and error in the panel).
    last_job_key: StringProperty(options={"HIDDEN", "SKIP_SAVE"})
