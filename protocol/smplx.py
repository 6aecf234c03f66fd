"""The SMPL-X joint tree that the protocol's SMPL-X payloads are ordered by (docs/protocol.md,
"SMPL-X parameters"): shared by the backend's body model and the add-on's rig, which cannot import
each other. Facts of the SMPL-X model (the ``smplx`` package's joint order), not choices of ours,
and the payload's pose field layout built on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

NUM_JOINTS = 55

# Order of the 55 SMPL-X joints (= order of the full pose vector and of every per-joint array).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "jaw", "left_eye_smplhf", "right_eye_smplhf",
    "left_index1", "left_index2", "left_index3", "left_middle1", "left_middle2", "left_middle3",
    "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2", "left_ring3",
    "left_thumb1", "left_thumb2", "left_thumb3",
    "right_index1", "right_index2", "right_index3", "right_middle1", "right_middle2", "right_middle3",
    "right_pinky1", "right_pinky2", "right_pinky3", "right_ring1", "right_ring2", "right_ring3",
    "right_thumb1", "right_thumb2", "right_thumb3",
)  # fmt: skip

# Parent joint index of each joint (-1 for the root): the body chain, jaw and eyes off the head,
# each finger a chain of three joints off its wrist.
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

# --------------------------------------------------------------------------- parameter payload
# The SMPL-X parameters payload (docs/protocol.md section 10): per-frame pose fields, each a run of
# joints of the full pose, in joint order. Field -> (first joint, number of joints); together they
# cover joints 0..54 once. ``transl`` (F,3) is per frame too; ``betas`` and ``expression`` are
# per motion. Payload order: global_orient, body_pose, hands, jaw, eyes, transl, betas, expression.
POSE_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("global_orient", 0, 1),
    ("body_pose", 1, 21),
    ("jaw_pose", 22, 1),
    ("leye_pose", 23, 1),
    ("reye_pose", 24, 1),
    ("left_hand_pose", 25, 15),
    ("right_hand_pose", 40, 15),
)
# Width of each per-frame array of the payload (axis-angle: 3 numbers per joint).
PER_FRAME_FIELDS: dict[str, int] = {
    "global_orient": 3, "body_pose": 63, "left_hand_pose": 45, "right_hand_pose": 45,
    "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3, "transl": 3,
}  # fmt: skip
NUM_BETAS = 10  # default length of ``betas`` (the smplx package's default)
NUM_EXPRESSION = 10  # default length of ``expression``
GENDERS: tuple[str, ...] = ("neutral", "male", "female")


def split_full_pose(full_pose: Any) -> dict[str, np.ndarray]:
    """(F, 55, 3) or (F, 165) axis-angle in joint order -> the payload's pose fields, each (F, 3k)."""
    pose = np.asarray(full_pose, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)
    return {
        name: np.ascontiguousarray(pose[:, first : first + count].reshape(len(pose), 3 * count))
        for name, first, count in POSE_FIELDS
    }


def join_full_pose(fields: Mapping[str, Any]) -> np.ndarray:
    """The payload's pose fields -> (F, 55, 3) axis-angle in joint order (inverse of split)."""
    parts = [np.asarray(fields[name], dtype=np.float64).reshape(-1, n, 3) for name, _, n in POSE_FIELDS]
    return np.concatenate(parts, axis=1)


def check_gender(value: object) -> str:
    """A gender name of :data:`GENDERS` (case-insensitive; bytes allowed), else "neutral".

    The gender picks a model file on the backend, so a name read from a file must never be used
    as it stands.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip().lower()
    return text if text in GENDERS else "neutral"
