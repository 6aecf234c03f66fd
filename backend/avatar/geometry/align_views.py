"""Per-view image shifts that bring each training view's mask onto the sculpt's silhouette.

Generated or hand-made views come with cameras a pixel or two off (a camera turned a little about
its centre moves the whole image by about that much). The sculpt averages those errors into one
shape, so each view's mask then sits off the sculpt's silhouette by that view's own error. Fitting
the outlines harder to such masks (the surface stage) and projecting colours through such cameras
(the texture) bakes the errors in. A small rotation about the camera's centre is, to first order, a
shift of the principal point: measure each view's shift between the sculpt's silhouette and its
mask by phase correlation (scikit-image's sub-pixel registration) and move the principal point by
it. Shifts beyond ``max_shift_px`` are not trusted (a view that disagrees that much is a
different shape, which the per-view confidences handle) and left at zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from skimage.registration import phase_cross_correlation

from backend.avatar.io.views import View
from backend.avatar.render_views import mesh_coverages
from protocol.cameras import CameraFrame

MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class AlignConfig:
    enabled: bool = True
    max_shift_px: float = 4.0  # at the view's own resolution
    upsample: int = 20  # phase correlation's sub-pixel factor: 1/20 px
    rasterizer: str = "auto"


def shifted_camera(cam: CameraFrame, dx: float, dy: float) -> CameraFrame:
    """The camera whose image is the given one's moved by (dx, dy) pixels (principal point moved)."""
    K = np.array(cam.K, dtype=np.float64)
    K[0, 2] += dx
    K[1, 2] += dy
    return CameraFrame(K=K, R=cam.R, t=cam.t, width=cam.width, height=cam.height, near=cam.near, far=cam.far)


def silhouette_shifts(vertices: np.ndarray, faces: np.ndarray, views: list[View],
                      config: AlignConfig = AlignConfig()) -> np.ndarray:
    """(K,2) shifts (dx, dy) in pixels that move the mesh's silhouette in each view onto its mask."""
    shifts = np.zeros((len(views), 2))
    coverages = mesh_coverages(vertices, faces, [view.camera for view in views], 1.0, config.rasterizer)
    for k, (view, cover) in enumerate(zip(views, coverages, strict=True)):
        coverage = cover.numpy().astype(np.float64)
        mask = (view.rgba[..., 3] > MASK_THRESHOLD).astype(np.float64)
        if coverage.sum() < 1 or mask.sum() < 1:
            continue
        # the shift that registers the render onto the mask: (rows, cols) = (dy, dx)
        shift, _, _ = phase_cross_correlation(mask, coverage, upsample_factor=config.upsample,
                                              normalization=None)
        dy, dx = float(shift[0]), float(shift[1])
        if np.hypot(dx, dy) <= config.max_shift_px:
            shifts[k] = (dx, dy)
    return shifts


def align_views(vertices: np.ndarray, faces: np.ndarray, views: list[View],
                config: AlignConfig = AlignConfig()) -> tuple[list[View], np.ndarray]:
    """The views with their cameras moved onto the mesh's silhouettes, and the (K,2) shifts."""
    if not config.enabled:
        return list(views), np.zeros((len(views), 2))
    shifts = silhouette_shifts(vertices, faces, views, config)
    aligned = [replace(view, camera=shifted_camera(view.camera, dx, dy))
               for view, (dx, dy) in zip(views, shifts, strict=True)]
    return aligned, shifts
