"""Generated views -> the views format (``backend/avatar/io/views.py``) that ``avatar --views`` reads.

Each view gets its camera (from the conditions), its RGBA image (alpha: the refined mask of
``masks.py``), a world normal map and the SMPL-X parameters of the conditioning body, so the
avatar pipeline skips body fitting. Without a normal estimator the normals are the *conditioning
body's* rendered normals, spread to the mask pixels off the body by nearest body pixel: a stand-in
that carries body shape, not clothing detail. The manifest's ``extra.generated`` says which
(``"normals": "body-render stand-in"``), and ``normals="none"`` writes no normals (the avatar
pipeline then runs its mask-only path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from backend.avatar.io.views import View, ViewSet, write_views
from backend.generate.conditions import BodyConditions
from backend.generate.masks import refine_masks

NORMALS_STANDIN = "body-render stand-in (no normal estimator)"


def spread_normals(normal: np.ndarray, body: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """World normals (H,W,3) on ``mask``: the body's where it has them, else its nearest body pixel's."""
    if not body.any():
        return np.zeros_like(normal)
    _, (iy, ix) = ndimage.distance_transform_edt(~body, return_indices=True)
    filled = normal[iy, ix]
    return np.where(mask[..., None], filled, 0.0).astype(np.float32)


def generated_view_set(images: np.ndarray, conditions: BodyConditions, *, masks: np.ndarray | None = None,
                       normals: str = "body", info: dict[str, Any] | None = None) -> ViewSet:
    """A :class:`ViewSet` of K generated images (float (K,H,W,3) in [0, 1] or uint8)."""
    imgs = np.asarray(images)
    imgs = imgs.astype(np.float32) / 255.0 if imgs.dtype == np.uint8 else imgs.astype(np.float32)
    n = len(conditions)
    expected = (n, conditions.cameras.height, conditions.cameras.width, 3)
    if imgs.shape != expected:
        raise ValueError(f"images are {imgs.shape}, the conditions' views need {expected}")
    if normals not in ("body", "none"):
        raise ValueError("normals must be 'body' (the rendered body's) or 'none'")
    if masks is None:
        masks = refine_masks(imgs, conditions.mask)
    views = []
    for i in range(n):
        rgba = np.concatenate([imgs[i], masks[i][..., None].astype(np.float32)], -1)
        normal = spread_normals(conditions.normal_world[i], conditions.mask[i], masks[i]) \
            if normals == "body" else None
        camera = conditions.cameras.frame(i)
        views.append(View(name=conditions.names[i], camera=camera, rgba=rgba, normal=normal))
    generated = {
        **(info or {}),
        "labels": list(conditions.labels),
        "masks": "body silhouette refined by colour",
        "normals": NORMALS_STANDIN if normals == "body" else "none",
        "body": conditions.info.get("body"),
    }
    return ViewSet(views=views, smplx=dict(conditions.smplx), extra={"generated": generated})


def write_generated_views(folder: str | Path, images: np.ndarray, conditions: BodyConditions,
                          **options: Any) -> Path:
    """Write the views folder (``views.json`` + PNGs); returns the manifest path."""
    return write_views(folder, generated_view_set(images, conditions, **options))
