"""Parameters of the job kinds the add-on submits (see backend/jobs/body.py and docs/protocol.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Preview passes the backend renders (body.preview ``passes``); RGB is always asked for.
PREVIEW_PASSES = ("rgb", "mask", "depth", "normal", "pose")


def shape_params(settings: Any) -> dict[str, Any]:
    """Shape, expression and gender of an SMPL-X body (``AVS_BodySettings``)."""
    return {
        "betas": [float(v) for v in settings.betas],
        "expression": [float(v) for v in settings.expression],
        "gender": settings.gender,
    }


def body_mesh_params(shape: dict[str, Any], motion: dict[str, Any] | None = None) -> dict[str, Any]:
    """``body.mesh``: the body for ``shape``; posed by ``motion`` (an SMPL-X parameter payload) or,
    without one, in the rest pose (one frame of zero rotations: SMPL-X's T pose)."""
    params: dict[str, Any] = dict(shape)
    params["pose"] = motion if motion is not None else {"global_orient": np.zeros((1, 3))}
    return params


def body_preview_params(motion: dict[str, Any], camera_path: Any, passes: list[str]) -> dict[str, Any]:
    """``body.preview`` through one camera path (the job renders one camera per frame)."""
    wanted = ["rgb", *[p for p in passes if p in PREVIEW_PASSES and p != "rgb"]]
    return {
        "motion": motion,
        "cameras": camera_path.to_payload(),
        "passes": wanted,
        "gender": motion.get("gender", "neutral"),
        "betas": np.asarray(motion.get("betas", np.zeros(10))),
        "mp4": False,  # the strips use the PNG frames; skip the encode
    }


def motion_frames(motion: dict[str, Any]) -> int:
    return int(np.asarray(motion["global_orient"]).shape[0])
