"""Params of the job kinds the add-on submits, built from their contracts (``protocol/kinds.py``).

Every param name comes from the contract (``kinds.names(KIND).<param>``), so a renamed or removed
param is an ``AttributeError`` here at once, not a job the backend refuses; the backend checks the
values against the same contract at submit. ``tests/blender/test_job_params_contract.py`` scans the
add-on for param names spelled as string literals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import wire

kinds = wire.kinds_module()

MESH = kinds.names("body.mesh")
PREVIEW = kinds.names("body.preview")
AVATAR = kinds.names("avatar.from_views")
FROM_TEXT = kinds.names("avatar.from_text")
FROM_IMAGE = kinds.names("avatar.from_image")
FROM_NOISE = kinds.names("avatar.from_noise")
CLIPS = kinds.names("clips.render")
MOTION_FILE = "FILE"  # the Clips panel's motion choice for a file on the backend
SYNTHETIC = kinds.names(kinds.SYNTHETIC)
POSE = kinds.names(kinds.SMPLX_POSE)

# Preview passes the backend renders (body.preview ``passes``); RGB is always asked for.
PREVIEW_PASSES = kinds.PREVIEW_PASSES


def shape_params(settings: Any) -> dict[str, Any]:
    """Shape, expression and gender of an SMPL-X body (``AVS_BodySettings``)."""
    return {
        MESH.betas: [float(v) for v in settings.betas],
        MESH.expression: [float(v) for v in settings.expression],
        MESH.gender: settings.gender,
    }


def default_shape(gender: str) -> dict[str, Any]:
    """The average body (zero shape and expression) of ``gender``."""
    return {MESH.betas: [0.0] * 10, MESH.expression: [0.0] * 10, MESH.gender: gender}


def body_mesh_params(shape: dict[str, Any], motion: dict[str, Any] | None = None) -> dict[str, Any]:
    """``body.mesh``: the body for ``shape``; posed by ``motion`` (an SMPL-X parameter payload) or,
    without one, in the rest pose (one frame of zero rotations: SMPL-X's T pose)."""
    params: dict[str, Any] = dict(shape)
    params[MESH.pose] = motion if motion is not None else {POSE.global_orient: np.zeros((1, 3))}
    return params


def body_preview_params(motion: dict[str, Any], camera_path: Any, passes: list[str]) -> dict[str, Any]:
    """``body.preview`` through one camera path (the job renders one camera per frame)."""
    wanted = ["rgb", *[p for p in passes if p in PREVIEW_PASSES and p != "rgb"]]
    return {
        PREVIEW.motion: motion,
        PREVIEW.cameras: camera_path.to_payload(),
        PREVIEW.passes: wanted,
        PREVIEW.gender: motion.get(POSE.gender, "neutral"),
        PREVIEW.betas: np.asarray(motion.get(POSE.betas, np.zeros(10))),
        PREVIEW.mp4: False,  # the strips use the PNG frames; skip the encode
    }


# Quality presets for avatar.from_views; "DRAFT" runs in about a minute on a laptop CPU,
# "STANDARD" uses the contract's defaults (what the backend runs when a knob is not given).
AVATAR_QUALITY: dict[str, dict[str, int]] = {
    "DRAFT": {
        AVATAR.grid: 36,
        AVATAR.init_iters: 40,
        AVATAR.refine_iters: 40,
        AVATAR.texture_size: 256,
        AVATAR.texture_iters: 20,
    },
    "STANDARD": {},
}
AVATAR_VIEW_RESOLUTION = {"DRAFT": 128, "STANDARD": 512}


def synthetic_avatar_params(quality: str, shape: str, skirt: bool, hair: bool) -> dict[str, Any]:
    """``avatar.from_views`` of a synthetic character, at a quality preset."""
    return {
        **AVATAR_QUALITY[quality],
        AVATAR.synthetic: {
            SYNTHETIC.shape: shape,
            SYNTHETIC.skirt: skirt,
            SYNTHETIC.hair: hair,
            SYNTHETIC.resolution: AVATAR_VIEW_RESOLUTION[quality],
        },
    }


def generated_avatar_params(kind: str, settings: Any, image_path: str = "") -> dict[str, Any]:
    """``avatar.from_text`` / ``avatar.from_image`` from the Avatar panel's settings
    (``AVS_AvatarSettings``); size, steps and the avatar stages follow the quality preset.
    ``image_path``: the photo as the backend reads it (absolute; inside its input roots)."""
    names = FROM_IMAGE if kind == "avatar.from_image" else FROM_TEXT
    params: dict[str, Any] = {
        names.prompt: settings.prompt,
        names.seed: int(settings.seed),
        names.views: int(settings.views),
        names.quality: settings.quality,
    }
    if settings.negative_prompt.strip():
        params[names.negative_prompt] = settings.negative_prompt
    # Advanced: 0 leaves size and steps to the quality preset; guidance and scheduler always sent.
    for name in (names.size, names.steps):
        if int(getattr(settings, name, 0) or 0) > 0:
            params[name] = int(getattr(settings, name))
    if hasattr(settings, names.guidance):
        params[names.guidance] = float(getattr(settings, names.guidance))
    if getattr(settings, names.scheduler, ""):
        params[names.scheduler] = getattr(settings, names.scheduler)
    if kind == "avatar.from_image":
        params[FROM_IMAGE.image] = image_path
        if hasattr(settings, FROM_IMAGE.fit_body):
            params[FROM_IMAGE.fit_body] = bool(getattr(settings, FROM_IMAGE.fit_body))
    return params


def random_avatar_params(settings: Any, checkpoint: str) -> dict[str, Any]:
    """``avatar.from_noise`` from the Avatar panel's settings: the run folder as the backend reads it
    (absolute; inside its input roots), seed, truncation and views; the avatar stages at the
    contract's defaults."""
    return {FROM_NOISE.checkpoint: checkpoint, FROM_NOISE.seed: int(settings.seed),
            FROM_NOISE.truncation: float(settings.truncation), FROM_NOISE.views: int(settings.views)}


def motion_frames(motion: dict[str, Any]) -> int:
    return int(np.asarray(motion[POSE.global_orient]).shape[0])


def validate(kind: str, params: dict[str, Any]) -> None:
    """Check ``params`` against the contract before sending (the backend checks them again)."""
    kinds.validate(kind, params)


def clips_render_params(settings: Any, camera_paths: list[Any] | None = None,
                        bodies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``clips.render`` from the Clips panel's settings (``AVS_ClipSettings``): through
    ``camera_paths`` (``protocol.cameras.CameraPath``, e.g. the scene's cameras; frames, size and
    fps are theirs) or a sampled rig; with ``bodies`` (SMPL-X payloads of the scene's bodies,
    ``scene_export.export_smplx_motion``) as the people, else sampled people playing the motion."""
    params: dict[str, Any] = {
        CLIPS.clips: settings.clips,
        CLIPS.seed: settings.seed,
        CLIPS.passes: [p for p in kinds.CLIP_PASSES if p in settings.passes],
    }
    if bodies:
        params[CLIPS.bodies] = bodies  # their frames and fps are the clip's (with a rig too)
    else:
        motion = settings.motion_path if settings.motion == MOTION_FILE else settings.motion
        params[CLIPS.people] = [settings.people, max(settings.people, settings.people_max)]
        params[CLIPS.motions] = [motion]
    if camera_paths:
        params[CLIPS.cameras] = [path.to_payload() for path in camera_paths]
    else:
        params[CLIPS.cameras] = [f"{settings.rig}:{settings.rig_count}"]
        if not bodies:
            params[CLIPS.frames] = settings.frames
        params[CLIPS.size] = [settings.width, settings.height]
    return params
