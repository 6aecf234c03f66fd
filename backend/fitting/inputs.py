"""What a fit reads: calibrated views with a mask each and, optionally, 2D keypoints; checked once.

Cameras follow docs/protocol.md section 5: world right-handed, Y up, metres; OpenCV cameras with
``X_cam = R X_world + t``, ``K`` in pixels, pixel (0, 0)'s centre at (0.5, 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .keypoints import check_keypoints


class FitInputError(ValueError):
    """The views cannot be fitted; the message names the view and what is wrong."""


@dataclass
class FitView:
    K: np.ndarray  # (3,3)
    R: np.ndarray  # (3,3) world -> camera
    t: np.ndarray  # (3,)
    mask: np.ndarray  # (H,W) in [0,1] (soft masks allowed; > 0.5 is the person)
    keypoints: np.ndarray | None = None  # (N,3) x, y, confidence in the fit's keypoint layout
    name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    @classmethod
    def from_camera(cls, camera: Any, mask: np.ndarray, keypoints: np.ndarray | None = None,
                    name: str = "") -> FitView:
        """From anything with ``K``, ``R``, ``t`` (e.g. ``protocol.cameras.CameraFrame``)."""
        return cls(np.asarray(camera.K), np.asarray(camera.R), np.asarray(camera.t), np.asarray(mask),
                   keypoints, name)


def check_views(views: Sequence[FitView], layout: str | None, min_views: int = 2) -> list[FitView]:
    """The views as float64/float32 arrays, or FitInputError naming the first problem."""
    if not views:
        raise FitInputError("no views to fit the body to")
    out: list[FitView] = []
    size: tuple[int, int] | None = None
    for i, v in enumerate(views):
        where = f"view {i}" + (f" ({v.name})" if v.name else "")
        try:
            K = np.asarray(v.K, dtype=np.float64).reshape(3, 3)
            R = np.asarray(v.R, dtype=np.float64).reshape(3, 3)
            t = np.asarray(v.t, dtype=np.float64).reshape(3)
            mask = np.asarray(v.mask, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise FitInputError(f"{where}: camera or mask of the wrong shape ({exc})") from None
        for name, arr in (("K", K), ("R", R), ("t", t)):
            if not np.isfinite(arr).all():
                raise FitInputError(f"{where}: {name} has non-finite values")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise FitInputError(f"{where}: K must have positive focal lengths, got {K[0, 0]}, {K[1, 1]}")
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
            raise FitInputError(f"{where}: R is not a rotation matrix")
        if mask.ndim == 3 and mask.shape[2] in (1, 4):
            mask = mask[..., -1]
        if mask.ndim != 2 or min(mask.shape) < 8:
            raise FitInputError(f"{where}: the mask must be a (H,W) image of at least 8x8, got {mask.shape}")
        if not np.isfinite(mask).all():
            raise FitInputError(f"{where}: the mask has non-finite values")
        if size is not None and mask.shape != size:
            raise FitInputError(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, the first view's is "
                                f"{size[1]}x{size[0]}; all views of a fit share one image size")
        size = mask.shape  # type: ignore[assignment]
        if not (mask > 0.5).any():
            raise FitInputError(f"{where}: the mask is empty (no person pixels)")
        kp = None
        if v.keypoints is not None:
            if layout is None:
                raise FitInputError(f"{where}: keypoints given without a keypoint layout")
            kp = check_keypoints(v.keypoints, layout, where)
        out.append(FitView(K, R, t, np.clip(mask, 0.0, 1.0), kp, v.name))
    if len(out) < min_views:  # one view: backend/fitting/photo.py brings the missing constraints
        raise FitInputError(f"a body fit needs at least {min_views} calibrated views, got {len(out)}")
    return out
