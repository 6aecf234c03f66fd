"""Fast CPU visibility: a numba-compiled z-buffer rasterizer (the ``cpu`` backend).

Why numba rather than vectorised torch: visibility is a scatter-min with data-dependent loops
(bounding boxes of very different sizes); vectorising it in torch (see ``torch_ref``) materialises
every candidate pixel and is ~10-30x slower (measured in ``bench/render.py``). numba is a
maintained dependency already, and a compiled C++ torch extension would need a compiler at install
time.

The kernel evaluates exactly the homogeneous edge functions of :mod:`backend.render.barycentric` in
float64, with the same tie rule as the reference (nearest float32 depth, then lowest triangle id:
triangles are visited in id order and only a strictly nearer depth replaces a pixel). The image is
split into horizontal bands processed in parallel threads; each band owns its rows, so there are
no write races. When no gradient is needed the kernel's own barycentrics and depth are returned;
otherwise they are recomputed in torch for autograd.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.barycentric import barycentrics_at_pixels


@numba.njit(cache=True, nogil=True, fastmath=False)
def _raster_band(clip: np.ndarray, faces: np.ndarray, height: int, width: int, row_lo: int, row_hi: int,
                 tri_out: np.ndarray, zbuf: np.ndarray, b1_out: np.ndarray, b2_out: np.ndarray) -> None:
    sx_scale = 0.5 * width
    sy_scale = 0.5 * height
    inv_w2 = 2.0 / width
    inv_h2 = 2.0 / height
    for f in range(faces.shape[0]):
        i0 = faces[f, 0]
        i1 = faces[f, 1]
        i2 = faces[f, 2]
        x0 = clip[i0, 0]
        y0 = clip[i0, 1]
        z0 = clip[i0, 2]
        w0 = clip[i0, 3]
        x1 = clip[i1, 0]
        y1 = clip[i1, 1]
        z1 = clip[i1, 2]
        w1 = clip[i1, 3]
        x2 = clip[i2, 0]
        y2 = clip[i2, 1]
        z2 = clip[i2, 2]
        w2 = clip[i2, 3]
        # Trivial rejection against each clip plane (all three vertices outside the same plane).
        if (x0 > w0 and x1 > w1 and x2 > w2) or (x0 < -w0 and x1 < -w1 and x2 < -w2):
            continue
        if (y0 > w0 and y1 > w1 and y2 > w2) or (y0 < -w0 and y1 < -w1 and y2 < -w2):
            continue
        if (z0 > w0 and z1 > w1 and z2 > w2) or (z0 < -w0 and z1 < -w1 and z2 < -w2):
            continue
        if w0 <= 0.0 and w1 <= 0.0 and w2 <= 0.0:
            continue
        if w0 > 0.0 and w1 > 0.0 and w2 > 0.0:
            sx0 = (x0 / w0 + 1.0) * sx_scale
            sx1 = (x1 / w1 + 1.0) * sx_scale
            sx2 = (x2 / w2 + 1.0) * sx_scale
            sy0 = (1.0 - y0 / w0) * sy_scale
            sy1 = (1.0 - y1 / w1) * sy_scale
            sy2 = (1.0 - y2 / w2) * sy_scale
            xa = int(np.floor(min(sx0, sx1, sx2) - 0.5)) - 1
            xb = int(np.ceil(max(sx0, sx1, sx2) - 0.5)) + 1
            ya = int(np.floor(min(sy0, sy1, sy2) - 0.5)) - 1
            yb = int(np.ceil(max(sy0, sy1, sy2) - 0.5)) + 1
        else:
            xa = 0
            xb = width - 1
            ya = 0
            yb = height - 1
        xa = max(xa, 0)
        xb = min(xb, width - 1)
        ya = max(ya, row_lo)
        yb = min(yb, row_hi - 1)
        if xa > xb or ya > yb:
            continue
        # Edge function coefficients: c_k = V_i x V_j on (x, y, w), same order as barycentric._cross.
        c0x = y1 * w2 - w1 * y2
        c0y = w1 * x2 - x1 * w2
        c0w = x1 * y2 - y1 * x2
        c1x = y2 * w0 - w2 * y0
        c1y = w2 * x0 - x2 * w0
        c1w = x2 * y0 - y2 * x0
        c2x = y0 * w1 - w0 * y1
        c2y = w0 * x1 - x0 * w1
        c2w = x0 * y1 - y0 * x1
        det = x0 * c0x + y0 * c0y + w0 * c0w
        for py in range(ya, yb + 1):
            v = 1.0 - (py + 0.5) * inv_h2
            for px in range(xa, xb + 1):
                u = (px + 0.5) * inv_w2 - 1.0
                e0 = c0x * u + c0y * v + c0w
                e1 = c1x * u + c1y * v + c1w
                e2 = c2x * u + c2y * v + c2w
                total = e0 + e1 + e2
                if total == 0.0:
                    continue
                l0 = e0 / total
                l1 = e1 / total
                l2 = e2 / total
                if l0 < 0.0 or l1 < 0.0 or l2 < 0.0:
                    continue
                w = det / total
                if not w > 0.0:
                    continue
                z = l0 * z0 + l1 * z1 + l2 * z2
                if z < -w or z > w:
                    continue
                d32 = np.float32(w)
                if d32 < zbuf[py, px]:
                    zbuf[py, px] = d32
                    tri_out[py, px] = f
                    b1_out[py, px] = l1
                    b2_out[py, px] = l2


@numba.njit(cache=True, parallel=True)
def _raster_batch(clip: np.ndarray, faces: np.ndarray, height: int, width: int, n_bands: int,
                  tri_out: np.ndarray, zbuf: np.ndarray, b1_out: np.ndarray, b2_out: np.ndarray) -> None:
    batch = clip.shape[0]
    band_rows = (height + n_bands - 1) // n_bands
    for job in numba.prange(batch * n_bands):
        b = job // n_bands
        band = job % n_bands
        row_lo = band * band_rows
        row_hi = min(height, row_lo + band_rows)
        if row_lo < row_hi:
            _raster_band(clip[b], faces, height, width, row_lo, row_hi,
                         tri_out[b], zbuf[b], b1_out[b], b2_out[b])


class NumbaRasterizer:
    """The default CPU backend (see module docstring)."""

    name = "cpu"

    def __init__(self, n_bands: int | None = None) -> None:
        # More bands than threads balances load (a body is not uniform over the rows).
        self.n_bands = n_bands if n_bands is not None else 4 * numba.get_num_threads()

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        clip = np.ascontiguousarray(verts_clip.detach().cpu().numpy(), dtype=np.float64)
        faces_np = np.ascontiguousarray(faces.cpu().numpy(), dtype=np.int64)
        batch = clip.shape[0]
        tri = np.full((batch, height, width), -1, dtype=np.int64)
        zbuf = np.full((batch, height, width), np.inf, dtype=np.float32)
        b1 = np.zeros((batch, height, width), dtype=np.float32)
        b2 = np.zeros((batch, height, width), dtype=np.float32)
        _raster_batch(clip, faces_np, height, width, self.n_bands, tri, zbuf, b1, b2)
        device = verts_clip.device
        tri_id = torch.from_numpy(tri).to(device)
        if verts_clip.requires_grad and torch.is_grad_enabled():
            bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        else:
            bary = torch.from_numpy(np.stack((b1, b2), axis=-1)).to(device=device, dtype=verts_clip.dtype)
            depth = torch.from_numpy(zbuf).to(device=device, dtype=verts_clip.dtype)
        return Raster(tri_id=tri_id, bary=bary, depth=depth)
