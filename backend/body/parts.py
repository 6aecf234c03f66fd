"""Per-vertex body-part labels, derived from skinning weights.

Works for any SMPL-X-topology model (stand-in or licensed): each joint's weight counts towards the
part its bone belongs to (joints.JOINT_PART), and a vertex takes the part with the largest total.
"""

from __future__ import annotations

import numpy as np

from .joints import JOINT_PART, NUM_JOINTS, PART_NAMES


def joint_to_part_matrix() -> np.ndarray:
    """(55, P) 0/1 matrix: joint j contributes to part JOINT_PART[j]."""
    m = np.zeros((NUM_JOINTS, len(PART_NAMES)))
    m[np.arange(NUM_JOINTS), JOINT_PART] = 1.0
    return m


def part_weights(weights: np.ndarray) -> np.ndarray:
    """(V, P) skinning weight of each vertex summed per part (rows sum to 1 like the weights)."""
    return np.asarray(weights, dtype=np.float64) @ joint_to_part_matrix()


def part_labels(weights: np.ndarray) -> np.ndarray:
    """(V,) int32 index into PART_NAMES for each vertex."""
    return part_weights(weights).argmax(axis=1).astype(np.int32)
