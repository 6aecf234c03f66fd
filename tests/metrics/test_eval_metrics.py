"""``avatar-studio eval``'s metrics on known inputs: normal angles of a known rotation, identical
images (SSIM 1, PSNR inf, LPIPS 0), a known offset (PSNR 20 dB), masks, IS of known logits, FID of a
folder with itself, CLIP identity of identical views; and the command itself in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.avatar.eval.metrics import ssim as avatar_ssim
from backend.metrics import generative, normals, paired
from backend.metrics.images import EvalInputError
from backend.models import tiny
from backend.models.load import load_clip, load_inception
from backend.models.load_metrics import load_lpips
from backend.models.registry import ModelRegistry

REPO = Path(__file__).resolve().parents[2]


def _toml(tmp_path: Path, **paths: Path) -> Path:
    toml = tmp_path / "models.toml"
    toml.write_text("".join(f'[models.{role}]\npath = "{path}"\n' for role, path in paths.items()))
    return toml


def _registry(tmp_path: Path, **paths: Path) -> ModelRegistry:
    toml = _toml(tmp_path, **paths)
    return ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "hf", models_file=toml)


def _tilt(n: np.ndarray, deg: float) -> np.ndarray:
    """Each normal rotated by ``deg`` about an axis in its own tangent plane (so by exactly ``deg``);
    zero (background) normals stay zero."""
    t = np.cross(n, [0.0, 1.0, 0.0])
    t /= np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
    a = np.radians(deg)
    return np.cos(a) * n + np.sin(a) * t * (np.linalg.norm(n, axis=-1, keepdims=True) > 0)


def _sphere_normals(size: int = 48) -> np.ndarray:
    """Camera-facing hemisphere normals (H,W,3), 0 outside the disc (background, as clips write)."""
    y, x = (np.mgrid[:size, :size] + 0.5) / size * 2 - 1
    r2 = x**2 + y**2
    n = np.stack([x, y, -np.sqrt(np.clip(1 - r2, 0, 1))], -1)
    n[r2 >= 0.95] = 0
    return n


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def test_a_known_rotation_of_the_normals_gives_its_angle(tmp_path: Path) -> None:
    gt = _sphere_normals()
    errors = normals.angular_error(_tilt(gt, 20), gt)
    assert errors.size == int((np.linalg.norm(gt, axis=-1) > 0).sum())  # the background is not scored
    assert np.allclose(errors, 20.0, atol=1e-6)
    acc = normals.summarise(errors, 1)
    assert (acc.within_11_25, acc.within_22_5, acc.within_30) == (0.0, 100.0, 100.0)
    # .npy files (a clips camera's (F,H,W,3) normal.npy) and a mask on the left half
    (tmp_path / "gt").mkdir()
    np.save(tmp_path / "gt" / "cam.npy", np.stack([gt, gt]))
    (tmp_path / "pred").mkdir()
    left = np.zeros(gt.shape[:2], bool)
    left[:, :24] = True
    pred = _tilt(gt, 20)
    pred[~left] = _tilt(gt, 45)[~left]  # worse on the right, masked out below
    np.save(tmp_path / "pred" / "cam.npy", np.stack([pred, pred]).astype(np.float16))
    _write_png(tmp_path / "masks" / "cam.png", left[..., None].repeat(3, -1).astype(float))
    acc = normals.normal_accuracy_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "masks")
    assert acc.mean_deg == pytest.approx(20.0, abs=0.1) and acc.images == 2  # float16: ~0.05 degrees
    unmasked = normals.normal_accuracy_folders(tmp_path / "pred", tmp_path / "gt")
    assert 25 < unmasked.mean_deg < 45
    assert unmasked.within_30 == pytest.approx(100 * acc.pixels / unmasked.pixels)


def test_png_normal_maps_of_the_views_format(tmp_path: Path) -> None:
    gt = _sphere_normals()
    alpha = (np.linalg.norm(gt, axis=-1) > 0).astype(np.uint8) * 255
    for name, n in (("gt", gt), ("pred", _tilt(gt, 30))):
        rgba = np.dstack([((n + 1) / 2 * 255 + 0.5).astype(np.uint8), alpha])
        (tmp_path / name).mkdir()
        Image.fromarray(rgba, "RGBA").save(tmp_path / name / "front.png")
    acc = normals.normal_accuracy_folders(tmp_path / "pred", tmp_path / "gt")
    assert acc.mean_deg == pytest.approx(30.0, abs=0.7)  # 8-bit quantisation
    assert acc.pixels == int((alpha > 0).sum())


def test_identical_images_ssim_one_psnr_inf_and_a_known_offset(tmp_path: Path) -> None:
    img = np.random.default_rng(0).random((40, 40, 3)) * 0.8
    assert paired.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert paired.ssim(img, img + 0.1) == pytest.approx(avatar_ssim(img, img + 0.1), abs=1e-12)
    for i in range(3):
        _write_png(tmp_path / "gt" / f"{i:04d}.png", img)
        _write_png(tmp_path / "same" / f"{i:04d}.png", img)
        _write_png(tmp_path / "off" / f"{i:04d}.png", (np.round(img * 255) + 25) / 255)  # +25/255
    same = paired.paired_scores(tmp_path / "same", tmp_path / "gt")
    assert same.psnr == float("inf") and same.ssim == pytest.approx(1.0) and same.pairs == 3
    assert same.lpips is None and not same.masked
    off = paired.paired_scores(tmp_path / "off", tmp_path / "gt")
    assert off.psnr == pytest.approx(20 * np.log10(255 / 25), abs=1e-6)  # float32 decode and off.ssim < 1


def test_masks_restrict_psnr_and_ssim_to_the_region(tmp_path: Path) -> None:
    img = np.random.default_rng(1).random((40, 40, 3))
    bad = img.copy()
    bad[:, 20:] = 1 - bad[:, 20:]
    mask = np.zeros((40, 40, 3))
    mask[:, :10] = 1  # far enough from the change for the 11x11 window
    _write_png(tmp_path / "gt" / "a.png", img)
    _write_png(tmp_path / "pred" / "a.png", bad)
    _write_png(tmp_path / "masks" / "a.png", mask)
    scores = paired.paired_scores(tmp_path / "pred", tmp_path / "gt", tmp_path / "masks")
    assert scores.psnr == float("inf") and scores.ssim == pytest.approx(1.0) and scores.masked
    assert paired.paired_scores(tmp_path / "pred", tmp_path / "gt").psnr < 10


def test_paired_lpips_zero_for_identical_and_positive_for_noise(tmp_path: Path) -> None:
    folder = tiny.save_random_lpips_backbone(tmp_path / "lpips").parent
    metric = load_lpips(registry=_registry(tmp_path, lpips=folder), device="cpu")
    img = np.random.default_rng(2).random((64, 64, 3))
    _write_png(tmp_path / "gt" / "a.png", img)
    _write_png(tmp_path / "same" / "a.png", img)
    _write_png(tmp_path / "noisy" / "a.png", img + np.random.default_rng(3).normal(0, 0.2, img.shape))
    same = paired.paired_scores(tmp_path / "same", tmp_path / "gt", lpips=metric)
    assert same.lpips == pytest.approx(0, abs=1e-7)
    assert paired.paired_scores(tmp_path / "noisy", tmp_path / "gt", lpips=metric).lpips > 1e-4


def test_unpaired_mismatched_or_unreadable_inputs_are_clear_errors(tmp_path: Path) -> None:
    _write_png(tmp_path / "gt" / "a.png", np.zeros((8, 8, 3)))
    _write_png(tmp_path / "pred" / "b.png", np.zeros((8, 8, 3)))
    with pytest.raises(EvalInputError, match="no match for b"):
        paired.paired_scores(tmp_path / "pred", tmp_path / "gt")
    _write_png(tmp_path / "pred2" / "a.png", np.zeros((9, 8, 3)))
    with pytest.raises(EvalInputError, match="sizes differ"):
        paired.paired_scores(tmp_path / "pred2", tmp_path / "gt")
    (tmp_path / "pred3").mkdir()
    (tmp_path / "pred3" / "a.png").write_bytes(b"not a png")
    with pytest.raises(EvalInputError, match="not a readable image"):
        paired.paired_scores(tmp_path / "pred3", tmp_path / "gt")
    with pytest.raises(EvalInputError, match="is not a folder"):
        paired.paired_scores(tmp_path / "nowhere", tmp_path / "gt")
    (tmp_path / "n").mkdir()
    np.save(tmp_path / "n" / "a.npy", np.zeros((4, 4, 3), np.int64))
    with pytest.raises(EvalInputError, match="float normals"):
        normals.normal_accuracy_folders(tmp_path / "n", tmp_path / "n")
    np.save(tmp_path / "n" / "a.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(EvalInputError, match=r"not a readable \.npy"):
        normals.normal_accuracy_folders(tmp_path / "n", tmp_path / "n")


def test_inception_score_of_known_logits() -> None:
    assert generative.inception_score(torch.zeros(40, 10), splits=4)[0] == pytest.approx(1.0)
    # 8 classes, 5 confident images each: p(y|x) one-hot, p(y) uniform -> IS = 8
    logits = torch.full((40, 1008), -50.0, dtype=torch.float64)  # exp(-50): ~0, not 0 (log q)
    logits[torch.arange(40), torch.arange(40) % 8] = 0
    assert generative.inception_score(logits, splits=1) == pytest.approx((8.0, 0.0), abs=1e-6)
    with pytest.raises(EvalInputError, match="splits"):
        generative.inception_score(logits, splits=41)


@pytest.fixture(scope="module")
def inception_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_random_inception(tmp_path_factory.mktemp("inception")).parent


def _image_set(folder: Path, seed: int, n: int = 4, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = np.linspace(0, 1, size)[None, :, None] * rng.random(3)
        _write_png(folder / f"{i:03d}.png", base + 0.3 * rng.random((size, size, 3)) * (seed + 1) % 1.0)
    return folder


def test_fid_of_a_folder_with_itself_is_zero_and_is360_runs(tmp_path: Path, inception_dir: Path) -> None:
    extractor = load_inception(registry=_registry(tmp_path, inception=inception_dir), device="cpu")
    a, b = _image_set(tmp_path / "a", 0), _image_set(tmp_path / "b", 5)
    same = generative.fid_kid_folders(extractor, a, a, kid_subsets=5)
    other = generative.fid_kid_folders(extractor, a, b, kid_subsets=5)
    assert abs(same["fid"]) < 1e-3 * max(other["fid"], 1e-9) and other["fid"] > 0
    assert same["real"] == same["fake"] == 4
    scores = generative.is360_folder(extractor, a, splits=10)
    assert scores["splits"] == 4 and scores["images"] == 4 and scores["is_mean"] >= 1.0


def test_identity_of_identical_views_is_one(tmp_path: Path) -> None:
    clip = load_clip(registry=_registry(tmp_path, clip=tiny.save_tiny_open_clip(tmp_path / "clip")),
                     device="cpu")
    img = np.random.default_rng(4).random((32, 32, 3))
    for view in range(3):
        _write_png(tmp_path / "same" / f"{view}.png", img)
        _write_png(tmp_path / "avatars" / "x" / f"{view}.png", img)
        other = np.random.default_rng(view).random((32, 32, 3))
        _write_png(tmp_path / "avatars" / "y" / f"{view}.png", other)
    assert generative.identity_folder(clip, tmp_path / "same")["identity"] == pytest.approx(1.0, abs=1e-5)
    two = generative.identity_folder(clip, tmp_path / "avatars")
    assert two["avatars"] == 2 and two["views"] == 6 and two["identity"] < 1 - 1e-6


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AVATAR_STUDIO_DATA_DIR": str(tmp_path / "data"),
           "HF_HUB_CACHE": str(tmp_path / "hf")}
    env.pop("AVATAR_STUDIO_MODELS", None)
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=600)


def test_cli_eval_json_table_and_missing_lpips_weights(tmp_path: Path, inception_dir: Path) -> None:
    img = np.random.default_rng(5).random((64, 64, 3))
    _write_png(tmp_path / "gt" / "a.png", img)
    _write_png(tmp_path / "pred" / "a.png", np.clip(img + 0.05, 0, 1))
    gt = _sphere_normals()
    for name, n in (("gt", gt), ("pred", _tilt(gt, 20))):
        (tmp_path / f"n_{name}").mkdir()
        np.save(tmp_path / f"n_{name}" / "a.npy", n)
    missing = _cli(tmp_path, "eval", "--paired", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json")
    assert missing.returncode == 2 and "'lpips'" in missing.stderr and "--no-lpips" in missing.stderr
    assert missing.stdout == ""
    lpips_dir = tiny.save_random_lpips_backbone(tmp_path / "lpips").parent
    toml = _toml(tmp_path, lpips=lpips_dir, inception=inception_dir)
    done = _cli(tmp_path, "--models", str(toml), "eval", "--paired", str(tmp_path / "pred"),
                str(tmp_path / "gt"), "--normals", str(tmp_path / "n_pred"), str(tmp_path / "n_gt"),
                "--is360", str(tmp_path / "gt"), "--is-splits", "1", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["paired"]["pairs"] == 1 and out["paired"]["lpips"] > 0 and 25 < out["paired"]["psnr"] < 27
    assert out["normals"]["mean_deg"] == pytest.approx(20.0, abs=1e-4)
    assert out["is360"]["images"] == 1 and out["is360"]["is_mean"] == pytest.approx(1.0)
    table = _cli(tmp_path, "eval", "--paired", str(tmp_path / "pred"), str(tmp_path / "gt"), "--no-lpips")
    assert table.returncode == 0 and "psnr" in table.stdout and "ssim" in table.stdout
    assert _cli(tmp_path, "eval").returncode == 2
