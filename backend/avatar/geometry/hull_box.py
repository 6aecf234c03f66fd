"""The box the sculpt's grid must cover: the fitted body's box, grown to the views' visual hull.

The grid used to span the fitted body's box plus a fixed margin (8 cm). Clothes that stand further
off the body than that (a flared skirt 12 cm behind the back, a coat, a hat) were cut flat at the
box's wall whatever the views showed. The visual hull (the points every view that sees them
projects inside its mask) bounds what the views can support, so the box is extended to the hull's
box where the hull reaches further, and never shrunk below the body's box plus the margin. The
grid keeps its cell size as long as the longest side does not grow (``make_tet_grid`` counts cells
along the longest axis), so a character that fits the old box gets the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_dilation

from backend.avatar.io.views import View

MASK_THRESHOLD = 0.5


def visual_hull_box(
    views: Sequence[View],
    search_lo: np.ndarray,
    search_hi: np.ndarray,
    resolution: int = 80,
    dilate_px: int | None = None,
    min_views: int = 2,
    pad: float = 0.02,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Axis-aligned box (lo, hi) of the visual hull of ``views`` inside ``[search_lo, search_hi]``.

    A point of a ``resolution``-per-side lattice is in the hull when every view whose image it falls
    in projects it inside that view's mask (dilated by ``dilate_px``: 1-2 px of mask or camera error
    must not carve the clothes away) and at least ``min_views`` views see it (a point one view alone
    sees is unconstrained along that view's rays). None when no point qualifies (no views, or masks
    that miss the search box). The box of the lattice points kept, grown by ``pad`` metres (the
    hull's wall lies up to one lattice step further; the margin around the body covers the rest).
    """
    lo = np.asarray(search_lo, dtype=np.float64)
    hi = np.asarray(search_hi, dtype=np.float64)
    if not views or np.any(hi <= lo):
        return None
    axes = [np.linspace(lo[i], hi[i], resolution) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    inside = np.ones(len(points), dtype=bool)
    seen = np.zeros(len(points), dtype=np.int32)
    for view in views:
        cam = view.camera
        with np.errstate(divide="ignore", invalid="ignore"):  # lattice points at the camera's depth 0
            pixels, depth = cam.project(points)
        in_front = depth > cam.near
        u, v = pixels[:, 0], pixels[:, 1]
        h, w = view.rgba.shape[:2]
        # OpenCV pixels: pixel (x, y) covers [x, x+1) x [y, y+1)
        in_image = in_front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        mask = view.rgba[..., 3] > MASK_THRESHOLD
        # camera and mask errors are pixels of the view: 3 at 512 px, 1 at 128 px and below
        dilate = max(1, round(max(h, w) / 170)) if dilate_px is None else dilate_px
        if dilate > 0:
            mask = binary_dilation(mask, iterations=dilate)
        px = np.clip(np.floor(u[in_image]).astype(np.int64), 0, w - 1)
        py = np.clip(np.floor(v[in_image]).astype(np.int64), 0, h - 1)
        hit = np.zeros(len(points), dtype=bool)
        hit[np.nonzero(in_image)[0]] = mask[py, px]
        inside &= ~in_image | hit
        seen += in_image
    keep = inside & (seen >= min(min_views, len(views)))
    if not keep.any():
        return None
    kept = points[keep]
    return kept.min(0) - pad, kept.max(0) + pad


def body_box(body_vertices: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The body's axis-aligned box grown by ``margin`` on every side (the grid box before the hull)."""
    return (body_vertices.min(0).astype(np.float64) - margin,
            body_vertices.max(0).astype(np.float64) + margin)


def grid_box(
    body_vertices: np.ndarray,
    margin: float,
    views: Sequence[View] | None = None,
    reach: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """The sculpt grid's box: the body's box plus ``margin``, grown to the views' visual hull (at
    most ``reach`` metres past the body's box, where a cape or a wide dress may end)."""
    body_lo = body_vertices.min(0).astype(np.float64)
    body_hi = body_vertices.max(0).astype(np.float64)
    lo, hi = body_box(body_vertices, margin)
    if views:
        hull = visual_hull_box(views, body_lo - reach, body_hi + reach)
        if hull is not None:
            # Not along the body's longest axis (a standing person's height): the hull runs on
            # below the feet wherever no camera looks up under them, and a longer box means coarser
            # cells everywhere (``make_tet_grid`` counts cells along the longest side). Clothes
            # reach out sideways, to the front and back; hair and hats fit the margin.
            # Nor past the longest side on the other axes (an A-pose's arm span is close to its
            # height): the growth on both sides is scaled back to keep the cells' size.
            longest = float((hi - lo).max())
            grow = np.ones(3, dtype=bool)
            grow[int(np.argmax(body_hi - body_lo))] = False
            down = np.where(grow, np.maximum(lo - hull[0], 0.0), 0.0)
            up = np.where(grow, np.maximum(hull[1] - hi, 0.0), 0.0)
            room = longest - (hi - lo)
            scale = np.where(down + up > room, room / np.maximum(down + up, 1e-12), 1.0)
            lo, hi = lo - down * scale, hi + up * scale
    return lo, hi
