"""The sculpt stage's ``normal-estimator`` adapter: views without normal maps get Marigold normals
(the tiny model here) rotated into the world frame; without the role, the clear error as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.avatar.geometry.sculpt import NormalEstimatorMissing, SculptConfig, resolve_normal_source
from backend.avatar.io.views import View
from backend.models.load import MARIGOLD_TO_OPENCV, estimate_normals, load_normal_estimator
from backend.models.registry import MODELS_FILE_ENV
from protocol.cameras import CameraFrame


def _view(name: str, R: np.ndarray) -> View:
    K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])
    rgba = np.zeros((24, 32, 4), np.float32)
    rgba[4:20, 8:24] = (0.8, 0.4, 0.2, 1.0)
    return View(name, CameraFrame(K, R, np.array([0.0, 0.0, 3.0]), 32, 24), rgba)


def _rot_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_views_without_normals_get_estimated_world_normals(tiny_models: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(MODELS_FILE_ENV, str(tiny_models))
    views = [_view("front", np.eye(3)), _view("side", _rot_y(90.0))]
    assert resolve_normal_source(views, SculptConfig()) == "estimator"
    pipe = load_normal_estimator(device="cpu")
    for v in views:
        assert v.normal is not None and v.normal.shape == (24, 32, 3)
        assert np.allclose(np.linalg.norm(v.normal, axis=-1), 1.0, atol=1e-4)
        # World = R^T (camera, OpenCV axes); the same seed gives the same estimate.
        n_cam = estimate_normals(pipe, v.rgba[..., :3] * v.rgba[..., 3:4], seed=0)
        assert np.allclose(v.normal, n_cam @ v.camera.R.astype(np.float32), atol=1e-5)
    # Marigold's z towards the viewer is OpenCV's -z.
    assert MARIGOLD_TO_OPENCV.tolist() == [1.0, -1.0, -1.0]


def test_views_without_normals_and_no_role_is_the_clear_error(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("AVATAR_STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(NormalEstimatorMissing, match="avatar-studio models download normal-estimator"):
        resolve_normal_source([_view("front", np.eye(3))], SculptConfig())
    assert resolve_normal_source([_view("front", np.eye(3))], SculptConfig(normal_source="none")) == "none"
