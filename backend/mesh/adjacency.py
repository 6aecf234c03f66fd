"""Vertex adjacency of a triangle mesh and explicit diffusion over it (smoothing per-vertex values).

Used to smooth skinning weights (the stand-in body and the avatar rig), to spread colours over a
surface (texture fill) and to soften masks (synthetic characters): every caller wants the same
symmetric 0/1 matrix, whatever the winding or the number of faces sharing an edge.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """(3F,2) directed edges, one per face corner (an interior edge appears once each way)."""
    f = np.asarray(faces, dtype=np.int64)
    return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def vertex_adjacency(faces: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """Symmetric 0/1 (float64) vertex adjacency matrix of a triangle mesh."""
    edges = mesh_edges(faces)
    a = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices))
    return ((a + a.T) > 0).astype(np.float64).tocsr()


def vertex_degree(adjacency: sp.csr_matrix) -> np.ndarray:
    """(V,) number of neighbours, at least 1 (so isolated vertices keep their value when divided)."""
    return np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1.0)


def diffuse(values: np.ndarray, adjacency: sp.csr_matrix, steps: int, rate: float = 0.5) -> np.ndarray:
    """``steps`` of explicit diffusion: each value moves ``rate`` towards its neighbours' mean."""
    degree = vertex_degree(adjacency)
    out = np.asarray(values, dtype=np.float64)
    column = out.ndim == 1
    out = out[:, None] if column else out
    for _ in range(steps):
        out = (1.0 - rate) * out + rate * (adjacency @ out) / degree[:, None]
    return out[:, 0] if column else out


def face_components(faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Pieces of a mesh: their number and the (F,) piece of each face (faces sharing a vertex are
    one piece). Pieces are numbered in the order of their first face, so labels are stable."""
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return 0, np.zeros(0, dtype=np.int64)
    _, vertex_label = connected_components(vertex_adjacency(f, int(f.max()) + 1), directed=False)
    face_label = vertex_label[f[:, 0]]
    pieces, first = np.unique(face_label, return_index=True)
    rank = np.empty(int(pieces.max()) + 1, dtype=np.int64)
    rank[pieces[np.argsort(first)]] = np.arange(len(pieces))
    return len(pieces), rank[face_label]
