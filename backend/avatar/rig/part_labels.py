"""Body-part labels from the SMPL-X body to the sculpted mesh, by the nearest body surface point.

The label of a sculpted vertex is the label of the closest corner (largest barycentric) of the
closest body triangle. Loose clothing and hair inherit the part they hang from (a skirt from the
hips and thighs, hair from the head), which is what UV components and skinning want.
"""

from __future__ import annotations

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.mesh.closest import ClosestPoints, MeshQuery


def closest_body_points(body: BodyMesh, points: np.ndarray) -> ClosestPoints:
    return MeshQuery(body.vertices, body.faces).closest(points)


def transfer_part_labels(body: BodyMesh, cp: ClosestPoints) -> np.ndarray:
    corner = np.argmax(cp.bary, axis=1)
    return body.part_labels[body.faces[cp.face, corner]]


def face_labels(vertex_labels: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Majority label of each face's corners (the first corner's on a three-way tie)."""
    a, b, c = (vertex_labels[faces[:, k]] for k in range(3))
    return np.where(b == c, b, a)
