"""AMASS ``.npz`` motions on the Blender side, without a backend.

Reading, the Z-up -> Y-up world change and the resampling to the scene's frame rate (slerp per
joint) are ``protocol/amass.py``'s, the same code the backend runs, so a file plays the same frames
in Blender as on the backend. All three AMASS layouts load (SMPL-X, SMPL+H, plain SMPL). This module
only turns the result into what the action importer takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import rig_math
from .wire import amass

Motion = amass.AmassMotion
resample = amass.resample  # (motion, fps) -> motion at fps: slerp per joint, linear translation


class MotionFileError(ValueError):
    """The file cannot be read as an AMASS motion; the message says why."""


def load_amass(path: str | Path, *, rest_pelvis: np.ndarray | None = None, z_up: bool = True) -> Motion:
    """The motion in the protocol's Y-up world (with ``z_up``) at the file's frame rate.

    ``rest_pelvis``: the protocol-frame rest pelvis of the armature that will play it (exact axes).
    """
    try:
        return amass.load_amass(path, z_up=z_up, rest_pelvis=rest_pelvis)
    except (OSError, ValueError) as exc:  # AmassFormatError is a ValueError
        raise MotionFileError(f"cannot read {path}: {exc}") from exc


def local_rotations(motion: Motion) -> np.ndarray:
    """(T, 55, 3, 3) joint rotations relative to their parents, for ``apply_pose_action``."""
    return rig_math.aa_to_matrix(motion.pose)
