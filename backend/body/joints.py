"""The SMPL-X skeleton: joint names, kinematic tree, extra keypoint vertices and body parts.

These are facts about the SMPL-X model that the stand-in body must match exactly so a licensed
``SMPLX_*.npz`` and the stand-in are interchangeable. SMPL-X's *left* is the body's left, which is
world +x in the rest pose (the body faces +z, Y up).
"""

from __future__ import annotations

import numpy as np

# The joint tree is shared with the add-on through the protocol package.
from protocol.smplx import JOINT_NAMES, NUM_JOINTS, PARENTS

NUM_BODY_JOINTS = 21  # excluding the root (pelvis); body_pose is 21 * 3
NUM_HAND_JOINTS = 15

JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

_FINGERS = ("index", "middle", "pinky", "ring", "thumb")


def parents_array() -> np.ndarray:
    """(55,) int64 parent index per joint; -1 for the root."""
    return np.asarray(PARENTS, dtype=np.int64)


def kintree_table() -> np.ndarray:
    """(2, 55) table as stored in SMPL-X files: row 0 parents (root's is ignored), row 1 ids."""
    table = np.stack([parents_array(), np.arange(NUM_JOINTS)]).astype(np.int64)
    table[0, 0] = 4294967295  # the value the official files store for "no parent"
    return table


# Vertex indices that ``smplx`` hard-codes (smplx/vertex_ids.py, 'smplx') to append 21 extra
# keypoints after the 55 joints, in the order smplx's VertexJointSelector appends them.
EXTRA_VERTEX_IDS: dict[str, int] = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846,
    "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
}  # fmt: skip

# Names smplx gives those 21 keypoints (joint_names.JOINT_NAMES[55:76]), same order as above.
EXTRA_JOINT_NAMES: tuple[str, ...] = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
    "left_thumb", "left_index", "left_middle", "left_ring", "left_pinky",
    "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)  # fmt: skip

NUM_VERTICES = 10475
NUM_FACES = 20908
NUM_FACE_LANDMARKS = 51  # static landmarks (lmk_faces_idx); 17 more dynamic contour points
NUM_CONTOUR_LANDMARKS = 17
NUM_CONTOUR_YAW_BINS = 79  # smplx indexes dynamic landmarks by yaw rounded to -39..39 degrees

# Body parts, computed from skinning weights (see parts.py). Index = label value.
PART_NAMES: tuple[str, ...] = (
    "head", "neck", "torso",
    "upper_arm_l", "lower_arm_l", "hand_l", "upper_arm_r", "lower_arm_r", "hand_r",
    "upper_leg_l", "lower_leg_l", "foot_l", "upper_leg_r", "lower_leg_r", "foot_r",
)  # fmt: skip


def _joint_part(name: str) -> str:
    side = "l" if name.startswith("left_") else "r" if name.startswith("right_") else ""
    base = name.removeprefix("left_").removeprefix("right_")
    if name in ("head", "jaw") or base == "eye_smplhf":
        return "head"
    if name == "neck":
        return "neck"
    if name in ("pelvis", "spine1", "spine2", "spine3") or base == "collar":
        return "torso"
    table = {
        "shoulder": "upper_arm", "elbow": "lower_arm", "wrist": "hand",
        "hip": "upper_leg", "knee": "lower_leg", "ankle": "foot", "foot": "foot",
    }  # fmt: skip
    if base in table:
        return f"{table[base]}_{side}"
    if base.rstrip("123") in _FINGERS:
        return f"hand_{side}"
    raise ValueError(f"no part for joint {name!r}")


# Which part each joint's skinning weight counts towards: the bone a joint *rotates* is the
# segment from that joint to its child (SMPL convention: forearm vertices belong to the elbow).
JOINT_PART: tuple[int, ...] = tuple(PART_NAMES.index(_joint_part(n)) for n in JOINT_NAMES)
