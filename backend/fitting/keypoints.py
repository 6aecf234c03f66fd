"""2D keypoints for the fit: the two layouts, the keypoints JSON file, the robust keypoint term.

Layouts (the order of a view's keypoint rows):

- ``coco17``: the 17 COCO person keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips,
  knees, ankles), what off-the-shelf pose estimators (ViTPose, RTMPose) give;
- ``smplx127``: SMPL-X's own keypoint output, as ``smplx`` orders it: the 55 joints, the 21
  vertex keypoints (nose, eyes, ears, toes, heels, finger tips) and the 51 face landmarks; what
  ``backend.preview`` projects for its OpenPose images and ``backend.clips`` writes as ground truth.

A COCO keypoint is matched to the SMPL-X keypoint of the same name (shoulders, hips, ... are
SMPL-X *joints*, inside the body; nose, eyes and ears are surface points), as ``backend.clips``
does for its COCO annotations, so keypoints from our own renders are exact for the model.

The keypoints JSON (``keypoints.json`` beside a views folder's ``views.json``)::

    {"format": "avatar-studio.keypoints", "version": 1, "layout": "coco17",
     "views": {"<view name>": [[x, y, confidence], ...], ...}}

``x, y`` are OpenCV pixel coordinates of the view's image (pixel (0, 0)'s centre at (0.5, 0.5)),
``confidence`` in [0, 1] (0 = not detected; its x, y are ignored). Every listed view has exactly
as many rows as its layout has keypoints; views not listed have no keypoints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from smplx.joint_names import JOINT_NAMES as SMPLX_OUTPUT_NAMES

KEYPOINTS_FORMAT = "avatar-studio.keypoints"
KEYPOINTS_VERSION = 1

# 55 joints, 21 vertex keypoints, 51 face landmarks: the model's keypoint output, in this order.
SMPLX127_NAMES: tuple[str, ...] = tuple(SMPLX_OUTPUT_NAMES[:127])
COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
LAYOUTS: dict[str, tuple[str, ...]] = {"coco17": COCO17_NAMES, "smplx127": SMPLX127_NAMES}


class KeypointsError(ValueError):
    """A keypoints file or array that cannot be used; the message says what is wrong."""


def layout_index(layout: str) -> np.ndarray:
    """Index into the 127 SMPL-X keypoints of each keypoint of ``layout``."""
    if layout not in LAYOUTS:
        raise KeypointsError(f"unknown keypoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return np.array([SMPLX127_NAMES.index(n) for n in LAYOUTS[layout]], dtype=np.int64)


def check_keypoints(points: Any, layout: str, where: str = "keypoints") -> np.ndarray:
    """(N,3) float64 x, y, confidence for ``layout``; non-finite rows get confidence 0."""
    n = len(layout_index(layout))
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise KeypointsError(f"{where}: not a numeric array ({exc})") from None
    if arr.shape != (n, 3):
        raise KeypointsError(f"{where}: expected ({n}, 3) rows of x, y, confidence for layout "
                             f"{layout!r}, got shape {arr.shape}")
    arr = arr.copy()
    bad = ~np.isfinite(arr).all(axis=1)
    arr[bad] = 0.0
    if ((arr[:, 2] < 0) | (arr[:, 2] > 1)).any():
        raise KeypointsError(f"{where}: confidences must be in [0, 1]")
    return arr


def read_keypoints(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(layout, view name -> (N,3) array) from a keypoints JSON file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeypointsError(f"{path}: not a readable keypoints JSON ({exc})") from None
    return parse_keypoints(text, str(path))


def parse_keypoints(text: str | bytes, where: str = "keypoints") -> tuple[str, dict[str, np.ndarray]]:
    """:func:`read_keypoints` of the file's contents (``where`` names it in errors)."""
    path = where
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeypointsError(f"{path}: not a readable keypoints JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != KEYPOINTS_FORMAT:
        raise KeypointsError(f"{path}: format must be {KEYPOINTS_FORMAT!r}")
    if int(data.get("version", 0)) > KEYPOINTS_VERSION:
        raise KeypointsError(f"{path}: version {data['version']} is newer than this reader")
    layout = str(data.get("layout", ""))
    views = data.get("views")
    if not isinstance(views, dict):
        raise KeypointsError(f"{path}: 'views' must map view names to keypoint rows")
    return layout, {str(k): check_keypoints(v, layout, f"{path}: view {k}") for k, v in views.items()}


def write_keypoints(path: str | Path, layout: str, views: Mapping[str, np.ndarray]) -> Path:
    path = Path(path)
    rows = {name: check_keypoints(v, layout, f"view {name}").round(3).tolist() for name, v in views.items()}
    path.write_text(json.dumps({"format": KEYPOINTS_FORMAT, "version": KEYPOINTS_VERSION, "layout": layout,
                                "views": rows}))
    return path


def gmof(residual_sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure of a squared residual: ~r^2 for r << sigma, saturating at sigma^2 (outliers)."""
    s2 = sigma * sigma
    return s2 * residual_sq / (s2 + residual_sq)


def keypoint_term(projected: torch.Tensor, target: torch.Tensor, sigma: float) -> torch.Tensor:
    """Confidence-weighted mean Geman-McClure error (pixels^2) of (B,N,2) projections vs (B,N,3)."""
    conf = target[..., 2]
    residual_sq = ((projected - target[..., :2]) ** 2).sum(-1)
    return (conf * gmof(residual_sq, sigma)).sum() / conf.sum().clamp(min=1e-6)


def reprojection_errors(projected: np.ndarray, target: np.ndarray,
                        min_conf: float = 0.1) -> list[float | None]:
    """Per view: mean pixel distance over the keypoints with confidence >= ``min_conf`` (None if none)."""
    out = []
    for p, t in zip(projected, target, strict=True):
        seen = t[:, 2] >= min_conf
        out.append(float(np.linalg.norm(p[seen] - t[seen, :2], axis=1).mean()) if seen.any() else None)
    return out
