"""AMASS ``.npz`` motions, read on the Blender side with numpy (no backend needed).

AMASS ships SMPL-X (``poses`` (T, 165) = 55 joints, ``mocap_frame_rate``) and SMPL+H
(``poses`` (T, 156) = 52 joints, no jaw/eyes, ``mocap_framerate``) releases, with ``trans`` (T, 3),
``betas`` and ``gender``. Its world is Z up: the root rotation already stands the Y-up model up.
We treat that world as Blender's (Z up, same axes) and convert to the protocol frame here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import axes, rig_math, smplx_rig
from .wire import kinds_module

AMASS = kinds_module().names(kinds_module().AMASS_MOTION)  # the fields of an AMASS file/payload


class MotionFileError(ValueError):
    pass


@dataclass
class Motion:
    pose: np.ndarray  # (T, 55, 3) axis-angle, SMPL-X joint order, as stored in the file
    trans: np.ndarray  # (T, 3) as stored
    betas: np.ndarray
    gender: str
    fps: float


def _text(value: object) -> str:
    array = np.asarray(value)
    text = array.item() if array.shape == () else array.tolist()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)


def load_amass(path: str | Path) -> Motion:
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError) as exc:
        raise MotionFileError(f"cannot read {path}: {exc}") from exc
    if "poses" not in data or "trans" not in data:
        raise MotionFileError(f"{path} lacks 'poses' or 'trans': not an AMASS motion")
    poses = np.asarray(data["poses"], dtype=np.float64)
    trans = np.asarray(data["trans"], dtype=np.float64)
    if poses.ndim != 2 or trans.shape != (poses.shape[0], 3):
        raise MotionFileError(f"bad shapes: poses {poses.shape}, trans {trans.shape}")
    frames = poses.shape[0]
    pose = np.zeros((frames, smplx_rig.NUM_JOINTS, 3))
    if poses.shape[1] == 165:
        pose[:] = poses.reshape(frames, 55, 3)
    elif poses.shape[1] == 156:
        pose[:, list(smplx_rig.SMPLH_TO_SMPLX)] = poses.reshape(frames, 52, 3)
    else:
        raise MotionFileError(
            f"poses has {poses.shape[1]} values per frame; expected 165 (SMPL-X) or 156 (SMPL+H)"
        )
    rates = (AMASS.mocap_frame_rate, AMASS.mocap_framerate, "fps")
    fps = next((float(data[k]) for k in rates if k in data), 30.0)
    betas = np.asarray(data.get(AMASS.betas, np.zeros(10)), dtype=np.float64).ravel()
    gender = _text(data[AMASS.gender]) if AMASS.gender in data else "neutral"
    return Motion(pose, trans, betas, gender if gender in ("neutral", "male", "female") else "neutral", fps)


def resample_indices(frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Nearest source frame for each target frame covering the same duration."""
    if frames <= 0:
        return np.zeros(0, dtype=np.int64)
    duration = (frames - 1) / source_fps
    count = int(np.floor(duration * target_fps + 1e-9)) + 1
    return np.clip(np.rint(np.arange(count) * source_fps / target_fps).astype(np.int64), 0, frames - 1)


def to_protocol_frame(motion: Motion, rest_pelvis: np.ndarray, z_up: bool) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (T, 55, 3, 3) and ``transl`` (T, 3) in the protocol's Y-up convention.

    With ``z_up`` (AMASS): the file's world is Blender's, so the root rotation gains ``C.T`` and the
    pelvis (``rest_pelvis + trans`` in that world) is brought into the protocol frame.
    """
    local = rig_math.aa_to_matrix(motion.pose)
    transl = motion.trans.copy()
    if z_up:
        local[:, 0] = axes.PROTOCOL_FROM_BLENDER @ local[:, 0]
        transl = axes.to_protocol(rest_pelvis + motion.trans) - rest_pelvis
    return local, transl
