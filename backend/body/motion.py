"""Motion: a sequence of SMPL-X parameters, AMASS npz in and out, and resampling.

AMASS ships two releases whose npz layouts differ (both read and written here):

SMPL-X release (``surface_model_type`` = "smplx")
    ``poses`` (N,165) = root 3 | body 63 | jaw 3 | left eye 3 | right eye 3 | left hand 45 | right
    hand 45 (smplx's full-pose order), the same split out as ``root_orient`` (N,3), ``pose_body``
    (N,63), ``pose_jaw`` (N,3), ``pose_eye`` (N,6), ``pose_hand`` (N,90); ``trans`` (N,3), ``betas``,
    ``num_betas``, ``gender``, ``mocap_frame_rate``, ``mocap_time_length``.
SMPL+H release
    ``poses`` (N,156) = root 3 | body 63 | left hand 45 | right hand 45; ``trans`` (N,3), ``betas``
    (16,), ``dmpls`` (N,8), ``gender``, ``mocap_framerate``.

The 21 body joints are the same in SMPL+H and SMPL-X, so SMPL+H poses map over directly (no jaw,
eyes or expression); plain SMPL ``poses`` (N,72) are read the same way, dropping SMPL's two hand
joints. SMPL+H betas live in SMPL+H's shape space; they are carried over unchanged
and ``Motion.source_model`` says where they came from. Hand poses are absolute axis-angle (a flat
hand is zero), as AMASS stores them.

World axes: AMASS stores bodies in a **Z-up** world (an upright body has a root orientation of about
+90 degrees around x), while the protocol's world is **Y-up** (SMPL-X's own frame). ``load_amass``
and ``save_amass`` convert by default (``z_up=True``). SMPL-X rotates the root about the rest pelvis
``p``, so a change of world axes ``W`` maps ``(R, t)`` to ``(W R, W (p + t) - p)``: exact when ``p`` is
the pelvis of the body the motion will drive (pass ``rest_pelvis``), within ``|(W - I)(p - p0)|`` (a
few millimetres for typical shapes) with the default ``p0``, the stand-in's neutral pelvis.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from .joints import NUM_JOINTS

PER_FRAME_FIELDS: dict[str, int] = {
    "global_orient": 3, "body_pose": 63, "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3,
    "left_hand_pose": 45, "right_hand_pose": 45, "transl": 3,
}  # fmt: skip
# Order of the 55 joint rotations in smplx's full pose (and AMASS SMPL-X ``poses``).
FULL_POSE_ORDER = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                   "left_hand_pose", "right_hand_pose")  # fmt: skip
SMPLH_POSE_ORDER = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose")
SMPL_POSE_WIDTH = 72  # 24 joints: root, 21 body joints, left and right hand
AMASS_SMPLH_BETAS = 16
AMASS_DMPLS = 8
# Z-up (AMASS, Blender) world -> the protocol's Y-up world: (x, y, z) -> (x, z, -y).
Y_UP_FROM_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
# Rest pelvis of the neutral stand-in body at zero betas (the real SMPL-X's is within ~10 cm):
# the pivot of the axis change when the caller does not know the exact body.
DEFAULT_REST_PELVIS = np.array([0.0, -0.26, 0.0])


class MotionFormatError(ValueError):
    """A motion file is not in a layout this module understands."""


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
        pose = np.asarray(full_pose, dtype=np.float64).reshape(-1, NUM_JOINTS * 3)
        arrays, start = {}, 0
        for name in FULL_POSE_ORDER:
            width = PER_FRAME_FIELDS[name]
            arrays[name] = pose[:, start : start + width]
            start += width
        return cls(transl=transl, fps=fps, **arrays, **kwargs)

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
        return np.concatenate([getattr(self, k) for k in FULL_POSE_ORDER], axis=1).reshape(-1, NUM_JOINTS, 3)

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


# ---- AMASS ---------------------------------------------------------------------------------------
def _decode_str(value: np.ndarray) -> str:
    item = np.asarray(value).item() if np.asarray(value).shape == () else np.asarray(value).reshape(-1)[0]
    return item.decode() if isinstance(item, bytes) else str(item)


def _frame_rate(data: Any) -> float:
    for key in ("mocap_frame_rate", "mocap_framerate"):
        if key in data.files:
            return float(np.asarray(data[key]).reshape(-1)[0])
    raise MotionFormatError("no mocap_frame_rate / mocap_framerate in file")


def _vector(data: Any, key: str, default_size: int = 10) -> np.ndarray:
    if key not in data.files:
        return np.zeros(default_size)
    return np.asarray(data[key], dtype=np.float64).reshape(-1)


def change_world_axes(motion: Motion, rotation: np.ndarray, rest_pelvis: np.ndarray | None = None) -> Motion:
    """Re-express ``motion`` in a world rotated by ``rotation`` (3x3): the same body, new axes.

    The root rotates about the rest pelvis ``p``: posed = R (v - p) + p + t, so in the new world
    R' = W R and t' = W (p + t) - p. See the module doc for the default ``p``.
    """
    w = np.asarray(rotation, dtype=np.float64)
    p = DEFAULT_REST_PELVIS if rest_pelvis is None else np.asarray(rest_pelvis, dtype=np.float64).reshape(3)
    root = Rotation.from_matrix(w) * Rotation.from_rotvec(motion.global_orient)
    transl = (motion.transl + p) @ w.T - p
    return replace(motion, global_orient=root.as_rotvec(), transl=transl)


def load_amass(
    path: str | Path,
    num_betas: int | None = None,
    *,
    z_up: bool = True,
    rest_pelvis: np.ndarray | None = None,
) -> Motion:
    """Read an AMASS npz of either release (SMPL-X or SMPL+H); see the module doc for layouts.

    ``z_up`` converts AMASS's Z-up world to the protocol's Y-up one (see the module doc); pass
    ``rest_pelvis`` of the body that will play the motion for an exact conversion.
    """
    motion = _read_amass(path, num_betas)
    return change_world_axes(motion, Y_UP_FROM_Z_UP, rest_pelvis) if z_up else motion


def _read_amass(path: str | Path, num_betas: int | None) -> Motion:
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise MotionFormatError(f"{path}: not a plain npz ({exc})") from exc
    with data:
        if "poses" not in data.files or "trans" not in data.files:
            raise MotionFormatError(f"{path}: AMASS files have 'poses' and 'trans'; found {data.files}")
        poses = np.asarray(data["poses"], dtype=np.float64)
        trans = np.asarray(data["trans"], dtype=np.float64)
        fps = _frame_rate(data)
        gender = _decode_str(data["gender"]) if "gender" in data.files else "neutral"
        betas = _vector(data, "betas")
        if num_betas is not None:
            betas = betas[:num_betas]
        expression = _vector(data, "expression")
        model_type = _decode_str(data["surface_model_type"]) if "surface_model_type" in data.files else None
        if poses.ndim != 2 or len(trans) != len(poses):
            raise MotionFormatError(f"{path}: poses {poses.shape} and trans {trans.shape} disagree")
        if poses.shape[1] == NUM_JOINTS * 3 and model_type in (None, "smplx"):
            return Motion.from_full_pose(
                poses, trans, fps, betas=betas, expression=expression, gender=gender, source_model="smplx"
            )
        if poses.shape[1] == 156:
            arrays, start = {}, 0
            for name in SMPLH_POSE_ORDER:
                width = PER_FRAME_FIELDS[name]
                arrays[name] = poses[:, start : start + width]
                start += width
            zeros = np.zeros((len(poses), 3))
            return Motion(
                **arrays,
                jaw_pose=zeros,
                leye_pose=zeros,
                reye_pose=zeros,
                transl=trans,
                betas=betas,
                fps=fps,
                gender=gender,
                source_model="smplh",
            )
        if poses.shape[1] == SMPL_POSE_WIDTH:
            # plain SMPL: root + the same 21 body joints, then two hand joints SMPL-X does not have
            zeros3, zeros45 = np.zeros((len(poses), 3)), np.zeros((len(poses), 45))
            return Motion(
                global_orient=poses[:, :3],
                body_pose=poses[:, 3:66],
                left_hand_pose=zeros45,
                right_hand_pose=zeros45,
                jaw_pose=zeros3,
                leye_pose=zeros3,
                reye_pose=zeros3,
                transl=trans,
                betas=betas,
                fps=fps,
                gender=gender,
                source_model="smpl",
            )
        raise MotionFormatError(f"{path}: unsupported poses width {poses.shape[1]} (model {model_type})")


def save_amass(
    motion: Motion,
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
        motion = change_world_axes(motion, Y_UP_FROM_Z_UP.T, rest_pelvis)
    n = motion.n_frames
    common = {"trans": motion.transl, "gender": np.array(motion.gender)}
    if layout == "smplx":
        pose = motion.full_pose().reshape(n, -1)
        arrays = {
            **common,
            "poses": pose,
            "root_orient": motion.global_orient,
            "pose_body": motion.body_pose,
            "pose_hand": np.concatenate([motion.left_hand_pose, motion.right_hand_pose], axis=1),
            "pose_jaw": motion.jaw_pose,
            "pose_eye": np.concatenate([motion.leye_pose, motion.reye_pose], axis=1),
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
            "poses": np.concatenate([getattr(motion, k) for k in SMPLH_POSE_ORDER], axis=1),
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


# ---- resampling ------------------------------------------------------------------------------
def _slerp_rotvecs(rotvecs: np.ndarray, index: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Slerp between frames ``index`` and ``index + 1`` of (F, J, 3) axis-angle, per joint."""
    n, j = rotvecs.shape[:2]
    quats = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_quat().reshape(n, j, 4)
    q0, q1 = quats[index], quats[np.minimum(index + 1, n - 1)]
    dot = (q0 * q1).sum(axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # shortest arc
    dot = np.abs(dot).clip(max=1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    a = alpha[:, None, None]
    small = sin < 1e-6
    w0 = np.where(small, 1 - a, np.sin((1 - a) * theta) / np.where(small, 1.0, sin))
    w1 = np.where(small, a, np.sin(a * theta) / np.where(small, 1.0, sin))
    q = w0 * q0 + w1 * q1
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return Rotation.from_quat(q.reshape(-1, 4)).as_rotvec().reshape(len(index), j, 3)


def resample(motion: Motion, fps: float) -> Motion:
    """The motion at ``fps``: frames at t = k / fps over the same time span (slerp on every joint
    rotation, linear on translation). Frames that fall on source frames reproduce them exactly."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n_out = int(np.floor(motion.duration * fps + 1e-6)) + 1
    src = np.arange(n_out) * (motion.fps / fps)  # fractional source frame of each output frame
    index = np.minimum(np.floor(src + 1e-9).astype(int), motion.n_frames - 1)
    alpha = np.clip(src - index, 0.0, 1.0)
    alpha[np.abs(alpha) < 1e-9] = 0.0
    pose = _slerp_rotvecs(motion.full_pose(), index, alpha)
    nxt = np.minimum(index + 1, motion.n_frames - 1)
    transl = (1 - alpha)[:, None] * motion.transl[index] + alpha[:, None] * motion.transl[nxt]
    return Motion.from_full_pose(
        pose,
        transl,
        fps,
        betas=motion.betas,
        expression=motion.expression,
        gender=motion.gender,
        source_model=motion.source_model,
    )
