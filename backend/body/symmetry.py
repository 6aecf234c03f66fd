"""Left/right mirror symmetry for meshes: cut at the x = 0 plane, mirror, weld.

A body decimated as a whole is never exactly symmetric. Keeping its left half (x >= 0), cutting the
triangles that cross the midplane, mirroring that half and welding the two along the cut gives a
mesh whose right half is the exact mirror image of its left, like SMPL-X's own topology.
"""

from __future__ import annotations

import numpy as np

from backend.mesh.adjacency import mesh_edges


class SymmetryError(RuntimeError):
    """The mesh could not be cut and mirrored into one closed surface."""


def cut_left_half(vertices: np.ndarray, faces: np.ndarray, snap: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of a closed mesh with x >= 0, as an open mesh whose rim lies exactly on x = 0.

    Vertices closer than ``snap`` to the plane are moved onto it first, so the cut makes no
    sliver triangles.
    """
    v = vertices.astype(np.float64).copy()
    v[np.abs(v[:, 0]) < snap, 0] = 0.0
    # A crossing edge whose cut point would land within ``snap`` of an end point would make a
    # tiny edge: put that end point on the plane instead (it moves by less than ``snap``).
    edges = np.unique(np.sort(mesh_edges(faces), axis=1), axis=0)
    for _ in range(5):
        xa, xb = v[edges[:, 0], 0], v[edges[:, 1], 0]
        cross = xa * xb < 0
        if not cross.any():
            break
        e, xa, xb = edges[cross], xa[cross], xb[cross]
        length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
        t = xa / (xa - xb)
        near_a, near_b = t * length < snap, (1 - t) * length < snap
        if not (near_a.any() or near_b.any()):
            break
        v[e[near_a, 0], 0] = 0.0
        v[e[near_b, 1], 0] = 0.0
    side = np.sign(v[:, 0]).astype(int)
    new_points: list[np.ndarray] = []
    crossing: dict[tuple[int, int], int] = {}

    def cut_point(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in crossing:
            t = v[a, 0] / (v[a, 0] - v[b, 0])
            p = v[a] + t * (v[b] - v[a])
            p[0] = 0.0
            crossing[key] = len(v) + len(new_points)
            new_points.append(p)
        return crossing[key]

    kept: list[tuple[int, int, int]] = []
    for tri in faces:
        s = side[tri]
        if (s <= 0).all():
            continue  # right side, or lying in the plane
        if (s >= 0).all():
            kept.append(tuple(int(i) for i in tri))
            continue
        polygon: list[int] = []
        for k in range(3):
            a, b = int(tri[k]), int(tri[(k + 1) % 3])
            if side[a] >= 0:
                polygon.append(a)
            if side[a] * side[b] < 0:
                polygon.append(cut_point(a, b))
        kept += [(polygon[0], polygon[i], polygon[i + 1]) for i in range(1, len(polygon) - 1)]
    all_v = np.concatenate([v, np.asarray(new_points).reshape(-1, 3)])
    f = np.asarray(kept, dtype=np.int64)
    used = np.unique(f)
    remap = np.full(len(all_v), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return all_v[used], remap[f]


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) directed edges used by exactly one face."""
    edges = mesh_edges(faces)
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return edges[counts[inverse.ravel()] == 1]


def check_half(vertices: np.ndarray, faces: np.ndarray) -> None:
    """The half must be a disc whose rim lies on the midplane."""
    rim = boundary_edges(faces)
    if len(rim) == 0 or np.abs(vertices[rim.ravel(), 0]).max() > 0:
        raise SymmetryError("the cut's rim is not on the midplane")
    n_edges = (3 * len(faces) + len(rim)) // 2
    if len(vertices) - n_edges + len(faces) != 1:
        raise SymmetryError("the left half is not a disc (the midplane cut more than one loop)")


def mirror_and_weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror the left half and weld it along the rim: (vertices, faces, mirror index per vertex)."""
    on_plane = vertices[:, 0] == 0.0
    interior = np.nonzero(~on_plane)[0]
    n = len(vertices)
    mirror_of = np.arange(n, dtype=np.int64)
    mirror_of[interior] = n + np.arange(len(interior))
    mirrored = vertices[interior] * np.array([-1.0, 1.0, 1.0])
    full_v = np.concatenate([vertices, mirrored])
    # reflecting flips orientation, so mirrored faces are wound the other way round
    full_f = np.concatenate([faces, mirror_of[faces][:, ::-1]])
    full_mirror = np.concatenate([mirror_of, interior])
    return full_v, full_f, full_mirror


def symmetrize(vertices: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Average each vertex with its mirror image (exact symmetry after numerical drift)."""
    reflected = vertices[mirror] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (vertices + reflected)
