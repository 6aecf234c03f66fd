"""Body fitting: SMPL-X shape and pose from calibrated multi-view silhouettes and 2D keypoints.

Public API::

    from backend.fitting import FitConfig, FitView, fit_body
    result = fit_body([FitView(K, R, t, mask, keypoints), ...], FitConfig(layout="coco17"))
    result.params        # protocol SMPL-X payload (one frame): betas, global_orient, body_pose, transl, ...
    result.diagnostics   # per-view IoU, keypoint reprojection error, per-stage losses

The method, its terms, weights and stages, the keypoints JSON and the measured accuracy are in
docs/fitting.md. torch is imported with the fit module, lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .inputs import FitInputError, FitView
from .keypoints import KeypointsError, parse_keypoints, read_keypoints, write_keypoints

if TYPE_CHECKING:
    from .fit import FitConfig, FitResult, Stage, fit_body

_LAZY = {"FitConfig", "FitResult", "Stage", "fit_body"}

__all__ = ["FitConfig", "FitInputError", "FitResult", "FitView", "KeypointsError", "Stage", "fit_body",
           "parse_keypoints", "read_keypoints", "write_keypoints"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import fit

        return getattr(fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
