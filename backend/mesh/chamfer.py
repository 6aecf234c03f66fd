"""Surface Chamfer distance in numpy alone (no scipy, no torch), so Blender's Python can measure too.

The bench (``backend.avatar.eval.metrics.geometry_scores``) scores an avatar by the mean symmetric
Chamfer distance between area-uniform surface samples of the two meshes, each sample matched to
the nearest *sample* of the other surface, with scipy's KD-tree. Blender's environment has numpy
but no scipy, and a test there must measure the same number, so this module repeats the
definition (same sampler, same seeds, same oversampling when a keep-filter drops ground-truth
samples) with an exact nearest-neighbour search on a uniform grid written in numpy.

Nearest neighbours: a query's 27 neighbouring grid cells hold every point within one cell size of
it, so a best candidate at distance <= cell is the global nearest; queries whose best candidate is
farther (or that have none) are searched again on a coarser grid, whose cell is sized from those
candidates' distances (each is an upper bound of its query's nearest distance), and so on: exact,
while most queries only ever look at a few hundred points.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from backend.mesh import sampling

_OFFSETS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64)
_MAX_PAIRS = 2_000_000  # candidate (query, point) pairs held at once (~100 MB of float64 work arrays)


def nearest_distances(query: np.ndarray, points: np.ndarray, cell: float | None = None) -> np.ndarray:
    """(Q,) Euclidean distance from each query to its nearest point (exact, like a KD-tree's query)."""
    q = np.asarray(query, dtype=np.float64).reshape(-1, 3)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) == 0:
        raise ValueError("nearest_distances: no points to search")
    out = np.full(len(q), np.inf)
    lo, hi = p.min(axis=0), p.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    if cell is None:
        # About two sample spacings of a surface spread over the box (its area is of the order of
        # the box's): a few dozen points per cell, so the 27 cells hold a few hundred candidates.
        area = 2.0 * (extent[0] * extent[1] + extent[1] * extent[2] + extent[0] * extent[2])
        cell = 2.0 * float(np.sqrt(area / len(p)))
    cell = max(float(cell), 1e-9)
    todo = np.arange(len(q))
    while todo.size:
        if cell > 2.0 * float(np.linalg.norm(extent)) + float(np.abs(q[todo] - lo).max()):
            out[todo] = _brute(q[todo], p)  # one cell covers everything: nothing left to prune
            break
        best = _grid_pass(q[todo], p, lo, cell)
        exact = best <= cell
        out[todo[exact]] = best[exact]
        todo, best = todo[~exact], best[~exact]
        # A candidate's distance bounds its query's nearest: a grid of that cell size finds it.
        # Sized to resolve 90 % of what is left (a cell just large enough keeps candidates few).
        bound = best[np.isfinite(best)]
        cell = max(1.5 * cell, float(np.quantile(bound, 0.9)) * 1.001) if len(bound) else 3.0 * cell
    return out


def _brute(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    rows = max(1, _MAX_PAIRS // len(p))
    return np.concatenate([
        np.sqrt(((q[i:i + rows, None] - p[None]) ** 2).sum(-1).min(axis=1)) for i in range(0, len(q), rows)
    ]) if len(q) else np.empty(0)


def _grid_pass(q: np.ndarray, p: np.ndarray, lo: np.ndarray, cell: float) -> np.ndarray:
    """Best distance among the points in each query's 27 neighbouring cells (inf where none)."""
    # Point cells start at 1 so every neighbour index of a clipped query cell is >= 0.
    pc = np.floor((p - lo) / cell).astype(np.int64) + 1
    dims = pc.max(axis=0) + 2
    key = (pc[:, 0] * dims[1] + pc[:, 1]) * dims[2] + pc[:, 2]
    order = np.argsort(key, kind="stable")
    sp, skey = p[order], key[order]
    cells, first, count = np.unique(skey, return_index=True, return_counts=True)
    # A query outside the grid is clipped to its border: its true neighbours (within one cell) are
    # still among the candidates, and any candidate found is measured exactly.
    qc = np.clip(np.floor((q - lo) / cell).astype(np.int64) + 1, 0, dims - 1)
    nb = qc[:, None, :] + _OFFSETS[None]  # (Q,27,3)
    nkey = (nb[..., 0] * dims[1] + nb[..., 1]) * dims[2] + nb[..., 2]
    slot = np.minimum(np.searchsorted(cells, nkey), len(cells) - 1)
    hit = cells[slot] == nkey
    starts = np.where(hit, first[slot], 0)
    counts = np.where(hit, count[slot], 0)
    per_query = counts.sum(axis=1)
    best = np.full(len(q), np.inf)
    cum = np.cumsum(per_query)
    begin = 0
    while begin < len(q):  # chunks of at most _MAX_PAIRS candidate pairs (at least one query)
        base = int(cum[begin - 1]) if begin else 0
        end = max(int(np.searchsorted(cum, base + _MAX_PAIRS, side="right")), begin + 1)
        best[begin:end] = _best_in_chunk(q[begin:end], sp, starts[begin:end], counts[begin:end])
        begin = end
    return best


def _best_in_chunk(q: np.ndarray, sp: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = counts.ravel()
    total = int(c.sum())
    out = np.full(len(q), np.inf)
    if total == 0:
        return out
    # Candidate pairs, query-major: each run of counts[j, k] consecutive points from starts[j, k].
    run_start = np.cumsum(c) - c
    point = np.repeat(starts.ravel() - run_start, c) + np.arange(total)
    per_query = counts.sum(axis=1)
    query = np.repeat(np.arange(len(q)), per_query)
    d2 = ((sp[point] - q[query]) ** 2).sum(axis=1)
    has = per_query > 0
    offsets = (np.cumsum(per_query) - per_query)[has]
    out[has] = np.sqrt(np.minimum.reduceat(d2, offsets))
    return out


@dataclass
class SurfaceChamfer:
    chamfer: float  # metres: mean of the two directed means, as the bench's GeometryScores.chamfer
    pred_to_gt: np.ndarray  # (Np,) distance of each kept predicted sample to the nearest GT sample
    gt_to_pred: np.ndarray  # (Ng,) distance of each kept GT sample to the nearest predicted sample
    pred_points: np.ndarray  # (Np,3) the kept predicted samples (for per-region breakdowns)
    gt_points: np.ndarray  # (Ng,3) the kept GT samples
    # The bench's number (every predicted sample kept) and how many predicted samples that is; equal
    # to ``chamfer`` without a ``prediction_keep``.
    chamfer_all_pred: float = float("nan")
    pred_samples: int = 0


def surface_chamfer(
    pred_v: np.ndarray,
    pred_f: np.ndarray,
    gt_v: np.ndarray,
    gt_f: np.ndarray,
    samples: int = 100_000,
    ground_truth_keep: Callable[[np.ndarray], np.ndarray] | None = None,
    prediction_keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SurfaceChamfer:
    """The bench's Chamfer (``geometry_scores``: same samples, same seeds) with numpy only.

    ``ground_truth_keep`` drops GT samples no camera could see (the bench's hidden-surface rule);
    ``prediction_keep`` does the same on the predicted side where a caller knows that region; the
    bench keeps every predicted sample, and ``chamfer_all_pred`` is that number (both distances
    come from one search: the kept samples' are a subset).
    """
    rng = np.random.default_rng
    p, _ = sampling.sample_surface(pred_v, pred_f, samples, rng(1))
    g, _ = sampling.sample_surface(gt_v, gt_f, samples * 2 if ground_truth_keep else samples, rng(2))
    if ground_truth_keep is not None:
        g = g[np.asarray(ground_truth_keep(g), bool)][:samples]
    d_pg_all = nearest_distances(p, g)
    keep = np.ones(len(p), bool) if prediction_keep is None else np.asarray(prediction_keep(p), bool)
    d_gp = nearest_distances(g, p[keep])
    # Every predicted sample (the bench's number): the dropped ones may be nearer to some GT samples.
    d_gp_all = d_gp if keep.all() else np.minimum(d_gp, nearest_distances(g, p[~keep]))
    d_pg = d_pg_all[keep]
    return SurfaceChamfer(float((d_pg.mean() + d_gp.mean()) / 2), d_pg, d_gp, p[keep], g,
                          float((d_pg_all.mean() + d_gp_all.mean()) / 2), len(keep))


Camera = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]  # OpenCV K, R, t, width, height


class RigVisibility:
    """Which points the cameras of a rig see past an occluding surface (a z-buffer per camera).

    ``occluders`` are dense samples of the occluding surface (a pixel's depth is its nearest
    sample: ~10 samples per pixel leave no holes); ``cameras`` are OpenCV ``(K, R, t, width,
    height)`` in the points' frame, rasterised ``scale`` x finer than the views so a pixel's depth
    spread on a slanted surface stays small. The buffers are built once; :meth:`seen` is cheap.
    """

    def __init__(self, occluders: np.ndarray, cameras: list[Camera], scale: float = 2.0) -> None:
        occ = np.asarray(occluders, np.float64)
        self.views = []
        for K, R, t, width, height in cameras:
            w, h = round(width * scale), round(height * scale)
            k = np.asarray(K, np.float64) * np.array([[scale], [scale], [1.0]])
            view = (k, np.asarray(R, np.float64), np.asarray(t, np.float64), w, h)
            pix, z = self._pixels(occ, *view)
            ok = pix >= 0
            pix, z = pix[ok], z[ok]
            order = np.lexsort((z, pix))  # by pixel, nearest first: each pixel's first entry is its depth
            first = np.unique(pix[order], return_index=True)[1]
            zbuf = np.full(w * h, np.inf)
            zbuf[pix[order][first]] = z[order][first]
            self.views.append((view, zbuf))

    @staticmethod
    def _pixels(x: np.ndarray, k: np.ndarray, R: np.ndarray, t: np.ndarray, w: int,
                h: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat pixel index (-1 outside the image or behind the camera) and depth of each point."""
        cam = x @ R.T + t
        z = cam[:, 2]
        uv = cam @ k.T
        u = np.floor(uv[:, 0] / np.maximum(z, 1e-9)).astype(np.int64)
        v = np.floor(uv[:, 1] / np.maximum(z, 1e-9)).astype(np.int64)
        inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        return np.where(inside, v * w + u, -1), z

    def seen(self, points: np.ndarray, behind: float) -> np.ndarray:
        """(N,) True where some camera sees the point: nothing of the occluding surface lies more
        than ``behind`` (metres of depth) in front of it in its pixel. Points outside a camera's
        image are not seen by it."""
        pts = np.asarray(points, np.float64)
        out = np.zeros(len(pts), bool)
        for view, zbuf in self.views:
            pix, z = self._pixels(pts, *view)
            ok = pix >= 0
            out[ok] |= z[ok] <= zbuf[pix[ok]] + behind
        return out


def seen_from_cameras(
    points: np.ndarray, occluders: np.ndarray, cameras: list[Camera], behind: float, scale: float = 2.0
) -> np.ndarray:
    """:meth:`RigVisibility.seen` in one call (the buffers are built for this call only)."""
    return RigVisibility(occluders, cameras, scale).seen(points, behind)
