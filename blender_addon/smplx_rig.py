"""SMPL-X skeleton facts the add-on needs without the backend: joint order, parents, and how the
pose vector is split into the payload's named fields (docs/protocol.md, "SMPL-X parameters").

The importer names bones after the joint names the backend sends and stores each bone's joint
index in the bone's ``smplx_joint`` custom property; the exporter reads that property, so renamed
bones still export correctly. These tables are the fallback for rigs without the property.
"""

from __future__ import annotations

NUM_JOINTS = 55

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

PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

# Payload field -> (first joint, number of joints), in joint order. Together they cover 0..54.
POSE_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("global_orient", 0, 1),
    ("body_pose", 1, 21),
    ("jaw_pose", 22, 1),
    ("leye_pose", 23, 1),
    ("reye_pose", 24, 1),
    ("left_hand_pose", 25, 15),
    ("right_hand_pose", 40, 15),
)

# SMPL+H (AMASS "SMPL+H G" release, 52 joints) -> SMPL-X joint index: no jaw and eyes.
SMPLH_TO_SMPLX: tuple[int, ...] = (*range(22), *range(25, 55))

JOINT_PROPERTY = "smplx_joint"
