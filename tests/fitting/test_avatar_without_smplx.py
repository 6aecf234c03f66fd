"""A views folder without SMPL-X parameters: the avatar pipeline fits the body itself (one call
site, ``backend/avatar/fitted_body.py``), with the folder's keypoints.json, and writes the fit.

Small stage settings (grid 36, a few iterations, 64 px texture) keep this at the pipeline's call
site rather than the quality of the sculpt, which tests/avatar covers on a given body.
"""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def views_folder(truth, tmp_path_factory):
    from backend.avatar.io.views import View, ViewSet, write_views
    from backend.fitting import write_keypoints
    from backend.fitting.synthetic import render_views
    from protocol.cameras import CameraFrame

    fit_views = render_views(truth, n_views=8, size=128, layout="coco17", keypoint_noise_px=0.5, seed=5)
    folder = tmp_path_factory.mktemp("views_no_smplx")
    views = []
    for v in fit_views:
        rgba = np.zeros((*v.mask.shape, 4), np.float32)
        rgba[..., :3] = 0.6 * v.mask[..., None]
        rgba[..., 3] = v.mask
        cam = CameraFrame(v.K, v.R, v.t, v.mask.shape[1], v.mask.shape[0], 0.05, 50.0)
        views.append(View(name=v.name, camera=cam, rgba=rgba))
    write_views(folder, ViewSet(views=views, smplx={}))
    write_keypoints(folder / "keypoints.json", "coco17", {v.name: v.keypoints for v in fit_views})
    return folder


def test_views_without_smplx_build_an_avatar_on_the_fitted_body(views_folder, truth, tmp_path):
    from backend.avatar.geometry.sculpt import SculptConfig
    from backend.avatar.io.views import read_views
    from backend.avatar.pipeline import AvatarConfig, build_avatar, write_outputs
    from backend.avatar.texture.optimise import TextureConfig
    from backend.fitting import FitConfig, Stage

    free = ("global_orient", "transl", "body_pose", "betas")  # a short schedule: keypoints lead
    stages = (Stage("orient", free[:2], 15, 0.25, 0.03, 1.0, keypoint_sigma=0.5),
              Stage("pose", free[:3], 30, 0.5, 0.03, 0.3, keypoint_sigma=0.3),
              Stage("shape", free, 30, 1.0, 0.02, 0.05))

    views = read_views(views_folder)
    assert views.smplx == {} and views.folder == views_folder
    config = AvatarConfig(
        sculpt=SculptConfig(grid_resolution=32, init_iters=20, refine_iters=3, render_scale=0.5,
                            init_samples=2048, truncation=0.05, normal_source="none"),
        texture=TextureConfig(texture_size=64, iterations=3),
        fit=FitConfig(stages=stages),
    )
    messages = []
    result = build_avatar(views, config, lambda stage, f, m: messages.append((stage, m)))
    assert any("no SMPL-X parameters" in m and "coco17 keypoints" in m for s, m in messages if s == "body")
    fit = result.info["body_fit"]
    assert fit["diagnostics"]["keypoint_orient"] is True
    assert fit["diagnostics"]["mean_iou"] > 0.9  # a short schedule without the raster stage
    # the avatar is rigged on the fitted body: its posed joints are the true ones to ~1 cm
    assert result.joints_posed is not None
    assert np.linalg.norm(result.joints_posed - truth.joints, axis=1).mean() < 0.012
    files = write_outputs(result, tmp_path, config)
    saved = json.loads(files["body_fit.json"].read_text())
    assert set(saved["smplx"]) >= {"betas", "global_orient", "body_pose", "transl"}
    assert saved["smplx"]["body_pose"] == fit["smplx"]["body_pose"]
    assert (tmp_path / "avatar.glb").is_file()


def test_views_with_smplx_are_not_fitted(truth):
    """A manifest with SMPL-X keeps the given body (no fit, no body_fit record)."""
    from backend.avatar.fitted_body import views_body
    from backend.avatar.io.views import ViewSet

    body, record = views_body(ViewSet(views=[], smplx=dict(truth.params)), lambda *a: None)
    assert record is None
    assert np.abs(body.joints - truth.joints).max() < 1e-5


def test_avatar_command_names_the_view_whose_mask_is_empty(views_folder, tmp_path):
    """`avatar --views` on a folder without SMPL-X whose masks are empty: the fit's error, exit 2."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    folder = tmp_path / "views"
    shutil.copytree(views_folder, folder)
    for png in (folder / "rgba").glob("*.png"):
        Image.fromarray(np.zeros((128, 128, 4), np.uint8), "RGBA").save(png)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "backend", "avatar", "--views", str(folder), "--out",
                           str(tmp_path / "out"), "--normals", "none"], cwd=repo, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "avatar: view 0 (view00): the mask is empty" in done.stderr
    assert not (tmp_path / "out" / "avatar.glb").exists()
