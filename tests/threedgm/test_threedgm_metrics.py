"""FID / KID (torch-fidelity with the ``inception`` role), PSNR / SSIM, CLIP identity consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.models.load import load_clip, load_inception
from backend.models.registry import (
    INCEPTION_FILE,
    INCEPTION_URL,
    ModelLoadError,
    ModelMissingError,
    ModelRegistry,
)
from backend.threedgm import metrics


def _registry(tmp_path: Path, **paths: Path) -> ModelRegistry:
    toml = tmp_path / "models.toml"
    toml.write_text("".join(f'[models.{role}]\npath = "{path}"\n' for role, path in paths.items()))
    return ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache", models_file=toml)


def _gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_gives_its_square() -> None:
    a = _gaussian(3000, 16, 0)
    assert abs(metrics.fid_from_features(a, a)) < 1e-6
    shift = torch.linspace(-1, 1, 16, dtype=torch.float64)
    # same covariance, means apart by the shift: FID = |shift|^2 exactly
    assert metrics.fid_from_features(a, a + shift) == pytest.approx(float(shift.square().sum()), rel=1e-6)
    # scaled by 2: Σ2 = 4 Σ1, so FID = |μ1 - μ2|^2 + tr(Σ1) + 4 tr(Σ1) - 4 tr(Σ1)
    cov = np.cov(a.numpy(), rowvar=False)
    expect = float(a.mean(0).square().sum()) + np.trace(cov)
    assert metrics.fid_from_features(a, 2 * a) == pytest.approx(expect, rel=1e-6)
    # two independent draws of one Gaussian: only the finite-sample bias (~d²/2n), far below a unit shift
    b = _gaussian(3000, 16, 1)
    assert metrics.fid_from_features(a, b) < 0.1 < 0.9 < metrics.fid_from_features(a, b + 1 / 4)


def test_kid_near_zero_for_one_distribution_positive_for_a_shift() -> None:
    a, b = _gaussian(400, 16, 0), _gaussian(400, 16, 1)
    mean_same, _ = metrics.kid_from_features(a, b, subsets=20, subset_size=200)
    mean_self, _ = metrics.kid_from_features(a, a, subsets=20, subset_size=200)
    mean_shift, _ = metrics.kid_from_features(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(mean_same) < 0.05 and abs(mean_self) < 0.05 and mean_shift > 10 * max(abs(mean_same), 1e-3)


def test_psnr_ssim_of_identical_and_shifted_images() -> None:
    img = np.random.default_rng(0).random((24, 24, 3))
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12) and metrics.psnr(img, img) == float("inf")
    assert metrics.psnr(img, np.clip(img, 0, 1) * 0 + img + 0.1) == pytest.approx(20.0, abs=1e-9)


def test_missing_inception_weights_name_the_role_and_the_manual_step(tmp_path: Path) -> None:
    registry = ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache")
    with pytest.raises(ModelMissingError) as err:
        load_inception(registry=registry, device="cpu")
    message = str(err.value)
    assert err.value.role == "inception" and "'inception'" in message
    assert INCEPTION_URL in message and "[models.inception]" in message and "\n" not in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=INCEPTION_FILE):
        load_inception(registry=_registry(tmp_path, inception=empty), device="cpu")


def test_a_weights_file_holding_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    torch.save({"conv": Path("not a tensor")}, folder / INCEPTION_FILE)  # needs a full unpickle
    with pytest.raises(ModelLoadError, match="inception"):
        load_inception(registry=_registry(tmp_path, inception=folder), device="cpu")


def test_fid_through_random_inception_weights_in_the_real_format(tmp_path: Path) -> None:
    from backend.models.tiny import save_random_inception

    path = save_random_inception(tmp_path / "inception")
    assert path.name == INCEPTION_FILE
    extractor = load_inception(registry=_registry(tmp_path, inception=path.parent), device="cpu")
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    feats = metrics.inception_features(extractor, images, batch=2)
    assert feats.shape == (3, 2048) and torch.isfinite(feats).all()
    assert not torch.allclose(feats, metrics.inception_features(extractor, -images[:1]).expand(3, -1))
    # a set with itself through the whole path (features, statistics, formula): zero
    assert metrics.fid(extractor, images, images) == pytest.approx(0.0, abs=1e-6)


def test_identity_consistency_with_the_clip_role(tmp_path: Path) -> None:
    from backend.models.tiny import save_tiny_open_clip

    save_tiny_open_clip(tmp_path / "clip")
    clip = load_clip(registry=_registry(tmp_path, clip=tmp_path / "clip"), device="cpu")
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    assert metrics.identity_consistency(clip, [[a, a, a]]) == pytest.approx(1.0, abs=1e-5)
    mixed = metrics.identity_consistency(clip, [[a, b]])
    assert mixed < 1.0 - 1e-4
    assert metrics.identity_consistency(clip, [[a, a], [a, b]]) == pytest.approx((1 + mixed) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="two views"):
        metrics.identity_consistency(clip, [[a]])
