"""Small analytic meshes and an independent ray caster for the render tests."""

from __future__ import annotations

import numpy as np


def uv_sphere(n_lat: int = 12, n_lon: int = 16, radius: float = 1.0,
              centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV sphere (Y up): vertices (V,3) float64 and faces (F,3) int64, outward winding."""
    verts = [(0.0, radius, 0.0)]
    for i in range(1, n_lat):
        theta = np.pi * i / n_lat
        for j in range(n_lon):
            phi = 2 * np.pi * j / n_lon
            verts.append((radius * np.sin(theta) * np.cos(phi), radius * np.cos(theta),
                          radius * np.sin(theta) * np.sin(phi)))
    verts.append((0.0, -radius, 0.0))
    faces = []
    last = len(verts) - 1
    for j in range(n_lon):
        faces.append((0, 1 + (j + 1) % n_lon, 1 + j))
    for i in range(n_lat - 2):
        ring, nxt = 1 + i * n_lon, 1 + (i + 1) * n_lon
        for j in range(n_lon):
            a, b = ring + j, ring + (j + 1) % n_lon
            c, d = nxt + j, nxt + (j + 1) % n_lon
            faces += [(a, b, d), (a, d, c)]
    ring = 1 + (n_lat - 2) * n_lon
    for j in range(n_lon):
        faces.append((last, ring + j, ring + (j + 1) % n_lon))
    return np.asarray(verts) + np.asarray(centre), np.asarray(faces, dtype=np.int64)


def ray_cast_depth(verts_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int,
                   near: float = 1e-6) -> np.ndarray:
    """Camera depth of the nearest hit through every pixel centre (Moller-Trumbore), inf on a miss."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3)
    dirs = pix @ np.linalg.inv(K).T  # z = 1, so the hit distance t is the camera depth
    depth = np.full(dirs.shape[0], np.inf)
    for tri in verts_cam[faces]:
        e1, e2 = tri[1] - tri[0], tri[2] - tri[0]
        p = np.cross(dirs, e2)
        det = p @ e1
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -tri[0]
        u = (p @ s) * inv
        q = np.cross(s, e1)
        v = (dirs @ q) * inv
        t = (q @ e2) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > near)
        depth = np.where(hit & (t < depth), t, depth)
    return depth.reshape(height, width)
