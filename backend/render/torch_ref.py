"""Plain-PyTorch reference rasterizer: the specification the fast backends are tested against.

Visibility is evaluated for every (triangle, pixel-in-its-bounding-box) candidate at once, in
float64, and resolved with one ``scatter_reduce(amin)`` over a packed key (float32 depth bits in the
high word, triangle id in the low word): the nearest float32 depth wins and exact ties go to the
lowest triangle id. The fast CPU kernel implements the same rule with the same arithmetic.
Runs on any device torch supports; memory is bounded by processing triangles in chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.barycentric import barycentrics_at_pixels, homogeneous_barycentrics

_EMPTY_KEY = torch.iinfo(torch.int64).max
BOX_EPS = 1e-6  # pixels; must equal backend.render.cpu_numba.BOX_EPS


def triangle_pixel_bounds(tri: Tensor, height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inclusive pixel bounds (x_lo, x_hi, y_lo, y_hi) per triangle (F,3,4 clip); empty => lo > hi.

    Triangles entirely outside one clip plane are dropped. Triangles with a vertex at w <= 0 have no
    finite screen bounding box; they get the whole image and the per-pixel test decides (rare: only
    geometry crossing the camera plane). A tiny margin keeps the box conservative under
    rounding (``BOX_EPS`` pixels, the same rule as the numba kernel).
    """
    x, y, z, w = tri.unbind(-1)
    culled = (
        (x > w).all(1) | (x < -w).all(1) | (y > w).all(1) | (y < -w).all(1)
        | (z > w).all(1) | (z < -w).all(1) | (w <= 0).all(1)
    )
    in_front = (w > 0).all(1)
    safe_w = torch.where(w > 0, w, torch.ones_like(w))
    sx = (x / safe_w + 1.0) * (0.5 * width)
    sy = (1.0 - y / safe_w) * (0.5 * height)
    eps = BOX_EPS
    x_lo = torch.where(in_front, torch.ceil(sx.amin(1) - 0.5 - eps), torch.zeros_like(sx[:, 0]))
    x_hi = torch.where(in_front, torch.floor(sx.amax(1) - 0.5 + eps), torch.full_like(sx[:, 0], width - 1))
    y_lo = torch.where(in_front, torch.ceil(sy.amin(1) - 0.5 - eps), torch.zeros_like(sy[:, 0]))
    y_hi = torch.where(in_front, torch.floor(sy.amax(1) - 0.5 + eps), torch.full_like(sy[:, 0], height - 1))
    x_lo = x_lo.clamp(0, width - 1).long()
    x_hi = x_hi.clamp(-1, width - 1).long()
    y_lo = y_lo.clamp(0, height - 1).long()
    y_hi = y_hi.clamp(-1, height - 1).long()
    x_hi = torch.where(culled, x_lo - 1, x_hi)
    return x_lo, x_hi, y_lo, y_hi


def visibility(clip: Tensor, faces: Tensor, height: int, width: int, max_candidates: int = 1 << 21) -> Tensor:
    """Triangle id per pixel (H,W) int64 for one image; ``clip`` (V,4) float64, ``faces`` (F,3) int64."""
    device = clip.device
    tri = clip[faces]  # (F,3,4)
    x_lo, x_hi, y_lo, y_hi = triangle_pixel_bounds(tri, height, width)
    box_w = (x_hi - x_lo + 1).clamp(min=0)
    box_h = (y_hi - y_lo + 1).clamp(min=0)
    counts = box_w * box_h
    keys = torch.full((height * width,), _EMPTY_KEY, dtype=torch.int64, device=device)
    ends = torch.cumsum(counts, 0)
    start = 0
    n_tri = faces.shape[0]
    while start < n_tri:
        # Largest chunk [start, stop) whose candidates fit the budget (at least one triangle).
        base = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, base + max_candidates, right=True))
        stop = max(stop, start + 1)
        _resolve_chunk(tri, keys, start, stop, x_lo, y_lo, box_w, counts, height, width)
        start = stop
    tri_id = torch.where(keys == _EMPTY_KEY, -1, keys & 0xFFFFFFFF)
    return tri_id.reshape(height, width)


def _resolve_chunk(tri: Tensor, keys: Tensor, start: int, stop: int, x_lo: Tensor, y_lo: Tensor,
                   box_w: Tensor, counts: Tensor, height: int, width: int) -> None:
    device = tri.device
    chunk_counts = counts[start:stop]
    total = int(chunk_counts.sum())
    if total == 0:
        return
    ids = torch.arange(start, stop, device=device)
    cand_tri = torch.repeat_interleave(ids, chunk_counts)
    first = torch.cumsum(chunk_counts, 0) - chunk_counts
    local = torch.arange(total, device=device) - torch.repeat_interleave(first, chunk_counts)
    bw = box_w[cand_tri]
    px = x_lo[cand_tri] + local % bw
    py = y_lo[cand_tri] + torch.div(local, bw, rounding_mode="floor")
    u = (px.to(torch.float64) + 0.5) * (2.0 / width) - 1.0
    v = 1.0 - (py.to(torch.float64) + 0.5) * (2.0 / height)
    t = tri[cand_tri]
    lam, w = homogeneous_barycentrics(t[..., [0, 1, 3]], u, v)
    z = lam[:, 0] * t[:, 0, 2] + lam[:, 1] * t[:, 1, 2] + lam[:, 2] * t[:, 2, 2]
    inside = (lam >= 0).all(-1) & (w > 0) & (z >= -w) & (z <= w)
    if not bool(inside.any()):
        return
    depth_bits = w[inside].to(torch.float32).view(torch.int32).to(torch.int64)
    key = (depth_bits << 32) | cand_tri[inside]
    keys.scatter_reduce_(0, (py * width + px)[inside], key, reduce="amin")


class TorchRefRasterizer:
    """Reference backend (any torch device); slow but simple enough to be obviously right."""

    name = "torch_ref"

    def __init__(self, max_candidates: int = 1 << 21) -> None:
        self.max_candidates = max_candidates

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        with torch.no_grad():
            clip64 = verts_clip.detach().to(torch.float64)
            tri_id = torch.stack(
                [visibility(clip64[b], faces, height, width, self.max_candidates)
                 for b in range(clip64.shape[0])]
            )
        bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        return Raster(tri_id=tri_id, bary=bary, depth=depth)
