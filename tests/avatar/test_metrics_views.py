import json

import numpy as np
import pytest

from backend.avatar.eval.metrics import geometry_scores, psnr, ssim
from backend.avatar.io.views import View, ViewSet, ViewsFormatError, read_views, write_views
from protocol.cameras import CameraFrame


def _box(size: float = 1.0):
    v = np.array([[x, y, z] for x in (0, size) for y in (0, size) for z in (0, size)], float)
    f = np.array(
        [
            [0, 1, 3],
            [0, 3, 2],
            [4, 6, 7],
            [4, 7, 5],
            [0, 4, 5],
            [0, 5, 1],
            [2, 3, 7],
            [2, 7, 6],
            [0, 2, 6],
            [0, 6, 4],
            [1, 5, 7],
            [1, 7, 3],
        ]
    )
    return v, f


def test_chamfer_and_normals():
    v, f = _box()
    same = geometry_scores(v, f, v, f, samples=20000)
    assert same.chamfer < 0.01 and same.normal_consistency > 0.97
    moved = geometry_scores(v + np.array([0.0, 0.05, 0.0]), f, v, f, samples=20000)
    assert 0.02 < moved.chamfer < 0.06


def test_psnr_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3))
    assert psnr(a, a) == float("inf")
    assert psnr(a, np.clip(a + 0.1, 0, 1)) < 21
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((32, 32, 3))) < 0.2


def test_views_round_trip(tmp_path):
    cam = CameraFrame(
        K=np.array([[50.0, 0, 16], [0, 50, 16], [0, 0, 1]]),
        R=np.eye(3),
        t=np.array([0, 0, 3.0]),
        width=32,
        height=32,
    )
    rgba = np.zeros((32, 32, 4), np.float32)
    rgba[8:24, 8:24] = [1, 0.5, 0.25, 1]
    normal = np.zeros((32, 32, 3), np.float32)
    normal[..., 2] = -1
    write_views(
        tmp_path,
        ViewSet(
            [View("a", cam, rgba, normal), View("b", cam, rgba, None, "test")], smplx={"betas": np.zeros(10)}
        ),
    )
    back = read_views(tmp_path)
    assert [v.name for v in back.views] == ["a", "b"]
    assert np.allclose(back.views[0].rgba, rgba, atol=1 / 255)
    assert np.allclose(back.views[0].normal[12, 12], [0, 0, -1], atol=0.01)
    assert back.views[1].normal is None and back.views[1].split == "test"
    assert back.smplx["betas"] == [0.0] * 10
    assert np.allclose(back.views[0].camera.centre, [0, 0, -3])


def test_views_errors(tmp_path):
    with pytest.raises(ViewsFormatError, match=r"no views\.json"):
        read_views(tmp_path)
    (tmp_path / "views.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ViewsFormatError, match="format"):
        read_views(tmp_path)
