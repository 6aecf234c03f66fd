"""The SDF of the SMPL-X body mesh at the fitted shape and pose: the initial DMTet fit's target.

Sign from the closest surface point's interpolated normal (robust for the closed body mesh and cheap:
one KD-tree query plus exact point-triangle distances); distances exact to the triangles.
"""

from __future__ import annotations

import numpy as np

from backend.mesh.closest import MeshQuery
from backend.mesh.sampling import sample_surface


class BodySDF:
    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.query = MeshQuery(vertices, faces)
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Signed distance in metres (negative inside) at (N,3) points."""
        return self.query.signed_distance(points)

    def near_surface_samples(self, count: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Points scattered around the surface (Gaussian offsets of ``sigma`` metres)."""
        points, _ = sample_surface(self.vertices, self.faces, count, rng)
        return points + rng.normal(0, sigma, (count, 3))
