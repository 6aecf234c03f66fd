"""AMASS ``.npz`` motions in numpy: the one reader (and writer) the add-on and the backend share.

AMASS ships releases whose npz layouts differ; all are read, the first two written:

SMPL-X release (``surface_model_type`` = "smplx")
    ``poses`` (N,165) = root 3 | body 63 | jaw 3 | left eye 3 | right eye 3 | left hand 45 | right
    hand 45 (SMPL-X's joint order), the same split out as ``root_orient`` (N,3), ``pose_body``
    (N,63), ``pose_jaw`` (N,3), ``pose_eye`` (N,6), ``pose_hand`` (N,90); ``trans`` (N,3), ``betas``,
    ``num_betas``, ``gender``, ``mocap_frame_rate``, ``mocap_time_length``.
SMPL+H release
    ``poses`` (N,156) = root 3 | body 63 | left hand 45 | right hand 45; ``trans`` (N,3), ``betas``
    (16,), ``dmpls`` (N,8), ``gender``, ``mocap_framerate``.
Plain SMPL
    ``poses`` (N,72) = root 3 | body 63 | left hand 3 | right hand 3; SMPL's two hand joints have
    no SMPL-X counterpart and are dropped.

The 21 body joints are the same in SMPL, SMPL+H and SMPL-X, so the poses map over directly (no
jaw, eyes or expression from the older models). Their betas live in their own shape space: they are
carried over unchanged and :attr:`AmassMotion.source_model` says where they came from. Hand poses
are absolute axis-angle (a flat hand is zero), as AMASS stores them. Files are opened with
``allow_pickle=False``: nothing in a motion file is ever unpickled.

World axes: AMASS stores bodies in a **Z-up** world (an upright body has a root orientation of about
+90 degrees around x), while the protocol's world is **Y-up** (``protocol/axes.py``). SMPL-X rotates
the root about the rest pelvis ``p``, so a change of world axes ``W`` maps ``(R, t)`` to
``(W R, W (p + t) - p)``: exact when ``p`` is the pelvis of the body the motion will drive (pass
``rest_pelvis``), within ``|(W - I)(p - p0)|`` (a few millimetres for typical shapes) with the
default ``p0``, the stand-in's neutral pelvis.

Resampling is slerp per joint and linear on translation (``protocol/rotations.py``, numpy only:
scipy is not in Blender's Python, and both sides must compute the same frames).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .axes import Y_UP_FROM_Z_UP, Z_UP_FROM_Y_UP
from .rotations import aa_to_matrix, aa_to_quaternion, matrix_to_aa, quaternion_to_aa, slerp
from .smplx import NUM_EXPRESSION, NUM_JOINTS, check_gender, split_full_pose

SMPLX_POSE_WIDTH = NUM_JOINTS * 3  # 165
SMPLH_POSE_WIDTH = 156  # 52 joints: root, 21 body joints, 15 per hand
SMPL_POSE_WIDTH = 72  # 24 joints: root, 21 body joints, one per hand
# SMPL+H joint k is SMPL-X joint SMPLH_TO_SMPLX[k]: SMPL+H has no jaw and eyes (SMPL-X 22..24).
SMPLH_TO_SMPLX: tuple[int, ...] = (*range(22), *range(25, NUM_JOINTS))
AMASS_SMPLH_BETAS = 16
AMASS_DMPLS = 8
FRAME_RATE_KEYS = ("mocap_frame_rate", "mocap_framerate")  # SMPL-X release, SMPL+H release
# Rest pelvis of the neutral stand-in body at zero betas (the real SMPL-X's is within ~10 cm):
# the pivot of the axis change when the caller does not know the exact body.
DEFAULT_REST_PELVIS = np.array([0.0, -0.26, 0.0])
DEFAULT_REST_PELVIS.flags.writeable = False


class AmassFormatError(ValueError):
    """A file is not an AMASS motion this module understands; the message says why."""


@dataclass
class AmassMotion:
    """F frames of an AMASS motion in SMPL-X joint order (float64 numpy) at ``fps``."""

    pose: np.ndarray  # (F, 55, 3) axis-angle, SMPL-X joint order (zeros where the file has no joint)
    transl: np.ndarray  # (F, 3)
    fps: float
    betas: np.ndarray = field(default_factory=lambda: np.zeros(AMASS_SMPLH_BETAS))
    expression: np.ndarray = field(default_factory=lambda: np.zeros(NUM_EXPRESSION))
    gender: str = "neutral"
    source_model: str = "smplx"  # body model the betas belong to: "smplx", "smplh" or "smpl"

    def __post_init__(self) -> None:
        self.pose = np.asarray(self.pose, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
        self.transl = np.asarray(self.transl, dtype=np.float64).reshape(-1, 3)
        if len(self.transl) != len(self.pose):
            raise ValueError(f"{len(self.pose)} poses but {len(self.transl)} translations")
        self.betas = np.asarray(self.betas, dtype=np.float64).reshape(-1)
        self.expression = np.asarray(self.expression, dtype=np.float64).reshape(-1)
        self.fps = float(self.fps)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        self.gender = check_gender(self.gender)

    @property
    def n_frames(self) -> int:
        return len(self.pose)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.n_frames - 1) / self.fps

    def pose_fields(self) -> dict[str, np.ndarray]:
        """The pose as the SMPL-X payload's fields (``global_orient``, ``body_pose``, ...)."""
        return split_full_pose(self.pose)


# --------------------------------------------------------------------------- reading
def _text(value: np.ndarray) -> str:
    array = np.asarray(value)
    item = array.item() if array.shape == () else array.reshape(-1)[0].item() if array.size else ""
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def _vector(data: dict[str, np.ndarray], key: str, default_size: int) -> np.ndarray:
    if key not in data:
        return np.zeros(default_size)
    return _finite(data[key], key).reshape(-1)


def _finite(value: np.ndarray, key: str) -> np.ndarray:
    if value.dtype.kind not in "biuf":
        raise AmassFormatError(f"'{key}' holds {value.dtype} values, not numbers")
    array = value.astype(np.float64)
    if not np.isfinite(array).all():
        raise AmassFormatError(f"'{key}' has non-finite values")
    return array


def _frame_rate(data: dict[str, np.ndarray]) -> float:
    for key in FRAME_RATE_KEYS:
        if key in data:
            values = _finite(data[key], key).reshape(-1)
            if values.size != 1 or values[0] <= 0:
                raise AmassFormatError(f"'{key}' must be one positive number")
            return float(values[0])
    raise AmassFormatError("no mocap_frame_rate / mocap_framerate in the file")


def _smplx_pose(poses: np.ndarray, model_type: str | None) -> tuple[np.ndarray, str]:
    """(N, 55, 3) SMPL-X joint-order pose and the source model of an AMASS ``poses`` array."""
    n, width = poses.shape
    pose = np.zeros((n, NUM_JOINTS, 3))
    if width == SMPLX_POSE_WIDTH and model_type in (None, "smplx"):
        pose[:] = poses.reshape(n, NUM_JOINTS, 3)
        return pose, "smplx"
    if width == SMPLH_POSE_WIDTH:
        pose[:, list(SMPLH_TO_SMPLX)] = poses.reshape(n, len(SMPLH_TO_SMPLX), 3)
        return pose, "smplh"
    if width == SMPL_POSE_WIDTH:
        pose[:, :22] = poses[:, :66].reshape(n, 22, 3)  # root and body; SMPL's hand joints dropped
        return pose, "smpl"
    raise AmassFormatError(
        f"unsupported poses width {width} (model {model_type}); expected {SMPLX_POSE_WIDTH} (SMPL-X), "
        f"{SMPLH_POSE_WIDTH} (SMPL+H) or {SMPL_POSE_WIDTH} (SMPL)"
    )


def read_amass(path: str | Path | BinaryIO, num_betas: int | None = None) -> AmassMotion:
    """An AMASS npz of any release as stored (its own Z-up world); :func:`load_amass` converts.

    ``path`` may also be an open binary file (the jobs read confined files once, into memory).

    A missing or unreadable file raises ``OSError``; anything that is not an AMASS motion
    :class:`AmassFormatError`.
    """
    try:
        loaded = np.load(path if hasattr(path, "read") else Path(path), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise AmassFormatError(f"{path}: a single .npy array, not an AMASS npz")
        with loaded:
            data = {key: loaded[key] for key in loaded.files}
    # not a zip (numpy then refuses to unpickle), truncated, a bad member, an object array
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, AmassFormatError):
            raise
        raise AmassFormatError(f"{path}: not a readable npz ({exc})") from exc
    if "poses" not in data or "trans" not in data:
        raise AmassFormatError(f"{path}: AMASS files have 'poses' and 'trans'; found {sorted(data)}")
    try:
        poses = _finite(data["poses"], "poses")
        trans = _finite(data["trans"], "trans")
        if poses.ndim != 2 or trans.shape != (len(poses), 3) or len(poses) == 0:
            raise AmassFormatError(f"poses {poses.shape} and trans {trans.shape} disagree")
        model_type = _text(data["surface_model_type"]) if "surface_model_type" in data else None
        pose, source = _smplx_pose(poses, model_type)
        betas = _vector(data, "betas", AMASS_SMPLH_BETAS)
        if num_betas is not None:
            betas = betas[:num_betas]
        return AmassMotion(
            pose=pose,
            transl=trans,
            fps=_frame_rate(data),
            betas=betas,
            expression=_vector(data, "expression", NUM_EXPRESSION),
            gender=_text(data["gender"]) if "gender" in data else "neutral",
            source_model=source,
        )
    except AmassFormatError as exc:
        raise AmassFormatError(f"{path}: {exc}") from None


def change_world_axes(
    motion: AmassMotion, rotation: np.ndarray, rest_pelvis: np.ndarray | None = None
) -> AmassMotion:
    """Re-express ``motion`` in a world rotated by ``rotation`` (3x3): the same body, new axes.

    The root rotates about the rest pelvis ``p``: posed = R (v - p) + p + t, so in the new world
    R' = W R and t' = W (p + t) - p. See the module doc for the default ``p``.
    """
    w = np.asarray(rotation, dtype=np.float64)
    p = DEFAULT_REST_PELVIS if rest_pelvis is None else np.asarray(rest_pelvis, dtype=np.float64).reshape(3)
    pose = motion.pose.copy()
    pose[:, 0] = matrix_to_aa(w @ aa_to_matrix(motion.pose[:, 0]))
    return replace(motion, pose=pose, transl=(motion.transl + p) @ w.T - p)


def load_amass(
    path: str | Path | BinaryIO,
    num_betas: int | None = None,
    *,
    z_up: bool = True,
    rest_pelvis: np.ndarray | None = None,
    fps: float | None = None,
) -> AmassMotion:
    """An AMASS npz in the protocol's Y-up world (``z_up``), resampled to ``fps`` when given.

    Pass ``rest_pelvis`` (protocol frame) of the body that will play the motion for an exact axis
    change; ``z_up=False`` for files already in a Y-up world.
    """
    motion = read_amass(path, num_betas)
    if z_up:
        motion = change_world_axes(motion, Y_UP_FROM_Z_UP, rest_pelvis)
    return resample(motion, fps) if fps is not None else motion


# --------------------------------------------------------------------------- writing
def save_amass(
    motion: AmassMotion,
    path: str | Path,
    layout: str = "smplx",
    *,
    z_up: bool = True,
    rest_pelvis: np.ndarray | None = None,
) -> Path:
    """Write ``motion`` as an AMASS npz, ``layout`` "smplx" (SMPL-X release) or "smplh" (SMPL+H).

    SMPL+H has no jaw, eyes or expression: those are dropped. Betas are padded/cut to 16 there.
    ``z_up`` writes AMASS's Z-up world (the inverse of :func:`load_amass`'s conversion).
    """
    path = Path(path)
    if z_up:
        motion = change_world_axes(motion, Z_UP_FROM_Y_UP, rest_pelvis)
    n = motion.n_frames
    fields = motion.pose_fields()
    common = {"trans": motion.transl, "gender": np.array(motion.gender)}
    if layout == "smplx":
        arrays = {
            **common,
            "poses": motion.pose.reshape(n, -1),
            "root_orient": fields["global_orient"],
            "pose_body": fields["body_pose"],
            "pose_hand": np.concatenate([fields["left_hand_pose"], fields["right_hand_pose"]], axis=1),
            "pose_jaw": fields["jaw_pose"],
            "pose_eye": np.concatenate([fields["leye_pose"], fields["reye_pose"]], axis=1),
            "betas": motion.betas,
            "num_betas": np.array(len(motion.betas)),
            "surface_model_type": np.array("smplx"),
            "mocap_frame_rate": np.array(motion.fps),
            "mocap_time_length": np.array(n / motion.fps),
        }
        if motion.expression.any():
            arrays["expression"] = motion.expression
    elif layout == "smplh":
        betas = np.zeros(AMASS_SMPLH_BETAS)
        k = min(AMASS_SMPLH_BETAS, len(motion.betas))
        betas[:k] = motion.betas[:k]
        arrays = {
            **common,
            "poses": motion.pose[:, list(SMPLH_TO_SMPLX)].reshape(n, -1),
            "betas": betas,
            "dmpls": np.zeros((n, AMASS_DMPLS)),
            "mocap_framerate": np.array(motion.fps),
        }
    else:
        raise ValueError(f"layout must be 'smplx' or 'smplh', got {layout!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file handle keeps numpy from appending ".npz" to the name
        np.savez(fh, **arrays)
    return path


# --------------------------------------------------------------------------- resampling
def resample_pose(
    pose: np.ndarray, transl: np.ndarray, source_fps: float, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """(F, J, 3) axis-angle and (F, 3) translation at ``source_fps`` -> the same at ``fps``.

    Output frame k is at t = k / fps over the same time span (the last source frame's time, rounded
    down); rotations slerp per joint, translation is linear. Frames that fall on source frames
    reproduce them (as rotations: axis-angle comes back with its angle in [0, pi]).
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    pose = np.asarray(pose, dtype=np.float64)
    transl = np.asarray(transl, dtype=np.float64)
    n = len(pose)
    duration = (n - 1) / source_fps
    n_out = int(np.floor(duration * fps + 1e-6)) + 1
    src = np.arange(n_out) * (source_fps / fps)  # fractional source frame of each output frame
    index = np.minimum(np.floor(src + 1e-9).astype(int), n - 1)
    alpha = np.clip(src - index, 0.0, 1.0)
    alpha[np.abs(alpha) < 1e-9] = 0.0
    nxt = np.minimum(index + 1, n - 1)
    quats = aa_to_quaternion(pose)
    out_pose = quaternion_to_aa(slerp(quats[index], quats[nxt], alpha[:, None, None]))
    out_transl = (1 - alpha)[:, None] * transl[index] + alpha[:, None] * transl[nxt]
    return out_pose, out_transl


def resample(motion: AmassMotion, fps: float) -> AmassMotion:
    """``motion`` at ``fps`` (see :func:`resample_pose`); betas, gender and the rest unchanged."""
    pose, transl = resample_pose(motion.pose, motion.transl, motion.fps, fps)
    return replace(motion, pose=pose, transl=transl, fps=fps)
