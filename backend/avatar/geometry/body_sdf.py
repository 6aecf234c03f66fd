"""The SDF of the SMPL-X body mesh at the fitted shape and pose: the initial DMTet fit's target.

Sign from the closest surface point's interpolated normal (robust for the closed body mesh and cheap:
one KD-tree query plus exact point-triangle distances); distances exact to the triangles.
"""

from __future__ import annotations

import numpy as np

from backend.mesh.closest import MeshQuery


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
        tri = self.vertices[self.faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        f = rng.choice(len(self.faces), size=count, p=area / area.sum())
        r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
        w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
        return (w[:, :, None] * tri[f]).sum(1) + rng.normal(0, sigma, (count, 3))
