"""Area-uniform random points on a triangle mesh (metrics and the body SDF's near-surface samples)."""

from __future__ import annotations

import numpy as np

from backend.mesh.normals import face_normals


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(count,3) points drawn uniformly by area and the (count,) index of the face each lies on.

    Draw order (face, then two uniforms per point) is fixed, so a seeded ``rng`` repeats its samples.
    """
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    area = np.linalg.norm(face_normals(vertices, faces, unit=False), axis=1)
    face = rng.choice(len(tri), size=count, p=area / area.sum())
    s, r2 = np.sqrt(rng.random(count)), rng.random(count)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return (w[:, :, None] * tri[face]).sum(1), face
