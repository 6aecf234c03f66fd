"""Scores on the views marked "split": "test" (backend/avatar/eval/score.py): known values."""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.eval.score import mask_iou, score_view
from backend.avatar.io.views import View
from protocol.cameras import CameraFrame


def _view(rgba: np.ndarray) -> View:
    h, w = rgba.shape[:2]
    cam = CameraFrame(K=np.array([[50.0, 0, w / 2], [0, 50, h / 2], [0, 0, 1]]), R=np.eye(3),
                      t=np.array([0, 0, 3.0]), width=w, height=h)
    return View("test00", cam, rgba.astype(np.float32), None, "test")


def test_score_of_a_perfect_and_of_a_shifted_render() -> None:
    rng = np.random.default_rng(0)
    rgba = np.zeros((40, 40, 4), np.float32)
    rgba[10:30, 10:30, :3] = rng.uniform(0.2, 0.8, (20, 20, 3))
    rgba[10:30, 10:30, 3] = 1
    view = _view(rgba)
    same = score_view(rgba.copy(), view)
    assert same.psnr_masked_db == float("inf") and same.ssim_masked == pytest.approx(1.0)
    assert same.mask_iou == 1.0
    shifted = np.roll(rgba, 4, axis=1)  # 20x20 square moved by 4 px: IoU 16*20 / (24*20)
    s = score_view(shifted, view)
    assert s.mask_iou == pytest.approx(320 / 480)
    union = (rgba[..., 3] > 0.5) | (shifted[..., 3] > 0.5)
    mse = ((shifted[..., :3] - rgba[..., :3]) ** 2)[union].mean()
    assert s.psnr_masked_db == pytest.approx(10 * np.log10(1 / mse))
    assert s.ssim_masked < 0.9
    # Outside the view's alpha its colour is ignored (any background reads as black).
    white_bg = rgba.copy()
    white_bg[rgba[..., 3] == 0, :3] = 1.0
    assert score_view(rgba.copy(), _view(white_bg)).psnr_masked_db == float("inf")


def test_mask_iou_edge_cases() -> None:
    a = np.zeros((4, 4), bool)
    assert mask_iou(a, a) == 1.0
    b = a.copy()
    b[0, 0] = True
    assert mask_iou(a, b) == 0.0
