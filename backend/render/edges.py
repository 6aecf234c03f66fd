"""Mesh edge topology and segment/triangle crossings for analytic antialiasing (``ops.antialias``).

Antialiasing needs, for a pair of neighbouring pixels, the point where the segment between their
centres leaves the *surface* seen in the nearer pixel, not just that pixel's triangle: with
triangles about a pixel in size the first edge crossed is usually interior. So the segment is
followed across shared edges (``edge_twins``) until it leaves through a silhouette edge. Edge k of a
triangle is the one opposite corner k everywhere in this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

EDGE_CORNERS = ((1, 2), (2, 0), (0, 1))  # edge k joins these two corners (opposite corner k)

# Triangles a walk may cross. Near a smooth object's outline the triangles are seen at grazing
# angles, thin slivers in screen space: on a 32-cell marching-tets sphere at 48 px a pixel-to-pixel
# segment crosses up to ~20 of them (with 6, 80 % of the outline pairs found no silhouette and kept
# hard coverage: unbiased, but with no gradient). Walks on one surface end as soon as they reach the
# other pixel's triangle, so the limit costs little; it only bounds degenerate cases.
DEFAULT_MAX_HOPS = 32

# The last faces tensor seen by ``cached_edge_twins``, its in-place version counter and its twins.
_last_twins: tuple[Tensor, int, Tensor] | None = None


def cached_edge_twins(faces: Tensor) -> Tensor:
    """:func:`edge_twins`, remembered for the last ``faces`` tensor object.

    Topology rarely changes between calls (the colour and alpha antialiasing of one render, every
    step of an optimisation over a fixed mesh), while recomputing costs a sort of all edges (~4 ms
    for 20k faces, a quarter of the antialiasing time of a 512 px render). The tensor is held, so its memory
    cannot be reused by another one, and an in-place edit bumps its version and invalidates it.
    """
    global _last_twins
    last = _last_twins
    if last is not None and last[0] is faces and last[1] == faces._version:
        return last[2]
    twins = edge_twins(faces)
    _last_twins = (faces, faces._version, twins)
    return twins


def edge_twins(faces: Tensor) -> Tensor:
    """(F,3) int64 index of the face across edge k of each face; -1 on open edges.

    Edges used by more than two faces (non-manifold) also get -1, i.e. count as open: there is no
    single surface to continue on.
    """
    faces = faces.to(torch.int64)
    n = faces.shape[0]
    twins = torch.full((3 * n,), -1, dtype=torch.int64, device=faces.device)
    if n == 0:
        return twins.view(0, 3)
    ends = torch.stack([faces[:, list(pair)] for pair in EDGE_CORNERS], 1).reshape(-1, 2)
    lo, hi = ends.min(1).values, ends.max(1).values
    key = lo * (int(faces.max()) + 1) + hi
    order = torch.argsort(key)
    sorted_key = key[order]
    same = sorted_key[1:] == sorted_key[:-1]
    # (i, i+1) is a manifold edge when exactly these two half-edges share the key
    no = torch.zeros(1, dtype=torch.bool, device=faces.device)
    prev_same = torch.cat([no, same[:-1]])
    next_same = torch.cat([same[1:], no])
    pair = same & ~prev_same & ~next_same
    a, b = order[:-1][pair], order[1:][pair]
    twins[a] = torch.div(b, 3, rounding_mode="floor")
    twins[b] = torch.div(a, 3, rounding_mode="floor")
    return twins.view(n, 3)


def signed_area(tri_xy: Tensor) -> Tensor:
    """Twice the signed screen area of triangles (...,3,2); its sign is the winding as seen."""
    d1 = tri_xy[..., 1, :] - tri_xy[..., 0, :]
    d2 = tri_xy[..., 2, :] - tri_xy[..., 0, :]
    return d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]


def segment_exit(
    tri_xy: Tensor, start: Tensor, end: Tensor, orient: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Where the line start->end leaves each triangle (Cyrus-Beck): t (N,) and edge index (N,).

    The start need not lie in the triangle (a walk enters later triangles part-way along the
    segment); t is +inf where the line never leaves (degenerate triangles). ``orient`` (N,) is the
    sign of each triangle's screen area, computed when not given.
    """
    if orient is None:
        orient = torch.sign(signed_area(tri_xy))
    a = tri_xy[:, _EDGE_FROM]  # (N,3,2): the three edges at once
    d = tri_xy[:, _EDGE_TO] - a
    # Edge functions E(p) = d x (p - a), positive inside when multiplied by orient. Along the line
    # E changes by `rate` = d x (end - start); the line leaves through the edges where orient * E
    # decreases, at t = E(start) / -rate, and the exit is the first of them.
    rate = _cross(d, (end - start).unsqueeze(1))
    leaving = orient.unsqueeze(1) * rate < 0
    at_start = _cross(d, start.unsqueeze(1) - a)
    t = torch.where(leaving, at_start / torch.where(leaving, -rate, 1.0), float("inf"))
    t, edge = t.min(1)
    return t, edge


_EDGE_FROM = [pair[0] for pair in EDGE_CORNERS]
_EDGE_TO = [pair[1] for pair in EDGE_CORNERS]


def _cross(u: Tensor, v: Tensor) -> Tensor:
    """z of the 2D cross product u x v over the last dimension."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def edge_crossing(a: Tensor, c: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Parameter t (N,) where the segment start->end crosses the line through a and c (N,2 each).

    Differentiable in a and c: this is where silhouette gradients come from. The edge function's
    sign convention cancels in the ratio, so no winding is needed.
    """
    d = c - a
    e_in = d[:, 0] * (start[:, 1] - a[:, 1]) - d[:, 1] * (start[:, 0] - a[:, 0])
    e_out = d[:, 0] * (end[:, 1] - a[:, 1]) - d[:, 1] * (end[:, 0] - a[:, 0])
    denom = e_in - e_out
    # the walk only returns edges the segment crosses, so denom != 0; guard against exact zeros
    safe = torch.where(denom == 0, torch.ones_like(denom), denom)
    return e_in / safe


def walk_to_silhouette(
    tri_xy: Tensor,
    facing: Tensor,
    usable: Tensor,
    twins: Tensor,
    face_base: Tensor,
    first_tri: Tensor,
    stop_tri: Tensor,
    start: Tensor,
    end: Tensor,
    max_hops: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Follow each segment start->end across shared edges to the silhouette of its surface.

    ``tri_xy`` (B*F,3,2) screen corners, ``facing`` (B*F,) winding sign and ``usable`` (B*F,) (all
    corners in front of the camera) for every face of every image; ``twins`` (F,3) from
    :func:`edge_twins`; per segment ``face_base`` (N,) = image index * F, the triangle ``first_tri``
    (N,) that contains ``start`` and the triangle ``stop_tri`` (N,) seen at ``end`` (-1 for none).

    A walk stops *found* where the segment, before ``end``, leaves through a silhouette edge: open
    (no twin) or with a twin wound the other way as seen (it folds behind: a contour). It stops
    not found when it reaches ``stop_tri`` (the same surface continues to the other pixel), passes
    ``end``, meets an unusable triangle or runs out of ``max_hops``. Returns, for the found
    segments only, their indices, exit triangles (into F) and exit edges. Discrete: run it without
    gradients.
    """
    flat_twins = twins.reshape(-1)
    # The walks still going, compacted after every hop (most end after one or two).
    seg = torch.nonzero(usable[face_base + first_tri]).squeeze(1)
    base, cur = face_base[seg], first_tri[seg]
    s, e, stop = start[seg], end[seg], stop_tri[seg]
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    for _ in range(max_hops):
        if seg.numel() == 0:
            break
        here = base + cur
        t, edge = segment_exit(tri_xy[here], s, e, facing[here])
        twin = flat_twins[cur * 3 + edge]
        across = base + twin.clamp(min=0)
        silhouette = (twin < 0) | (facing[across] != facing[here])
        before_end = t <= 1
        hit = torch.nonzero(silhouette & before_end).squeeze(1)
        found.append((seg[hit], cur[hit], edge[hit]))
        go = torch.nonzero(~silhouette & before_end & (twin != stop) & usable[across]).squeeze(1)
        seg, base, cur, s, e, stop = seg[go], base[go], twin[go], s[go], e[go], stop[go]
    if not found:
        empty = first_tri[:0]
        return empty, empty, empty
    seg_found, exit_tri, exit_edge = (torch.cat(parts) for parts in zip(*found, strict=True))
    return seg_found, exit_tri, exit_edge
