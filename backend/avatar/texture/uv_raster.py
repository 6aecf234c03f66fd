"""A small numba rasterizer for 2D triangles in UV space (texture atlases).

Used where the geometry is the UV layout itself: the overlap test of charts, the coverage mask of
the atlas (which texels belong to a face) and the atlas checks in tests. Orthographic, texel
centres at (i + 0.5) / resolution, v = 0 at the *bottom* row (texture convention; row 0 = top).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _texel_frame(
    uv: np.ndarray, f: int, res: int
) -> tuple[np.ndarray, np.ndarray, float, int, int, int, int]:
    """Face ``f`` in texel coordinates (row 0 = top): corners, signed doubled area, texel bounds."""
    x = np.empty(3)
    y = np.empty(3)
    for k in range(3):
        x[k] = uv[f, k, 0] * res
        y[k] = (1.0 - uv[f, k, 1]) * res
    area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    xmin = max(int(np.floor(x.min())), 0)
    xmax = min(int(np.ceil(x.max())), res - 1)
    ymin = max(int(np.floor(y.min())), 0)
    ymax = min(int(np.ceil(y.max())), res - 1)
    return x, y, area, xmin, xmax, ymin, ymax


@numba.njit(cache=True)
def _barycentric(
    x: np.ndarray, y: np.ndarray, area: float, cx: float, cy: float
) -> tuple[float, float, float]:
    w0 = ((x[1] - cx) * (y[2] - cy) - (x[2] - cx) * (y[1] - cy)) / area
    w1 = ((x[2] - cx) * (y[0] - cy) - (x[0] - cx) * (y[2] - cy)) / area
    return w0, w1, 1.0 - w0 - w1


@numba.njit(cache=True)
def _raster(
    uv: np.ndarray,
    depth: np.ndarray,
    res: int,
    strict: bool,
    tri_id: np.ndarray,
    zbuf: np.ndarray,
    count: np.ndarray,
) -> None:
    eps = 1e-9 if strict else -1e-9
    for f in range(uv.shape[0]):
        x, y, area, xmin, xmax, ymin, ymax = _texel_frame(uv, f, res)
        if abs(area) < 1e-12:
            continue
        for py in range(ymin, ymax + 1):
            for px in range(xmin, xmax + 1):
                w0, w1, w2 = _barycentric(x, y, area, px + 0.5, py + 0.5)
                if w0 <= eps or w1 <= eps or w2 <= eps:
                    continue
                count[py, px] += 1
                z = w0 * depth[f, 0] + w1 * depth[f, 1] + w2 * depth[f, 2]
                if z < zbuf[py, px]:
                    zbuf[py, px] = z
                    tri_id[py, px] = f


def _run(
    uv: np.ndarray, resolution: int, depth: np.ndarray | None, strict: bool
) -> tuple[np.ndarray, np.ndarray]:
    uv = np.ascontiguousarray(uv, dtype=np.float64)
    d = np.zeros(uv.shape[:2]) if depth is None else np.ascontiguousarray(depth, dtype=np.float64)
    tri_id = np.full((resolution, resolution), -1, dtype=np.int64)
    zbuf = np.full((resolution, resolution), np.inf)
    count = np.zeros((resolution, resolution), dtype=np.int64)
    _raster(uv, d, resolution, strict, tri_id, zbuf, count)
    return tri_id, count


def rasterize_uv(uv: np.ndarray, resolution: int, depth: np.ndarray | None = None) -> np.ndarray:
    """uv (F,3,2) in [0,1] -> (res,res) int64 face id per texel (-1 empty); smallest depth wins."""
    return _run(uv, resolution, depth, strict=False)[0]


def coverage_count(uv: np.ndarray, resolution: int) -> np.ndarray:
    """(res,res) number of faces strictly covering each texel centre (> 1 means overlapping UVs).

    Strict inside test, so texels exactly on an edge shared by two faces are not double counted.
    """
    return _run(uv, resolution, None, strict=True)[1]


@numba.njit(cache=True)
def _losers(uv: np.ndarray, res: int, tri_id: np.ndarray, count: np.ndarray, out: np.ndarray) -> None:
    for f in range(uv.shape[0]):
        x, y, area, xmin, xmax, ymin, ymax = _texel_frame(uv, f, res)
        if abs(area) < 1e-12:
            continue
        for py in range(ymin, ymax + 1):
            for px in range(xmin, xmax + 1):
                w0, w1, w2 = _barycentric(x, y, area, px + 0.5, py + 0.5)
                if w0 > 1e-9 and w1 > 1e-9 and w2 > 1e-9 and count[py, px] > 1 and tri_id[py, px] != f:
                    out[f] = True


def overlap_losers(uv: np.ndarray, depth: np.ndarray, resolution: int) -> np.ndarray:
    """Faces (bool) that strictly cover a texel another face also covers and lose its depth test there."""
    uv = np.ascontiguousarray(uv, dtype=np.float64)
    tri_id, count = _run(uv, resolution, depth, strict=True)
    out = np.zeros(len(uv), dtype=np.bool_)
    _losers(uv, resolution, tri_id, count, out)
    return out
