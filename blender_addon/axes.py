"""The protocol <-> Blender world axes, taken from ``protocol/cameras.py`` (the one place where the
Blender-to-protocol convention is defined); see docs/protocol.md "Coordinate conventions".

protocol world: right-handed, Y up, metres. Blender world: right-handed, Z up, metres.
A Blender point (x, y, z) is the protocol point (x, z, -y).
"""

from __future__ import annotations

import numpy as np

from .wire import cameras_module


def _from_cameras_module() -> np.ndarray | None:
    try:
        cameras = cameras_module()
    except ImportError:
        return None
    for name in ("BLENDER_FROM_PROTOCOL", "PROTOCOL_TO_BLENDER"):
        matrix = getattr(cameras, name, None)
        if matrix is not None:
            return np.asarray(matrix, dtype=np.float64)[:3, :3]
    return None


def _fallback() -> np.ndarray:
    # Same as docs/protocol.md section 5; used only if protocol.cameras does not export the matrix.
    return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# C: protocol coordinates -> Blender coordinates (a rotation; its transpose goes the other way).
BLENDER_FROM_PROTOCOL: np.ndarray = _from_cameras_module()
if BLENDER_FROM_PROTOCOL is None:
    BLENDER_FROM_PROTOCOL = _fallback()
PROTOCOL_FROM_BLENDER: np.ndarray = BLENDER_FROM_PROTOCOL.T.copy()


def to_blender(points: np.ndarray) -> np.ndarray:
    """(..., 3) protocol points or directions -> Blender."""
    return np.asarray(points, dtype=np.float64) @ BLENDER_FROM_PROTOCOL.T


def to_protocol(points: np.ndarray) -> np.ndarray:
    """(..., 3) Blender points or directions -> protocol."""
    return np.asarray(points, dtype=np.float64) @ PROTOCOL_FROM_BLENDER.T
