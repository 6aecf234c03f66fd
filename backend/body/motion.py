"""Motion: a sequence of SMPL-X parameters, AMASS npz in and out, and resampling.

The AMASS layouts (SMPL-X, SMPL+H and plain SMPL releases), the Z-up -> Y-up world change and the
slerp resampling live in ``protocol/amass.py`` (numpy only), which the Blender add-on uses too, so
one file loads to the same frames on both sides. This module wraps them for :class:`Motion`, the
backend's SMPL-X parameter sequence (payload layout: ``protocol/smplx.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from protocol import amass
from protocol.smplx import PER_FRAME_FIELDS, POSE_FIELDS, join_full_pose, split_full_pose

# A motion file this module cannot read (the protocol reader's error, under its old name here).
MotionFormatError = amass.AmassFormatError
DEFAULT_REST_PELVIS = amass.DEFAULT_REST_PELVIS


@dataclass
class Motion:
    """F frames of SMPL-X parameters (protocol payload layout, float64 numpy) at ``fps``."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    left_hand_pose: np.ndarray
    right_hand_pose: np.ndarray
    jaw_pose: np.ndarray
    leye_pose: np.ndarray
    reye_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray = field(default_factory=lambda: np.zeros(10))
    expression: np.ndarray = field(default_factory=lambda: np.zeros(10))
    fps: float = 30.0
    gender: str = "neutral"
    source_model: str = "smplx"  # body model the betas belong to ("smplx", "smplh" or "smpl")

    def __post_init__(self) -> None:
        n = None
        for name, width in PER_FRAME_FIELDS.items():
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, width)
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise ValueError(f"{name} has {value.shape[0]} frames, global_orient has {n}")
            setattr(self, name, value)
        self.betas = np.asarray(self.betas, dtype=np.float64).reshape(-1)
        self.expression = np.asarray(self.expression, dtype=np.float64).reshape(-1)
        self.fps = float(self.fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def zeros(cls, n_frames: int, fps: float = 30.0, **kwargs: Any) -> Motion:
        arrays = {k: np.zeros((n_frames, w)) for k, w in PER_FRAME_FIELDS.items()}
        arrays.update(kwargs)
        return cls(fps=fps, **arrays)

    @classmethod
    def from_full_pose(cls, full_pose: np.ndarray, transl: np.ndarray, fps: float, **kwargs: Any) -> Motion:
        """From (F, 55, 3) or (F, 165) axis-angle in smplx's full-pose order."""
        return cls(**split_full_pose(full_pose), transl=transl, fps=fps, **kwargs)

    @classmethod
    def from_amass(cls, motion: amass.AmassMotion) -> Motion:
        """From the protocol's AMASS reader (same frames, betas, gender and source model)."""
        return cls.from_full_pose(
            motion.pose,
            motion.transl,
            motion.fps,
            betas=motion.betas,
            expression=motion.expression,
            gender=motion.gender,
            source_model=motion.source_model,
        )

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Motion:
        """From the protocol's SMPL-X payload dict (missing per-frame arrays are zeros)."""
        n = int(np.asarray(payload["global_orient"]).reshape(-1, 3).shape[0])
        arrays = {k: payload.get(k, np.zeros((n, w))) for k, w in PER_FRAME_FIELDS.items()}
        return cls(
            **arrays,
            betas=payload.get("betas", np.zeros(10)),
            expression=payload.get("expression", np.zeros(10)),
            fps=float(payload.get("fps", 30.0)),
            gender=str(payload.get("gender", "neutral")),
        )

    # ---- views -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.global_orient.shape[0])

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.n_frames - 1) / self.fps

    def full_pose(self) -> np.ndarray:
        """(F, 55, 3) axis-angle in smplx's full-pose order."""
        return join_full_pose({name: getattr(self, name) for name, _, _ in POSE_FIELDS})

    def to_amass(self) -> amass.AmassMotion:
        """For the protocol's AMASS writer and resampler."""
        return amass.AmassMotion(self.full_pose(), self.transl, self.fps, self.betas, self.expression,
                                 self.gender, self.source_model)

    def to_payload(self) -> dict[str, Any]:
        """The protocol's SMPL-X parameter payload (arrays as float32, plus gender and fps)."""
        out: dict[str, Any] = {k: getattr(self, k).astype(np.float32) for k in PER_FRAME_FIELDS}
        out["betas"] = self.betas.astype(np.float32)
        out["expression"] = self.expression.astype(np.float32)
        out["gender"] = self.gender
        out["fps"] = self.fps
        return out

    def to_params(self, num_betas: int = 10, num_expression: int = 10, device: str = "cpu") -> Any:
        """As :class:`backend.body.model.BodyParams` (torch), for ``BodyModel.forward``."""
        from .model import BodyParams  # torch only when needed

        return BodyParams.from_arrays(
            self.to_payload(),
            n_frames=self.n_frames,
            num_betas=num_betas,
            num_expression=num_expression,
            device=device,
        )

    def frames(self, start: int, stop: int | None = None, step: int = 1) -> Motion:
        """A slice of the frames (fps divided by ``step``)."""
        sl = slice(start, stop, step)
        per_frame = {k: getattr(self, k)[sl] for k in PER_FRAME_FIELDS}
        return replace(self, **per_frame, fps=self.fps / step)

    def equal(self, other: Motion, atol: float = 1e-6) -> bool:
        """Same frames, shape, fps and gender (within ``atol`` on arrays)."""
        for f_ in fields(self):
            a, b = getattr(self, f_.name), getattr(other, f_.name)
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or not np.allclose(a, b, atol=atol):
                    return False
            elif a != b:
                return False
        return True


# ---- AMASS and resampling (protocol/amass.py) -----------------------------------------------------
def change_world_axes(motion: Motion, rotation: np.ndarray, rest_pelvis: np.ndarray | None = None) -> Motion:
    """Re-express ``motion`` in a world rotated by ``rotation`` (see ``protocol.amass``)."""
    moved = amass.change_world_axes(motion.to_amass(), rotation, rest_pelvis)
    return replace(motion, global_orient=moved.pose[:, 0], transl=moved.transl)


def load_amass(
    path: str | Path | BinaryIO,
    num_betas: int | None = None,
    *,
    z_up: bool = True,
    rest_pelvis: np.ndarray | None = None,
) -> Motion:
    """Read an AMASS npz of any release (SMPL-X, SMPL+H or plain SMPL); see ``protocol.amass``.

    ``z_up`` converts AMASS's Z-up world to the protocol's Y-up one; pass ``rest_pelvis`` of the
    body that will play the motion for an exact conversion.
    """
    return Motion.from_amass(amass.load_amass(path, num_betas, z_up=z_up, rest_pelvis=rest_pelvis))


def save_amass(motion: Motion, path: str | Path, layout: str = "smplx", **options: Any) -> Path:
    """Write ``motion`` as an AMASS npz, ``layout`` "smplx" or "smplh"; ``options`` (``z_up``,
    ``rest_pelvis``) as ``protocol.amass.save_amass``."""
    return amass.save_amass(motion.to_amass(), path, layout, **options)


def resample(motion: Motion, fps: float) -> Motion:
    """The motion at ``fps``: frames at t = k / fps over the same time span (slerp on every joint
    rotation, linear on translation). Frames that fall on source frames reproduce them exactly."""
    pose, transl = amass.resample_pose(motion.full_pose(), motion.transl, motion.fps, fps)
    return Motion.from_full_pose(
        pose,
        transl,
        fps,
        betas=motion.betas,
        expression=motion.expression,
        gender=motion.gender,
        source_model=motion.source_model,
    )
