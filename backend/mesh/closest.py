"""Closest points on a triangle mesh (exact point-triangle distance over KD-tree candidates).

Used for the body SDF (initial DMTet fit), part-label and skin-weight transfer, and metrics. Pure
numpy + scipy: it runs once per stage, not per optimisation step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from backend.mesh.normals import vertex_normals


@dataclass
class ClosestPoints:
    distance: np.ndarray  # (N,) unsigned
    face: np.ndarray  # (N,) index of the closest face
    bary: np.ndarray  # (N,3) barycentric coordinates of the closest point in that face
    point: np.ndarray  # (N,3)


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentrics (..., 3) of the point of triangle abc closest to p (Voronoi-region test)."""
    ab, ac, ap = b - a, c - a, p - a
    d1 = (ab * ap).sum(-1)
    d2 = (ac * ap).sum(-1)
    bp = p - b
    d3 = (ab * bp).sum(-1)
    d4 = (ac * bp).sum(-1)
    cp = p - c
    d5 = (ab * cp).sum(-1)
    d6 = (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    # Interior by default, then overwrite with the edge and vertex regions (order matters: vertices last).
    denom = va + vb + vc
    v = vb / np.where(np.abs(denom) < eps, eps, denom)
    w = vc / np.where(np.abs(denom) < eps, eps, denom)
    bary = np.stack([1 - v - w, v, w], -1)

    def put(mask: np.ndarray, values: np.ndarray) -> None:
        bary[mask] = values[mask]

    # Edge bc
    t_bc = (d4 - d3) / np.maximum((d4 - d3) + (d5 - d6), eps)
    put((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([0 * t_bc, 1 - t_bc, t_bc], -1))
    # Edge ac
    t_ac = d2 / np.maximum(d2 - d6, eps)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, 0 * t_ac, t_ac], -1))
    # Edge ab
    t_ab = d1 / np.maximum(d1 - d3, eps)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, 0 * t_ab], -1))
    one, zero = np.ones_like(d1), np.zeros_like(d1)
    put((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, one], -1))
    put((d3 >= 0) & (d4 <= d3), np.stack([zero, one, zero], -1))
    put((d1 <= 0) & (d2 <= 0), np.stack([one, zero, zero], -1))
    return bary


class MeshQuery:
    """Nearest-surface queries on one triangle mesh."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, candidates: int = 12) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.candidates = min(candidates, len(self.faces))
        tri = self.vertices[self.faces]
        # Centroids plus edge midpoints: a long thin face is still found from points near its ends.
        samples = np.concatenate(
            [
                tri.mean(1),
                (tri[:, 0] + tri[:, 1]) / 2,
                (tri[:, 1] + tri[:, 2]) / 2,
                (tri[:, 2] + tri[:, 0]) / 2,
            ]
        )
        self._sample_face = np.tile(np.arange(len(self.faces)), 4)
        self._tree = cKDTree(samples)
        self.vertex_normals = vertex_normals(self.vertices, self.faces)

    def closest(self, points: np.ndarray, chunk: int = 65536) -> ClosestPoints:
        points = np.asarray(points, dtype=np.float64)
        out_d = np.empty(len(points))
        out_f = np.empty(len(points), dtype=np.int64)
        out_b = np.empty((len(points), 3))
        for s in range(0, len(points), chunk):
            p = points[s : s + chunk]
            _, idx = self._tree.query(p, k=self.candidates)
            idx = idx.reshape(len(p), -1)
            cand = self._sample_face[idx]  # (n,k)
            tri = self.vertices[self.faces[cand]]  # (n,k,3,3)
            bary = closest_on_triangles(p[:, None], tri[..., 0, :], tri[..., 1, :], tri[..., 2, :])
            q = (bary[..., None] * tri).sum(-2)
            d = np.linalg.norm(q - p[:, None], axis=-1)
            best = d.argmin(1)
            r = np.arange(len(p))
            out_d[s : s + chunk] = d[r, best]
            out_f[s : s + chunk] = cand[r, best]
            out_b[s : s + chunk] = bary[r, best]
        point = (out_b[..., None] * self.vertices[self.faces[out_f]]).sum(1)
        return ClosestPoints(out_d, out_f, out_b, point)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Negative inside. Sign from the interpolated vertex normal at the closest point, which (unlike
        the face normal) stays right near edges and corners of a closed, consistently wound mesh."""
        cp = self.closest(points)
        n = (cp.bary[..., None] * self.vertex_normals[self.faces[cp.face]]).sum(1)
        side = ((np.asarray(points) - cp.point) * n).sum(1)
        return np.where(side < 0, -cp.distance, cp.distance)
