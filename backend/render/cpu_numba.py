"""Fast CPU visibility: a numba-compiled z-buffer rasterizer (the ``cpu`` backend).

Why numba rather than vectorised torch: visibility is a scatter-min with data-dependent loops
(bounding boxes of very different sizes); vectorising it in torch (see ``torch_ref``) materialises
every candidate pixel and is ~10-30x slower (measured in ``bench/render.py``). numba is a
maintained dependency already, and a compiled C++ torch extension would need a compiler at install
time.

The kernel evaluates exactly the homogeneous edge functions of :mod:`backend.render.barycentric` in
float64, with the same tie rule as the reference (nearest float32 depth, then lowest triangle id:
triangles are visited in id order and only a strictly nearer depth replaces a pixel). With
``parallel=True`` the image is split into horizontal bands processed by numba threads, each band
owning its rows (no write races); the default is serial (see the measurement below). When no
gradient is needed the kernel's own barycentrics and depth are returned; otherwise they are
recomputed in torch for autograd.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.barycentric import barycentrics_at_pixels

# Per-triangle setup row: edge coefficients c0..c2 (x, y, w each), det, clip z of the 3 vertices.
_SETUP_WIDTH = 13
# Bounding boxes are widened by this many pixels so rounding never drops a covered pixel centre;
# the reference uses the same rule (see torch_ref.triangle_pixel_bounds).
BOX_EPS = 1e-6


def _setup_py(clip: np.ndarray, faces: np.ndarray, height: int, width: int,
           boxes: np.ndarray, coeffs: np.ndarray) -> None:
    """Per triangle: pixel box (x_lo, x_hi, y_lo, y_hi; empty if x_lo > x_hi) and edge functions."""
    for f in numba.prange(faces.shape[0]):
        i0 = faces[f, 0]
        i1 = faces[f, 1]
        i2 = faces[f, 2]
        x0, y0, z0, w0 = clip[i0, 0], clip[i0, 1], clip[i0, 2], clip[i0, 3]
        x1, y1, z1, w1 = clip[i1, 0], clip[i1, 1], clip[i1, 2], clip[i1, 3]
        x2, y2, z2, w2 = clip[i2, 0], clip[i2, 1], clip[i2, 2], clip[i2, 3]
        boxes[f, 0] = 0
        boxes[f, 1] = -1
        boxes[f, 2] = 0
        boxes[f, 3] = -1
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
            sx0 = (x0 / w0 + 1.0) * (0.5 * width)
            sx1 = (x1 / w1 + 1.0) * (0.5 * width)
            sx2 = (x2 / w2 + 1.0) * (0.5 * width)
            sy0 = (1.0 - y0 / w0) * (0.5 * height)
            sy1 = (1.0 - y1 / w1) * (0.5 * height)
            sy2 = (1.0 - y2 / w2) * (0.5 * height)
            xa = max(int(np.ceil(min(sx0, sx1, sx2) - 0.5 - BOX_EPS)), 0)
            xb = min(int(np.floor(max(sx0, sx1, sx2) - 0.5 + BOX_EPS)), width - 1)
            ya = max(int(np.ceil(min(sy0, sy1, sy2) - 0.5 - BOX_EPS)), 0)
            yb = min(int(np.floor(max(sy0, sy1, sy2) - 0.5 + BOX_EPS)), height - 1)
        else:
            # A vertex behind the camera: no finite screen box; the per-pixel test decides.
            xa, xb, ya, yb = 0, width - 1, 0, height - 1
        if xa > xb or ya > yb:
            continue
        boxes[f, 0] = xa
        boxes[f, 1] = xb
        boxes[f, 2] = ya
        boxes[f, 3] = yb
        # Same expressions, same order as barycentric._cross / homogeneous_barycentrics.
        c0x = y1 * w2 - w1 * y2
        c0y = w1 * x2 - x1 * w2
        c0w = x1 * y2 - y1 * x2
        coeffs[f, 0] = c0x
        coeffs[f, 1] = c0y
        coeffs[f, 2] = c0w
        coeffs[f, 3] = y2 * w0 - w2 * y0
        coeffs[f, 4] = w2 * x0 - x2 * w0
        coeffs[f, 5] = x2 * y0 - y2 * x0
        coeffs[f, 6] = y0 * w1 - w0 * y1
        coeffs[f, 7] = w0 * x1 - x0 * w1
        coeffs[f, 8] = x0 * y1 - y0 * x1
        coeffs[f, 9] = x0 * c0x + y0 * c0y + w0 * c0w
        coeffs[f, 10] = z0
        coeffs[f, 11] = z1
        coeffs[f, 12] = z2


@numba.njit(cache=True, nogil=True)
def _raster_band(boxes: np.ndarray, coeffs: np.ndarray, height: int, width: int, row_lo: int, row_hi: int,
                 tri_out: np.ndarray, zbuf: np.ndarray, bary_out: np.ndarray) -> None:
    inv_w2 = 2.0 / width
    inv_h2 = 2.0 / height
    for f in range(boxes.shape[0]):
        ya = max(boxes[f, 2], row_lo)
        yb = min(boxes[f, 3], row_hi - 1)
        xa = boxes[f, 0]
        xb = boxes[f, 1]
        if xa > xb or ya > yb:
            continue
        c0x, c0y, c0w = coeffs[f, 0], coeffs[f, 1], coeffs[f, 2]
        c1x, c1y, c1w = coeffs[f, 3], coeffs[f, 4], coeffs[f, 5]
        c2x, c2y, c2w = coeffs[f, 6], coeffs[f, 7], coeffs[f, 8]
        det, z0, z1, z2 = coeffs[f, 9], coeffs[f, 10], coeffs[f, 11], coeffs[f, 12]
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
                # lambda_i = e_i / total < 0 exactly when e_i and total have opposite signs: reject
                # before dividing (most box pixels of small triangles are outside).
                if total > 0.0:
                    if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                        continue
                elif e0 > 0.0 or e1 > 0.0 or e2 > 0.0:
                    continue
                w = det / total
                if not w > 0.0:
                    continue
                l0 = e0 / total
                l1 = e1 / total
                l2 = e2 / total
                z = l0 * z0 + l1 * z1 + l2 * z2
                if z < -w or z > w:
                    continue
                d32 = np.float32(w)
                if d32 < zbuf[py, px]:
                    zbuf[py, px] = d32
                    tri_out[py, px] = f
                    bary_out[py, px, 0] = l1
                    bary_out[py, px, 1] = l2


def _raster_image_py(boxes: np.ndarray, coeffs: np.ndarray, height: int, width: int, n_bands: int,
                  tri_out: np.ndarray, zbuf: np.ndarray, bary_out: np.ndarray) -> None:
    band_rows = (height + n_bands - 1) // n_bands
    for band in numba.prange(n_bands):
        row_lo = band * band_rows
        row_hi = min(height, row_lo + band_rows)
        if row_lo < row_hi:
            _raster_band(boxes, coeffs, height, width, row_lo, row_hi, tri_out, zbuf, bary_out)


# Serial and parallel builds of the same kernels. Serial is the default: on the shared 2-core
# machine numba's thread pool (omp or workqueue layer) made rasterisation 5-15x *slower* (2.8 ms
# serial vs 25-55 ms parallel median, bench/render.py), because every parallel region waits for
# threads that the OS has given to other processes or that torch's own pool keeps spinning.
_setup_serial = numba.njit(cache=True, nogil=True)(_setup_py)
_setup_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_setup_py)
_raster_image_serial = numba.njit(cache=True, nogil=True)(_raster_image_py)
_raster_image_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_raster_image_py)


class NumbaRasterizer:
    """The default CPU backend (see module docstring)."""

    name = "cpu"

    def __init__(self, parallel: bool = False, n_bands: int | None = None) -> None:
        # More bands than threads balances load (a body is not uniform over the rows).
        self.parallel = parallel
        self.n_bands = (n_bands if n_bands is not None else 4 * numba.get_num_threads()) if parallel else 1
        self._setup = _setup_parallel if parallel else _setup_serial
        self._raster_image = _raster_image_parallel if parallel else _raster_image_serial

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        clip = np.ascontiguousarray(verts_clip.detach().cpu().numpy(), dtype=np.float64)
        faces_np = np.ascontiguousarray(faces.cpu().numpy(), dtype=np.int64)
        batch = clip.shape[0]
        tri = np.full((batch, height, width), -1, dtype=np.int64)
        zbuf = np.full((batch, height, width), np.inf, dtype=np.float32)
        bary_np = np.zeros((batch, height, width, 2), dtype=np.float32)
        boxes = np.empty((faces_np.shape[0], 4), dtype=np.int64)
        coeffs = np.empty((faces_np.shape[0], _SETUP_WIDTH), dtype=np.float64)
        for b in range(batch):
            self._setup(clip[b], faces_np, height, width, boxes, coeffs)
            self._raster_image(boxes, coeffs, height, width, self.n_bands, tri[b], zbuf[b], bary_np[b])
        device = verts_clip.device
        tri_id = torch.from_numpy(tri).to(device)
        if verts_clip.requires_grad and torch.is_grad_enabled():
            bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        else:
            bary = torch.from_numpy(bary_np).to(device=device, dtype=verts_clip.dtype)
            depth = torch.from_numpy(zbuf).to(device=device, dtype=verts_clip.dtype)
        # The mask is computed in numpy: a torch op over a full image would wake torch's thread
        # pool, which is slow on a busy machine (docs/benchmarks.md, Render).
        return Raster(tri_id=tri_id, bary=bary, depth=depth, mask=torch.from_numpy(tri >= 0).to(device))
