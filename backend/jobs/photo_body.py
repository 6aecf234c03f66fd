"""``avatar.from_image``'s body: the photo squared, its silhouette and keypoints, the body fitted to it.

The photo becomes the anchor view at the generation size (``square_photo``: padded with its
border colour, an alpha channel composited over white); the fit runs on the same square image at
``FIT_SIZE`` (``backend/fitting/photo.py``: assumed front camera with the ``photo_fov`` field of
view, translation, shape and pose solved). Keypoints come from, in this order: the ``keypoints``
param (a keypoints JSON: its view named ``photo`` or after the photo's file, or its only view),
a ``<photo stem>.keypoints.json`` beside the photo (read through the same input-root check),
the ``pose-estimator`` role when ``pose_estimator`` is on and the role is on this machine (its
detections kept only where they agree with the silhouette), else none (silhouette alone).

The camera the body was fitted in is view 0 of the generated ring (``anchored_ring``): the photo
and the fitted body line up in the views folder, the other views are spread around from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobInputError

log = logging.getLogger(__name__)
FIT_SIZE = 192  # the fit's square image (cost grows with it; 192 px: ~3 cm with keypoints)
PHOTO_VIEW = "photo"
KEYPOINTS_SUFFIX = ".keypoints.json"  # photo.png -> photo.keypoints.json beside it
MAX_KEYPOINTS_BYTES = 16 << 20


@dataclass
class PhotoBody:
    rgb: np.ndarray  # (S,S,3) uint8: the anchor view at the generation size
    mask: np.ndarray | None  # (S,S) bool: its person mask (None: none found, and not fitted)
    body: dict[str, Any] | None  # fitted SMPL-X payload (None: not fitted)
    camera: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # K, R, t at S (None: not fitted)
    record: dict[str, Any] = field(default_factory=dict)  # what data.generated.body_fit reports


def _keypoints_from_file(keypoints: Any, photo_name: str,
                         where: str = "params.keypoints") -> tuple[str, np.ndarray]:
    from backend.fitting import KeypointsError, parse_keypoints

    data = keypoints.read_bytes() if hasattr(keypoints, "read_bytes") else Path(keypoints).read_bytes()
    try:
        layout, views = parse_keypoints(data, where)
    except KeypointsError as exc:
        raise JobInputError(str(exc)) from None
    stem = Path(photo_name).stem
    for name in (PHOTO_VIEW, stem, Path(photo_name).name):
        if name in views:
            return layout, views[name]
    if len(views) == 1:
        return layout, next(iter(views.values()))
    raise JobInputError(f"{where}: no view named {PHOTO_VIEW!r} or {stem!r} (views: "
                        f"{', '.join(sorted(views)) or 'none'})")


def _keypoints_beside(image: Any) -> tuple[Any, str] | None:
    """The keypoints JSON beside the photo (``<stem>.keypoints.json``) as something with
    ``read_bytes``, or None. A server's photo is a confined file: its neighbour is read through the
    same root check (a refused or missing neighbour is simply absent: nothing is told about it)."""
    from protocol.kinds import ParamError

    path = Path(getattr(image, "path", image))
    name = path.stem + KEYPOINTS_SUFFIX
    if hasattr(image, "roots"):  # a ConfinedFile
        beside = replace(image, path=path.with_name(name), given=name, where="params.image")
        try:
            return _Bytes(beside.read_bytes(limit=MAX_KEYPOINTS_BYTES)), name
        except (ParamError, OSError):
            return None
    sibling = path.with_name(name)
    if sibling.is_file() and sibling.stat().st_size <= MAX_KEYPOINTS_BYTES:
        return sibling, name
    return None


@dataclass
class _Bytes:
    data: bytes

    def read_bytes(self) -> bytes:
        return self.data


def _keypoints_from_estimator(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    from backend.fitting.photo import detect_keypoints, plausible_keypoints
    from backend.models.load import load_pose_estimator
    from backend.models.registry import ModelMissingError, ModelRegistry

    try:
        estimator = load_pose_estimator(registry=ModelRegistry.load())
    except ModelMissingError as exc:  # optional here: the silhouette alone is fitted
        log.info("no pose estimator: %s", exc)
        return None, {"source": "none", "estimator": "missing"}
    kp, info = plausible_keypoints(detect_keypoints(estimator, rgb, mask), mask)
    return kp, {"source": "pose-estimator" if kp is not None else "none", "estimator": info}


def photo_body(photo: np.ndarray, params: Any, size: int,
               progress: Callable[[float, str], None]) -> PhotoBody:
    """The anchor image at ``size`` and, unless ``params.body`` is given or ``params.fit_body`` is
    off, the body fitted to the photo (see the module doc)."""
    from backend.fitting import FitInputError, KeypointsError
    from backend.fitting.photo import PhotoFitConfig, fit_photo, photo_camera, photo_mask, square_photo

    fit = params.body is None and params.fit_body
    try:
        square = square_photo(photo, size)
    except FitInputError as exc:
        raise JobInputError(f"params.image: {exc}") from None
    try:
        mask = square.alpha > 0.5 if square.alpha is not None else photo_mask(square.rgb)
        small = square_photo(photo, FIT_SIZE)  # the fit's resolution, whatever the views' size
        small_mask = small.alpha if small.alpha is not None else photo_mask(small.rgb).astype(np.float32)
    except FitInputError as exc:
        if fit:
            raise JobInputError(f"params.image: {exc}") from None
        mask = None  # not fitted: the generated mask (the body's silhouette refined by colour) serves
    if not fit:
        return PhotoBody(square.rgb, mask, None, None, {"fitted": False})
    keypoints, layout, source = None, None, {"source": "none"}
    photo_name = getattr(params.image, "name", str(params.image))
    beside = _keypoints_beside(params.image) if params.keypoints is None else None
    if params.keypoints is not None or beside is not None:
        if beside is None:
            layout, rows = _keypoints_from_file(params.keypoints, photo_name)
        else:
            layout, rows = _keypoints_from_file(beside[0], photo_name, f"params.image: {beside[1]} beside it")
        keypoints = small.map_keypoints(rows)
        source = {"source": "file"} if beside is None else {"source": "beside-photo", "file": beside[1]}
    elif params.pose_estimator:
        progress(0.0, "detecting keypoints (pose-estimator role)")
        found, source = _keypoints_from_estimator(square.rgb, mask)
        if found is not None:
            keypoints, layout = found.copy(), "coco17"
            keypoints[:, :2] *= small.rgb.shape[0] / square.rgb.shape[0]
    progress(0.05, "fitting the body to the photo" + (f" ({layout} keypoints)" if layout else ""))
    config = PhotoFitConfig(fov_y_deg=float(params.photo_fov))
    try:
        result = fit_photo(small_mask, keypoints, layout, config,
                           progress=lambda f, m: progress(0.05 + 0.95 * f, m))
    except (FitInputError, KeypointsError) as exc:
        raise JobInputError(f"params.image: the body fit failed: {exc}") from None
    d = result.diagnostics
    progress(1.0, f"body fitted to the photo: silhouette IoU {d['mean_iou']:.3f}")
    record = {"fitted": True, "keypoints": source, "layout": layout, "smplx": result.params,
              "diagnostics": d, "timings_s": {k: round(v, 3) for k, v in result.timings.items()}}
    return PhotoBody(square.rgb, mask, result.params, photo_camera(size, config.fov_y_deg), record)
