"""Fast CPU visibility: a numba-compiled z-buffer rasterizer (the ``cpu`` backend).

Why numba rather than vectorised torch: visibility is a scatter-min with data-dependent loops
(bounding boxes of very different sizes); vectorising it in torch (see ``torch_ref``) materialises
every candidate pixel and is ~10-30x slower (measured in ``bench/render.py``). numba is a
maintained dependency already, and a compiled C++ torch extension would need a compiler at install
time.

The kernel evaluates exactly the homogeneous edge functions of :mod:`backend.render.barycentric` in
float64, with the same tie rule as the reference (nearest float32 depth, then lowest triangle id:
triangles are visited in id order and only a strictly nearer depth replaces a pixel). Each image
is split into horizontal bands of rows, each band owned by one thread at a time (no write races),
shared between threads by :mod:`backend.render.bands`. When no gradient is needed the kernel's own
barycentrics and depth are returned; otherwise they are recomputed in torch for autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np
import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.bands import band_rows, default_threads, run_bands
from backend.render.barycentric import barycentrics_at_pixels

# Per-triangle setup row: edge coefficients c0..c2 (x, y, w each), det, clip z of the 3 vertices.
_SETUP_WIDTH = 13
# Bounding boxes are widened by this many pixels so rounding never drops a covered pixel centre;
# the reference uses the same rule (see torch_ref.triangle_pixel_bounds).
BOX_EPS = 1e-6


@numba.njit(cache=True, nogil=True)
def _setup(clip: np.ndarray, faces: np.ndarray, height: int, width: int, face_lo: int, face_hi: int,
           boxes: np.ndarray, coeffs: np.ndarray) -> None:
    """Per triangle in [face_lo, face_hi): pixel box (x_lo, x_hi, y_lo, y_hi; empty if x_lo > x_hi)
    and edge functions."""
    for f in range(face_lo, face_hi):
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
                 tri_out: np.ndarray, zbuf: np.ndarray, bary_out: np.ndarray, mask_out: np.ndarray) -> None:
    """Rows [row_lo, row_hi) of one image: clear them, then z-buffer every triangle's box over them.

    The band clears its own rows (rather than the caller filling whole images first) so that the
    clearing is shared between threads and the rows are in cache when the triangles arrive.
    """
    # Slice fills: measured twice as fast as one loop writing all four arrays per pixel.
    tri_out[row_lo:row_hi] = -1
    zbuf[row_lo:row_hi] = np.inf
    bary_out[row_lo:row_hi] = 0.0
    mask_out[row_lo:row_hi] = False
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
                d32 = np.float32(w)
                # Depth test before the barycentrics: about half the covered box pixels are hidden.
                if not (w > 0.0 and d32 < zbuf[py, px]):
                    continue
                l0 = e0 / total
                l1 = e1 / total
                l2 = e2 / total
                z = l0 * z0 + l1 * z1 + l2 * z2
                if z < -w or z > w:
                    continue
                zbuf[py, px] = d32
                tri_out[py, px] = f
                bary_out[py, px, 0] = l1
                bary_out[py, px, 1] = l2
                mask_out[py, px] = True


# Called by a band's thread once its rows are final: (image, row_lo, row_hi, tri_id, barycentrics),
# the arrays being the whole (B,H,W) and (B,H,W,2) outputs. Lets the fused CPU passes shade rows
# while they are still in cache, in the same dispatch as the rasterisation.
AfterBand = Callable[[int, int, int, np.ndarray, np.ndarray], None]


class NumbaRasterizer:
    """The default CPU backend (see module docstring).

    ``threads``: threads sharing the work (default :func:`backend.render.bands.default_threads`);
    ``bands_per_thread``: row bands per thread and image (more bands balance a body that is not
    uniform over the rows, at the cost of one more pass over the triangle boxes per band).
    """

    name = "cpu"

    def __init__(self, threads: int | None = None, bands_per_thread: int = 3) -> None:
        self.threads = threads
        self.bands_per_thread = max(1, bands_per_thread)

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int], *,
                  after_band: AfterBand | None = None, prologue: Sequence[Callable[[], None]] = (),
                  threads: int | None = None) -> Raster:
        """The :class:`~backend.render.api.Rasterizer` call, plus numba-backend extras:
        ``prologue`` jobs run beside the triangle setup (before any band), ``after_band`` runs on
        each band's rows right after they are rasterised, ``threads`` overrides the instance's."""
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        clip = np.ascontiguousarray(verts_clip.detach().cpu().numpy(), dtype=np.float64)
        faces_np = np.ascontiguousarray(faces.cpu().numpy(), dtype=np.int64)
        batch, n_faces = clip.shape[0], faces_np.shape[0]
        threads = threads or self.threads or default_threads()
        # Outputs are left uninitialised: each band clears its own rows.
        tri = np.empty((batch, height, width), dtype=np.int64)
        zbuf = np.empty((batch, height, width), dtype=np.float32)
        bary_np = np.empty((batch, height, width, 2), dtype=np.float32)
        mask = np.empty((batch, height, width), dtype=np.bool_)
        boxes = np.empty((batch, n_faces, 4), dtype=np.int64)
        coeffs = np.empty((batch, n_faces, _SETUP_WIDTH), dtype=np.float64)

        chunks = threads if threads > 1 else 1

        def setup_job(b: int, chunk: int) -> Callable[[], None]:
            lo, hi = band_rows(n_faces, chunks, chunk)
            return lambda: _setup(clip[b], faces_np, height, width, lo, hi, boxes[b], coeffs[b])

        n_bands = min(height, self.bands_per_thread * threads) if threads > 1 else 1

        def raster(job: int) -> None:
            b, band = divmod(job, n_bands)
            lo, hi = band_rows(height, n_bands, band)
            _raster_band(boxes[b], coeffs[b], height, width, lo, hi, tri[b], zbuf[b], bary_np[b], mask[b])
            if after_band is not None:
                after_band(b, lo, hi, tri, bary_np)

        jobs = [setup_job(b, chunk) for b in range(batch) for chunk in range(chunks)] + list(prologue)
        run_bands(raster, batch * n_bands, threads, prologue=jobs)
        device = verts_clip.device
        tri_id = torch.from_numpy(tri).to(device)
        if verts_clip.requires_grad and torch.is_grad_enabled():
            bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        else:
            bary = torch.from_numpy(bary_np).to(device=device, dtype=verts_clip.dtype)
            depth = torch.from_numpy(zbuf).to(device=device, dtype=verts_clip.dtype)
        return Raster(tri_id=tri_id, bary=bary, depth=depth, mask=torch.from_numpy(mask).to(device))
