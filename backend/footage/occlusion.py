"""Depth-aware occlusion of the inserted character by the plate, per subsample, soft-edged.

The plate's depth (metres along the optical axis, one value per pixel centre, +inf where nothing
is) is compared with the character's depth at each supersample of its window. Where the four
pixel centres around a subsample lie on one continuous surface (depths within
:data:`CONTINUOUS` of each other) the plate's depth is interpolated bilinearly there (a ground
plane meets the feet where it really is, not a pixel-sized step); across a depth edge each of the
four neighbours votes with its bilinear weight on whether it is in front, so the matte ramps
over one pixel at the edge (soft) and is exact one pixel inside an occluder (the occluder's pixels
stay the plate's). :data:`TIE` keeps a surface from hiding what touches it (the soles on the
ground). ``occluder_masks`` (scene objects in front of everything inserted, for shots without
depth) are upsampled bilinearly and multiply the visibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTINUOUS = 0.05  # relative depth spread of four neighbouring pixels on one surface
TIE = 0.004  # relative depth by which the scene must be in front to hide the character


@dataclass(frozen=True)
class SampleGrid:
    """Bilinear taps from the pixel grid (H, W) to the subsamples of a window at ``s`` per side."""

    y0: np.ndarray  # (h*s,) int rows of the upper neighbours
    y1: np.ndarray
    ay: np.ndarray  # (h*s, 1) weight of the lower neighbour
    x0: np.ndarray  # (w*s,) int columns
    x1: np.ndarray
    ax: np.ndarray  # (1, w*s)


def sample_grid(window: tuple[int, int, int, int], s: int, height: int, width: int) -> SampleGrid:
    """Subsample centres of pixel window (x0, y0, x1, y1) are at x0 + (i + 0.5) / s (pixel units,
    pixel centres at k + 0.5)."""
    wx0, wy0, wx1, wy1 = window

    def axis(lo: int, hi: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = lo + (np.arange((hi - lo) * s) + 0.5) / s - 0.5
        k0 = np.floor(q)
        a = q - k0
        k0 = k0.astype(np.int64)
        k1 = np.clip(k0 + 1, 0, size - 1)
        return np.clip(k0, 0, size - 1), k1, a.astype(np.float32)

    y0, y1, ay = axis(wy0, wy1, height)
    x0, x1, ax = axis(wx0, wx1, width)
    return SampleGrid(y0, y1, ay[:, None], x0, x1, ax[None, :])


def upsample(image: np.ndarray, g: SampleGrid) -> np.ndarray:
    """Bilinear values (h*s, w*s) of a per-pixel image (H, W) at the subsamples."""
    a, b = image[g.y0][:, g.x0], image[g.y0][:, g.x1]
    c, d = image[g.y1][:, g.x0], image[g.y1][:, g.x1]
    top = a + (b - a) * g.ax
    return top + ((c + (d - c) * g.ax) - top) * g.ay


def scene_in_front(depth: np.ndarray, g: SampleGrid, char_depth: np.ndarray) -> np.ndarray:
    """Fraction (h*s, w*s) float32 in [0, 1] of each subsample hidden by the plate (module doc);
    ``char_depth`` is +inf where the character is not."""
    ax, ay = g.ax, g.ay
    taps = [depth[g.y0][:, g.x0], depth[g.y0][:, g.x1], depth[g.y1][:, g.x0], depth[g.y1][:, g.x1]]
    weights = [(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay]
    lo = np.minimum(np.minimum(taps[0], taps[1]), np.minimum(taps[2], taps[3]))
    hi = np.maximum(np.maximum(taps[0], taps[1]), np.maximum(taps[2], taps[3]))
    limit = char_depth * (1.0 - TIE)
    with np.errstate(invalid="ignore"):
        continuous = np.isfinite(hi) & (hi <= lo * (1.0 + CONTINUOUS))
        smooth = sum(w * np.where(continuous, d, 0.0) for w, d in zip(weights, taps, strict=True))
        votes = sum(w * (d < limit) for w, d in zip(weights, taps, strict=True))
    return np.where(continuous, (smooth < limit).astype(np.float32), votes).astype(np.float32)
