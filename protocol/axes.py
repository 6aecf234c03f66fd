"""The one home of the world-axes convention: Z-up worlds (Blender, AMASS) <-> the protocol's Y-up.

Protocol world (docs/protocol.md section 10): right-handed, Y up, metres (SMPL-X's own frame).
Blender and AMASS store right-handed Z-up worlds. A Z-up point (x, y, z) is the protocol point
(x, z, -y): a rotation of -90 degrees about x, so directions, points and rotation matrices all map
with the same 3x3 matrix (``R' = W R W^T`` for a rotation expressed in the other world).

Pure numpy: the add-on, the camera math and the backend's motion reader all take it from here.
"""

from __future__ import annotations

import numpy as np

# Z-up world (x, y, z)  ->  protocol world (x, z, -y).
Y_UP_FROM_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
Y_UP_FROM_Z_UP.flags.writeable = False
# protocol world (x, y, z)  ->  Z-up world (x, -z, y): the inverse, which for a rotation is the transpose.
Z_UP_FROM_Y_UP = Y_UP_FROM_Z_UP.T.copy()
Z_UP_FROM_Y_UP.flags.writeable = False


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """(..., 3) Z-up points or directions (Blender, AMASS) -> protocol (Y up): (x, y, z) -> (x, z, -y)."""
    return np.asarray(points, dtype=np.float64) @ Y_UP_FROM_Z_UP.T


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Inverse of :func:`z_up_to_y_up`: (x, y, z) -> (x, -z, y)."""
    return np.asarray(points, dtype=np.float64) @ Z_UP_FROM_Y_UP.T
