"""Pose correctives (``posedirs``) for the stand-in: a volume-keeping bulge at every bent joint.

Linear blend skinning loses volume where a joint bends or twists (the elbow's inside collapses, a
twisted wrist pinches like a candy wrapper). SMPL-X learns pose blend shapes from scans; the
stand-in uses one designed shape per joint instead: vertices near joint j move out along their
normal by ``strength * r_j * (1 - cos θ_j) * exp(-d² / 2 r_j²)``, with θ_j the joint's rotation
angle, d the distance to the joint and r_j the limb radius there.

That fits SMPL-X's linear pose-feature model exactly: the feature of joint j is R_j - I (row-major,
9 values) and 1 - cos θ = -trace(R_j - I) / 2, so the shape only uses the three diagonal entries.
"""

from __future__ import annotations

import numpy as np

from .joints import JOINT_INDEX, NUM_JOINTS

BULGE_STRENGTH = 0.3
# Joints whose rotation should not inflate anything: the eyeballs and the jaw (opening the mouth
# is not a volume loss) are left out.
NO_BULGE = (JOINT_INDEX["jaw"], JOINT_INDEX["left_eye_smplhf"], JOINT_INDEX["right_eye_smplhf"])
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9


def joint_bulge_posedirs(
    vertices: np.ndarray, normals: np.ndarray, joints: np.ndarray, radius: np.ndarray, movable: np.ndarray
) -> np.ndarray:
    """(V, 3, 486) pose blend shapes; ``movable`` (V,) bool marks vertices allowed to move."""
    posedirs = np.zeros((len(vertices), 3, NUM_POSE_BASIS))
    for j in range(1, NUM_JOINTS):
        if j in NO_BULGE:
            continue
        r = max(float(radius[j]), 1e-3)
        falloff = np.exp(-0.5 * ((vertices - joints[j]) ** 2).sum(axis=1) / r**2) * movable
        falloff[falloff < 0.01] = 0.0  # keep the shape local (and the file small)
        bulge = BULGE_STRENGTH * r * falloff[:, None] * normals  # displacement at 1 - cos θ = 1
        first = (j - 1) * 9
        for diagonal in (0, 4, 8):  # (R - I)[0,0], [1,1], [2,2]
            posedirs[:, :, first + diagonal] = -0.5 * bulge
    return posedirs
