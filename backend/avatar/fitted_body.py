"""The body of a views set: its SMPL-X parameters when the manifest has them, else fitted to it.

A views set without an ``smplx`` entry (what a real user has: photos with cameras) gets its body
from ``backend.fitting``: the training views' masks (alpha) and cameras, plus 2D keypoints when
the folder holds a ``keypoints.json`` (docs/fitting.md). The fit's parameters and diagnostics are
returned so the pipeline can write them beside the avatar (``body_fit.json``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from backend.avatar.body_mesh import BodyMesh, body_from_params
from backend.avatar.io.views import ViewSet
from backend.avatar.progress import ProgressFn
from backend.fitting import FitConfig, FitView, fit_body, read_keypoints

log = logging.getLogger(__name__)
KEYPOINTS_FILE = "keypoints.json"


def views_body(views: ViewSet, report: ProgressFn, config: FitConfig | None = None
               ) -> tuple[BodyMesh, dict[str, Any] | None]:
    """(posed body, the fit's record or None when the views carried their SMPL-X parameters)."""
    if views.smplx:
        report("body", 0.0, "posing the SMPL-X body")
        return body_from_params(views.smplx), None
    train = views.split("train")
    config = config or FitConfig()
    keypoints: dict[str, Any] = {}
    folder = views.folder
    if folder is not None and (folder / KEYPOINTS_FILE).is_file():
        layout, keypoints = read_keypoints(folder / KEYPOINTS_FILE)
        config = replace(config, layout=layout)
    fit_views = [FitView.from_camera(v.camera, v.rgba[..., 3], keypoints.get(v.name), v.name) for v in train]
    message = (f"the views carry no SMPL-X parameters: fitting the body to {len(fit_views)} silhouettes"
               + (f" and {config.layout} keypoints" if keypoints else ""))
    log.info(message)
    report("body", 0.0, message)
    result = fit_body(fit_views, config, lambda f, m: report("body", f, m))
    d = result.diagnostics
    kp_error = d.get("mean_keypoint_error_px")
    report("body", 1.0, f"body fitted: mean silhouette IoU {d['mean_iou']:.3f}"
           + (f", keypoint error {kp_error:.2f} px" if kp_error is not None else ""))
    record = {"smplx": result.params, "diagnostics": d, "timings_s": result.timings}
    return body_from_params(result.params), record
