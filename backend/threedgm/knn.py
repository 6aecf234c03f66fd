"""Exact nearest body vertex of many points, at the ``base`` config's scale.

The warp asks, for every ray sample, which posed body vertex is nearest. Brute force is
``points x vertices`` distances: fine for ``tiny`` (512 vertices), ~10^10 per batch item for ``base``
(128² rays x 96 samples x 10,475 vertices). Here the vertices are split once per call into leaves of
a balanced k-d tree (median splits on the widest axis, ``leaf`` vertices each); every point looks at
its leaves in the order of the distance to their bounding boxes (a lower bound of any distance
inside), ``probe`` leaves per round, and stops when the next box is farther than the best vertex
found. That is the exact answer (the bound is a true lower bound), in ``N x (leaves + probe x leaf x
rounds)`` distances instead of ``N x vertices``; most points finish in one or two rounds.

:func:`nearest_vertex` dispatches: brute force at or below :data:`BRUTE_FORCE_MAX` vertices (the
tiny config, bit-identical to before), ``pytorch3d.ops.knn_points`` when installed, else the tree.
Distances are computed from exact differences (never the ``|a|² + |b|² - 2ab`` matmul form, which
loses ~1 mm to cancellation), so both paths give the same indices and distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

BRUTE_FORCE_MAX = 2048  # vertices: brute force below this (tiny: 512; its runs stay bit-identical)


def nearest_vertex_brute(
    points: torch.Tensor, verts: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (B,N) and distance (B,N) of each point's nearest vertex; points (B,N,3), verts (B,Nv,3)."""
    idx, dist = [], []
    for s in range(0, points.shape[1], chunk):
        d = torch.cdist(
            points[:, s : s + chunk].detach().float(),
            verts.float(),
            compute_mode="donot_use_mm_for_euclid_dist",
        )
        m = d.min(dim=-1)
        idx.append(m.indices)
        dist.append(m.values)
    return torch.cat(idx, 1), torch.cat(dist, 1)


def build_leaves(verts: torch.Tensor, leaf: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leaves of a balanced k-d tree of (B,Nv,3) vertices: original indices (B,L,leaf) and box
    corners lo, hi (B,L,3). The vertex count is padded to ``L x leaf`` (L a power of two) by
    repeating the last vertex, which only repeats a candidate (same index, same distance)."""
    B, nv, _ = verts.shape
    levels = max(0, math.ceil(math.log2(max(nv / leaf, 1))))
    L = 2**levels
    size = math.ceil(nv / L)
    pad = L * size - nv
    index = torch.arange(nv, device=verts.device).expand(B, nv)
    if pad:
        index = torch.cat([index, index[:, -1:].expand(B, pad)], 1)
    v = torch.gather(verts, 1, index[..., None].expand(-1, -1, 3))
    for level in range(levels):
        groups = 2**level
        g = v.reshape(B, groups, -1, 3)
        gi = index.reshape(B, groups, -1)
        axis = (g.amax(2) - g.amin(2)).argmax(-1)  # (B,groups) the widest axis of each group
        key = torch.gather(g, 3, axis[:, :, None, None].expand(-1, -1, g.shape[2], 1))[..., 0]
        order = key.argsort(dim=-1, stable=True)
        v = torch.gather(g, 2, order[..., None].expand(-1, -1, -1, 3)).reshape(B, -1, 3)
        index = torch.gather(gi, 2, order).reshape(B, -1)
    leaves = v.reshape(B, L, size, 3)
    return index.reshape(B, L, size), leaves.amin(2), leaves.amax(2)


def nearest_vertex_tree(
    points: torch.Tensor, verts: torch.Tensor, leaf: int = 256, probe: int = 1, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact nearest vertex (index, distance) of (B,N,3) points among (B,Nv,3) vertices by the
    k-d tree leaves of :func:`build_leaves` (see the module's docstring)."""
    points = points.detach().float()
    verts = verts.detach().float()
    B, N, _ = points.shape
    leaf_index, lo, hi = build_leaves(verts, leaf)
    L, size = leaf_index.shape[1:]
    flat_index = leaf_index.reshape(B, -1)
    leaf_verts = torch.gather(verts, 1, flat_index[..., None].expand(-1, -1, 3)).reshape(B, L, size, 3)
    out_idx = torch.empty(B, N, dtype=torch.long, device=points.device)
    out_dist = torch.empty(B, N, dtype=torch.float32, device=points.device)
    for s in range(0, N, chunk):
        p = points[:, s : s + chunk]  # (B,n,3)
        n = p.shape[1]
        # distance from each point to each leaf's box: a lower bound of every distance inside it
        gap = torch.maximum(lo[:, None] - p[:, :, None], p[:, :, None] - hi[:, None]).clamp(min=0)
        bound = gap.square().sum(-1).sqrt()  # (B,n,L)
        bound, order = bound.sort(dim=-1)
        best_d = torch.full((B, n), math.inf, device=p.device)
        best_i = torch.zeros((B, n), dtype=torch.long, device=p.device)
        for j in range(0, L, probe):
            # (B,n): a box not yet searched may hold a nearer vertex (or an equally near one of a
            # lower index: ties go where the brute force puts them)
            active = bound[:, :, j] <= best_d
            if not bool(active.any()):
                break
            b, i = active.nonzero(as_tuple=True)
            cand = order[b, i, j : j + probe]  # (A,probe) leaves
            cv = leaf_verts[b[:, None], cand].reshape(len(b), -1, 3)  # (A,probe*size,3)
            ci = leaf_index[b[:, None], cand].reshape(len(b), -1)
            # cdist's exact-difference kernel, as the brute force: the same distances to the bit
            d = torch.cdist(p[b, i][:, None], cv, compute_mode="donot_use_mm_for_euclid_dist")[:, 0]
            d_min = d.min(-1).values
            # of equally near candidates the lowest index (as the brute force's min over the vertices)
            i_min = torch.where(d == d_min[:, None], ci, torch.iinfo(ci.dtype).max).min(-1).values
            cur_d, cur_i = best_d[b, i], best_i[b, i]
            # an exact tie between two vertices goes to the lower index, as the brute force's min does
            better = (d_min < cur_d) | ((d_min == cur_d) & (i_min < cur_i))
            best_d[b, i] = torch.where(better, d_min, cur_d)
            best_i[b, i] = torch.where(better, i_min, cur_i)
        out_idx[:, s : s + n] = best_i
        out_dist[:, s : s + n] = best_d
    return out_idx, out_dist


def _pytorch3d_knn() -> Callable[..., Any] | None:
    try:
        from pytorch3d.ops import knn_points
    except ImportError:
        return None
    return knn_points


def nearest_vertex(
    points: torch.Tensor, verts: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index (B,N) and distance (B,N) of each point's nearest vertex; points (B,N,3), verts (B,Nv,3)."""
    if verts.shape[1] <= BRUTE_FORCE_MAX:
        return nearest_vertex_brute(points, verts, chunk)
    knn_points = _pytorch3d_knn()
    if knn_points is not None:
        p, v = points.detach().float(), verts.detach().float()
        idx = knn_points(p, v, K=1).idx[..., 0]
        near = torch.gather(v, 1, idx[..., None].expand(-1, -1, 3))
        return idx, (p - near).square().sum(-1).sqrt()
    return nearest_vertex_tree(points, verts)
