"""Scores of an avatar on the views marked ``"split": "test"`` (held out from fitting).

``avatar --views DIR`` runs this on its own result so a user sees how well the avatar reproduces
views it never fitted: per view the textured render against the view's RGB, PSNR and SSIM inside
the masks (the union of the view's mask and the render's coverage, so both a missing and an extra
silhouette count) and the IoU of the two masks; plus their means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from backend.avatar.eval.metrics import psnr, ssim
from backend.avatar.io.views import View


@dataclass
class ViewScore:
    name: str
    psnr_masked_db: float
    ssim_masked: float
    mask_iou: float


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else float((a & b).sum() / union)


def score_view(rendered: np.ndarray, view: View) -> ViewScore:
    """``rendered`` (H,W,4) RGBA of the avatar in ``view``'s camera over a black background."""
    gt, gt_mask = view.rgba[..., :3], view.rgba[..., 3] > 0.5
    pred_mask = rendered[..., 3] > 0.5
    union = gt_mask | pred_mask
    # The render is over black; the view's colour is taken as stored where it has any alpha (a
    # synthetic or Blender rim is already blended) and black where it has none (any background).
    target = np.where(view.rgba[..., 3:4] > 0, gt, 0.0)
    return ViewScore(
        name=view.name,
        psnr_masked_db=psnr(rendered[..., :3], target, union) if union.any() else float("nan"),
        ssim_masked=ssim(rendered[..., :3], target, mask=union) if union.any() else float("nan"),
        mask_iou=mask_iou(gt_mask, pred_mask),
    )


def score_test_views(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray, views: list[View]
) -> dict[str, Any]:
    """``{"views": [per-view scores], "mean": {...}}`` for the held-out views (empty when none).

    ``texture`` is (S,S,3) float in [0,1] or uint8; the mesh is split-vertex as in ``AvatarResult``.
    """
    from backend.avatar.texture.optimise import render_textured

    tex = texture.astype(np.float32) / 255 if texture.dtype == np.uint8 else texture.astype(np.float32)
    scores = [score_view(render_textured(vertices, faces, uvs, tex, v), v) for v in views]
    if not scores:
        return {"views": [], "mean": None}
    keys = ("psnr_masked_db", "ssim_masked", "mask_iou")
    mean = {k: float(np.mean([getattr(s, k) for s in scores])) for k in keys}
    return {"views": [asdict(s) for s in scores], "mean": mean}
