"""Sampling and PTI inversion of a tiny 3DGM run trained for a few steps in the test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.avatar.io.views import read_views
from backend.threedgm.config import TINY
from backend.threedgm.dataset import collate
from backend.threedgm.generator import BodyBatch
from backend.threedgm.invert import InversionConfig, Target, invert, psnr, ssim
from backend.threedgm.sample import (
    CheckpointError,
    extract_mesh,
    load_run,
    mean_w,
    pose_mesh,
    sample_avatar,
    write_sample,
)


@pytest.fixture(scope="module")
def run(tiny_run: Path):
    return load_run(tiny_run)


def test_sampling_is_deterministic_for_a_seed(run) -> None:
    a = sample_avatar(run, seed=3, truncation=0.7, views=3)
    b = sample_avatar(run, seed=3, truncation=0.7, views=3)
    c = sample_avatar(run, seed=4, truncation=0.7, views=3)
    assert a.images.shape == (3, 3, TINY.generator.out_res, TINY.generator.out_res)
    assert torch.equal(a.images, b.images) and torch.equal(a.w, b.w)
    assert not torch.equal(a.w, c.w)
    # the views differ (a ring around the body), the avatar is one w
    assert (a.images[0] - a.images[1]).abs().mean() > 1e-3
    # the silhouette lies on the body: some opacity, far from all of the image
    assert 0.02 < float(a.masks.mean()) < 0.8


def test_truncation_zero_is_the_mean_avatar(run) -> None:
    a = sample_avatar(run, seed=1, truncation=0.0, views=2)
    b = sample_avatar(run, seed=2, truncation=0.0, views=2)
    assert torch.allclose(a.w, b.w) and torch.allclose(a.images, b.images, atol=1e-6)
    from backend.threedgm.sample import _batch, ring_cameras

    _, _, _, cond = _batch(ring_cameras(a.body, 2, run.G.cfg.out_res), a.body, run.G.cfg.out_res,
                           torch.device("cpu"))
    assert torch.allclose(a.w[0], mean_w(run.G, cond[0]), atol=1e-6)
    # psi interpolates: psi = 0.5 lies half way between the mean and the psi = 1 latent
    full, half = sample_avatar(run, seed=1, truncation=1.0), sample_avatar(run, seed=1, truncation=0.5)
    assert torch.allclose(half.w, (a.w + full.w) / 2, atol=1e-5)


def test_extracted_mesh_lies_around_the_body(run) -> None:
    s = sample_avatar(run, seed=0, truncation=0.7, views=2)
    mesh = extract_mesh(run.G, s.w, s.body.rest_verts, resolution=40)
    assert len(mesh.vertices) > 100 and len(mesh.faces) > 100
    assert mesh.faces.max() < len(mesh.vertices)
    # outward faces: the signed volume of the closed surface is positive
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    assert np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6 > 0.01
    rest = s.body.rest_verts.numpy()
    lo, hi = rest.min(0), rest.max(0)
    assert (mesh.vertices >= lo - 0.15).all() and (mesh.vertices <= hi + 0.15).all()
    # most of the surface is near the body (the density fades beyond the shell)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(rest).query(mesh.vertices)
    assert np.median(dist) < 0.15
    posed = pose_mesh(mesh, s.body, run.template)
    body = s.body.verts.numpy()
    d_posed, _ = cKDTree(body).query(posed)
    assert np.median(d_posed) < 0.15 and posed.shape == mesh.vertices.shape


def test_write_sample_gives_a_views_folder(run, tmp_path: Path) -> None:
    s = sample_avatar(run, seed=0, truncation=0.7, views=4)
    files = write_sample(s, run, tmp_path, size=64, mesh_resolution=32, info={"seed": 0})
    views = read_views(files["views"])
    assert len(views.views) == 4 and views.views[0].rgba.shape == (64, 64, 4)
    assert views.smplx["body_pose"] and views.extra["threedgm"]["seed"] == 0
    assert 0 < views.views[0].mask.mean() < 0.9
    assert (tmp_path / "mesh.obj").stat().st_size > 1000


def test_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a 3DGM run"):
        load_run(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"junk")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_run(tmp_path)


def test_ssim_of_identical_images_is_one() -> None:
    x = torch.rand(1, 3, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(x, torch.rand(1, 3, 32, 32))) < 0.2


def test_pti_inverts_a_training_view(run, data) -> None:
    item = collate([data[0]])
    target = Target(item["image"], item["mask"], item["K"], item["R"], item["t"], item["cond"],
                    BodyBatch(item["verts"], item["transforms"], item["root"]))
    before = {k: v.clone() for k, v in run.G.state_dict().items()}
    with torch.no_grad():
        start = psnr(run.G.synthesize(mean_w(run.G, target.cond[0])[None], target.K, target.R, target.t,
                                      target.body)["image"], target.image)
    result = invert(run.G, target, InversionConfig(w_steps=60, tune_steps=100))
    # the bar on the view inverted, whole image; the person's pixels alone are reported too
    assert result.psnr >= 25.0, (start, result.psnr_pivot, result.psnr, result.psnr_person)
    assert result.psnr > result.psnr_pivot > start
    assert result.losses[-1] < result.losses[0]
    # the given generator is left as it was; the tuned copy differs
    assert all(torch.equal(before[k], v) for k, v in run.G.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.G.state_dict().items())
