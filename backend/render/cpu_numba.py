"""Fast CPU visibility: a numba-compiled z-buffer rasterizer (the ``cpu`` backend).

Why numba rather than vectorised torch: visibility is a scatter-min with data-dependent loops
(bounding boxes of very different sizes); vectorising it in torch (see ``torch_ref``) materialises
every candidate pixel and is ~10-30x slower (measured in ``bench/render.py``). numba is a
maintained dependency already, and a compiled C++ torch extension would need a compiler at install
time.

The kernel evaluates exactly the homogeneous edge functions of :mod:`backend.render.barycentric` in
float64, with the same tie rule as the reference (nearest float32 depth, then lowest triangle id:
triangles are visited in id order and only a strictly nearer depth replaces a pixel). With more
than one thread (:mod:`backend.render.bands`), the triangle setup runs in chunks that also bin
the triangles by 16-row bins, then each image is split into one band of whole bins per thread,
the bands holding about the same estimated work (box pixels); a band owns its rows (no write
races). When no gradient is needed the kernel's own barycentrics and depth are returned;
otherwise they are recomputed in torch for autograd.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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
def raster_band(boxes: np.ndarray, coeffs: np.ndarray, bin_offsets: np.ndarray, bin_ids: np.ndarray,
                bin_lo: int, bin_hi: int, bin_height: int, height: int, width: int, tri_out: np.ndarray,
                zbuf: np.ndarray, bary_out: np.ndarray, mask_out: np.ndarray) -> None:
    """The rows of bins [bin_lo, bin_hi) of one image: clear them, then z-buffer over each bin's
    rows the boxes of the triangles binned to it (:func:`setup_chunk`; chunk by chunk, so in
    ascending id order, as the tie rule needs).

    The band clears its own rows (rather than the caller filling whole images first) so that the
    clearing is shared between threads and the rows are in cache when the triangles arrive.
    """
    row_lo, row_hi = bin_lo * bin_height, min(height, bin_hi * bin_height)
    # Slice fills: measured twice as fast as one loop writing all four arrays per pixel.
    tri_out[row_lo:row_hi] = -1
    zbuf[row_lo:row_hi] = np.inf
    bary_out[row_lo:row_hi] = 0.0
    mask_out[row_lo:row_hi] = False
    inv_w2 = 2.0 / width
    inv_h2 = 2.0 / height
    # The per-triangle body is written out here, not called: a call per triangle (17k of them,
    # most covering a few pixels) measured 30 % slower.
    for k in range(bin_lo, bin_hi):
        k_lo, k_hi = k * bin_height, min(height, (k + 1) * bin_height)
        for chunk in range(bin_offsets.shape[0]):
            for slot in range(bin_offsets[chunk, k], bin_offsets[chunk, k + 1]):
                f = bin_ids[chunk, slot]
                ya = max(boxes[f, 2], k_lo)
                yb = min(boxes[f, 3], k_hi - 1)
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
                        # lambda_i = e_i / total < 0 exactly when e_i and total have opposite
                        # signs: reject before dividing (most box pixels are outside).
                        if total > 0.0:
                            if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                                continue
                        elif e0 > 0.0 or e1 > 0.0 or e2 > 0.0:
                            continue
                        w = det / total
                        d32 = np.float32(w)
                        # Depth test before the barycentrics: about half the covered box
                        # pixels are hidden.
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


@numba.njit(cache=True, nogil=True)
def setup_chunk(clip: np.ndarray, faces: np.ndarray, height: int, width: int, face_lo: int, face_hi: int,
                bin_height: int, boxes: np.ndarray, coeffs: np.ndarray, bin_offsets: np.ndarray,
                bin_ids: np.ndarray, bin_cost: np.ndarray) -> None:
    """:func:`_setup` for triangles [face_lo, face_hi), then bin them by ``bin_height`` rows:
    bin k's triangles are ``bin_ids[bin_offsets[k]:bin_offsets[k + 1]]``, ascending, and
    ``bin_cost[k]`` is their box pixels inside the bin (the work estimate that balances bands).

    Binning spares every band a scan of every triangle's box (~27 us for the 20k-face body, per
    band). One call per chunk because each call from Python takes the GIL, and on a 2-core VM a
    GIL hand-over between threads costs tens of microseconds.
    """
    _setup(clip, faces, height, width, face_lo, face_hi, boxes, coeffs)
    n_bins = bin_offsets.shape[0] - 1
    # First bin and bin count of each triangle (0 = empty box): one integer division per box
    # edge, and none with a single bin.
    first = np.empty(face_hi - face_lo, dtype=np.int64)
    count = np.empty(face_hi - face_lo, dtype=np.int64)
    bin_offsets[:] = 0
    bin_cost[:] = 0
    for f in range(face_lo, face_hi):
        i = f - face_lo
        if boxes[f, 0] > boxes[f, 1] or boxes[f, 2] > boxes[f, 3]:
            first[i] = 0
            count[i] = 0
            continue
        k_lo, k_hi = 0, 0
        if n_bins > 1:
            k_lo = boxes[f, 2] // bin_height
            k_hi = min(boxes[f, 3] // bin_height, n_bins - 1)
        first[i] = k_lo
        count[i] = k_hi - k_lo + 1
        box_width = boxes[f, 1] - boxes[f, 0] + 1
        for k in range(k_lo, k_hi + 1):
            bin_offsets[k + 1] += 1
            rows = min(boxes[f, 3], (k + 1) * bin_height - 1) - max(boxes[f, 2], k * bin_height) + 1
            bin_cost[k] += rows * box_width
    for k in range(n_bins):
        bin_offsets[k + 1] += bin_offsets[k]
    fill = bin_offsets[:-1].copy()
    for f in range(face_lo, face_hi):
        i = f - face_lo
        for k in range(first[i], first[i] + count[i]):
            bin_ids[fill[k]] = f
            fill[k] += 1


# Rows per bin when the image is shared between threads. Bands are runs of whole bins chosen after
# the setup so that each holds about the same work; finer bins balance better and cost a few
# microseconds each.
BIN_HEIGHT = 16
# Work estimate of an image pixel (background fills, the row loops) against a box pixel of a
# triangle; measured ~0.7 ms of fills against ~4 ms of raster + shade for 122k box pixels.
PIXEL_COST = 0.08


@numba.njit(cache=True, nogil=True)
def _balanced_edges(bin_cost: np.ndarray, bin_height: int, height: int, row_cost: float,
                    edges: np.ndarray) -> None:
    """Split each image's bins into ``edges.shape[1] - 1`` runs of about equal estimated work:
    the chunks' box pixels per bin plus ``row_cost`` per image row."""
    batch, chunks, n_bins = bin_cost.shape
    bands = edges.shape[1] - 1
    cost = np.empty(n_bins)
    for b in range(batch):
        total = 0.0
        for k in range(n_bins):
            rows = min(bin_height, height - k * bin_height)
            cost[k] = row_cost * rows
            for c in range(chunks):
                cost[k] += bin_cost[b, c, k]
            total += cost[k]
        edges[b, 0] = 0
        band, running = 1, 0.0
        for k in range(n_bins):
            running += cost[k]
            # Close the band once the running work reaches its share.
            if band < bands and running >= total * band / bands and k + 1 < n_bins:
                edges[b, band] = k + 1
                band += 1
        while band <= bands:  # bands left over (fewer bins than bands) are empty
            edges[b, band] = n_bins if band == bands else max(edges[b, band - 1], n_bins - (bands - band))
            band += 1


class RasterPlan:
    """One rasterisation cut into jobs for :func:`backend.render.bands.run_bands`: per image,
    ``chunks`` setup jobs (boxes, edge functions, bins), then ``bands`` band jobs, each a run of
    whole bins holding about the same estimated work (decided once the setup has run).

    The outputs are numpy arrays owned by the plan (``tri``, ``zbuf``, ``bary``, ``mask``); a band
    job clears and fills its rows. The fused CPU passes (``cpu_passes``) run their own band job,
    which rasterises and shades the band in one numba call.
    """

    def __init__(self, clip: np.ndarray, faces: np.ndarray, height: int, width: int, threads: int,
                 bands_per_thread: int) -> None:
        self.clip, self.faces, self.height, self.width = clip, faces, height, width
        self.batch, n_faces = clip.shape[0], faces.shape[0]
        self.threads = threads
        # One more setup chunk than threads: the vertex normals job (fused passes) then fits beside
        # the last chunk instead of after it.
        self.chunks = threads + 1 if threads > 1 else 1
        self.bin_height = min(BIN_HEIGHT, height) if threads > 1 else height
        self.n_bins = -(-height // self.bin_height)
        self.bands = min(self.n_bins, bands_per_thread * threads) if threads > 1 else 1
        # Outputs are left uninitialised: each band clears its own rows.
        self.tri = np.empty((self.batch, height, width), dtype=np.int64)
        self.zbuf = np.empty((self.batch, height, width), dtype=np.float32)
        self.bary = np.empty((self.batch, height, width, 2), dtype=np.float32)
        self.mask = np.empty((self.batch, height, width), dtype=np.bool_)
        self.boxes = np.empty((self.batch, n_faces, 4), dtype=np.int64)
        self.coeffs = np.empty((self.batch, n_faces, _SETUP_WIDTH), dtype=np.float64)
        # A triangle lands in every bin its box meets: a chunk needs at most size x bins slots.
        chunk_size = -(-n_faces // self.chunks)
        self.bin_offsets = np.empty((self.batch, self.chunks, self.n_bins + 1), dtype=np.int64)
        self.bin_ids = np.empty((self.batch, self.chunks, max(1, chunk_size * self.n_bins)), dtype=np.int64)
        self.bin_cost = np.empty((self.batch, self.chunks, self.n_bins), dtype=np.int64)
        self._edges: np.ndarray | None = None
        self._edges_lock = threading.Lock()

    def setup_jobs(self) -> list[Callable[[], None]]:
        def job(b: int, chunk: int) -> Callable[[], None]:
            lo, hi = band_rows(self.faces.shape[0], self.chunks, chunk)
            return lambda: setup_chunk(self.clip[b], self.faces, self.height, self.width, lo, hi,
                                       self.bin_height, self.boxes[b], self.coeffs[b],
                                       self.bin_offsets[b, chunk], self.bin_ids[b, chunk],
                                       self.bin_cost[b, chunk])
        return [job(b, chunk) for b in range(self.batch) for chunk in range(self.chunks)]

    @property
    def n_band_jobs(self) -> int:
        return self.batch * self.bands

    def _band_edges(self) -> np.ndarray:
        """(B, bands + 1) bin indices: band j of image b is bins [edges[b, j], edges[b, j + 1])."""
        with self._edges_lock:
            if self._edges is None:
                edges = np.empty((self.batch, self.bands + 1), dtype=np.int64)
                _balanced_edges(self.bin_cost, self.bin_height, self.height, PIXEL_COST * self.width, edges)
                self._edges = edges
            return self._edges

    def band(self, job: int) -> tuple[int, int, int]:
        """(image, first bin, end bin) of band job ``job``; call only after the setup jobs ran."""
        b, band = divmod(job, self.bands)
        edges = self._band_edges()
        return b, int(edges[b, band]), int(edges[b, band + 1])

    def rows(self, bin_lo: int, bin_hi: int) -> tuple[int, int]:
        return bin_lo * self.bin_height, min(self.height, bin_hi * self.bin_height)

    def raster_args(self, b: int, bin_lo: int, bin_hi: int) -> tuple:
        """The arguments of :func:`raster_band` for bins [bin_lo, bin_hi) of image ``b``."""
        return (self.boxes[b], self.coeffs[b], self.bin_offsets[b], self.bin_ids[b], bin_lo, bin_hi,
                self.bin_height, self.height, self.width, self.tri[b], self.zbuf[b], self.bary[b],
                self.mask[b])

    def raster(self, verts_clip: Tensor, faces: Tensor) -> Raster:
        """The finished :class:`Raster` (barycentrics and depth recomputed in torch if the
        positions need gradients)."""
        device = verts_clip.device
        tri_id = torch.from_numpy(self.tri).to(device)
        if verts_clip.requires_grad and torch.is_grad_enabled():
            bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        else:
            bary = torch.from_numpy(self.bary).to(device=device, dtype=verts_clip.dtype)
            depth = torch.from_numpy(self.zbuf).to(device=device, dtype=verts_clip.dtype)
        return Raster(tri_id=tri_id, bary=bary, depth=depth, mask=torch.from_numpy(self.mask).to(device))


class NumbaRasterizer:
    """The default CPU backend (see module docstring).

    ``threads``: threads sharing the work (default :func:`backend.render.bands.default_threads`);
    ``bands_per_thread``: row bands per thread and image. Bands are balanced by estimated work, and
    each costs a GIL hand-over (tens of microseconds on a VM), so one per thread measured fastest.
    """

    name = "cpu"

    def __init__(self, threads: int | None = None, bands_per_thread: int = 1) -> None:
        self.threads = threads
        self.bands_per_thread = max(1, bands_per_thread)

    def plan(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int],
             threads: int | None = None) -> tuple[RasterPlan, Tensor, Tensor]:
        """Validated inputs and the :class:`RasterPlan` of a rasterisation (not yet run)."""
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        clip = np.ascontiguousarray(verts_clip.detach().cpu().numpy(), dtype=np.float64)
        faces_np = np.ascontiguousarray(faces.cpu().numpy(), dtype=np.int64)
        threads = threads or self.threads or default_threads()
        return RasterPlan(clip, faces_np, height, width, threads, self.bands_per_thread), verts_clip, faces

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        plan, verts_clip, faces = self.plan(verts_clip, faces, resolution)

        def band(job: int) -> None:
            raster_band(*plan.raster_args(*plan.band(job)))

        run_bands(band, plan.n_band_jobs, plan.threads, prologue=plan.setup_jobs())
        return plan.raster(verts_clip, faces)
