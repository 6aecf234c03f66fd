"""The ``lpips`` role: LPIPS (the ``lpips`` package) with its backbone read from a local torchvision
file; random backbone weights written here in torchvision's format (never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from backend.models import tiny
from backend.models.load import LOADERS
from backend.models.load_metrics import load_lpips
from backend.models.registry import LPIPS_FILES, LPIPS_URL, ModelLoadError, ModelMissingError, ModelRegistry


def _registry(tmp_path: Path, **paths: Path) -> ModelRegistry:
    toml = tmp_path / "models.toml"
    toml.write_text("".join(f'[models.{role}]\npath = "{path}"\n' for role, path in paths.items()))
    return ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache", models_file=toml)


@pytest.fixture(scope="module")
def alex_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.save_random_lpips_backbone(tmp_path_factory.mktemp("lpips")).parent


def _images(seed: int, n: int = 2, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


def test_lpips_is_zero_for_identical_images_grows_with_noise_and_is_symmetric(
    tmp_path: Path, alex_folder: Path
) -> None:
    metric = load_lpips(registry=_registry(tmp_path, lpips=alex_folder), device="cpu")
    assert metric.net == "alex" and LOADERS["lpips"] is load_lpips
    x = _images(0)
    assert torch.allclose(metric.distance(x, x), torch.zeros(2), atol=1e-7)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=x.shape).astype(np.float32)
    d = [float(metric.distance(x, np.clip(x + s * noise, 0, 1)).mean()) for s in (0.02, 0.1, 0.3)]
    assert 0 < d[0] < d[1] < d[2]
    y = np.clip(x + 0.2 * noise, 0, 1)
    assert torch.allclose(metric.distance(x, y), metric.distance(y, x), atol=1e-6)
    # uint8 HWC images and float NCHW tensors are the same images to it
    u8 = (x * 255 + 0.5).astype(np.uint8)
    as_t = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(metric.distance(u8, y), metric.distance(as_t, y), atol=1e-6)


def test_masked_lpips_sees_only_the_region(tmp_path: Path, alex_folder: Path) -> None:
    metric = load_lpips(registry=_registry(tmp_path, lpips=alex_folder), device="cpu")
    x = _images(2, n=1, size=96)
    y = x.copy()
    y[:, :, 64:] = np.random.default_rng(3).random(y[:, :, 64:].shape)  # right third changed
    left = np.zeros((96, 96), bool)
    left[:, :24] = True  # far from the change (the receptive field reaches a little)
    right = ~left
    right[:, :64] = False
    assert float(metric.distance(x, y, mask=left)) < 0.2 * float(metric.distance(x, y, mask=right))
    assert torch.allclose(metric.distance(x, x, mask=right), torch.zeros(1), atol=1e-7)


def test_the_package_linear_layers_and_the_files_backbone_are_what_runs(
    tmp_path: Path, alex_folder: Path
) -> None:
    import lpips

    metric = load_lpips(registry=_registry(tmp_path, lpips=alex_folder), device="cpu")
    saved = torch.load(alex_folder / LPIPS_FILES["alex"], weights_only=True)
    assert torch.equal(metric.model.net.slice1[0].weight, saved["features.0.weight"])
    assert torch.equal(getattr(metric.model.net.slice5, "10").bias, saved["features.10.bias"])
    shipped_file = Path(lpips.__file__).parent / "weights/v0.1/alex.pth"
    shipped = torch.load(shipped_file, map_location="cpu", weights_only=True)
    assert torch.equal(metric.model.lin0.model[1].weight, shipped["lin0.model.1.weight"])


def test_vgg_backbone_when_only_its_file_is_there(tmp_path: Path) -> None:
    folder = tiny.save_random_lpips_backbone(tmp_path / "vgg", net="vgg").parent
    metric = load_lpips(registry=_registry(tmp_path, lpips=folder), device="cpu")
    x = _images(4, n=1, size=48)
    assert metric.net == "vgg" and float(metric.distance(x, x)) == pytest.approx(0.0, abs=1e-7)


def test_missing_lpips_weights_name_the_role_and_the_manual_step(tmp_path: Path) -> None:
    registry = ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache")
    with pytest.raises(ModelMissingError) as err:
        load_lpips(registry=registry, device="cpu")
    message = str(err.value)
    assert err.value.role == "lpips" and "'lpips'" in message and "\n" not in message
    assert LPIPS_URL in message and "[models.lpips]" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=LPIPS_FILES["alex"]):
        load_lpips(registry=_registry(tmp_path, lpips=empty), device="cpu")


def test_a_wrong_or_hostile_backbone_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    torch.save({"features.0.weight": torch.zeros(3)}, folder / LPIPS_FILES["alex"])  # layers missing
    with pytest.raises(ModelLoadError, match="lpips"):
        load_lpips(registry=_registry(tmp_path, lpips=folder), device="cpu")
    torch.save({"features.0.weight": Path("code")}, folder / LPIPS_FILES["alex"])  # needs a full unpickle
    with pytest.raises(ModelLoadError, match="lpips"):
        load_lpips(registry=_registry(tmp_path, lpips=folder), device="cpu")
    features = torchvision.models.alexnet().features.state_dict()
    state = {f"features.{k}": v for k, v in features.items()}
    state["features.3.weight"] = torch.zeros(7, 7, 1, 1)  # wrong shape
    torch.save(state, folder / LPIPS_FILES["alex"])
    with pytest.raises(ModelLoadError, match="lpips"):
        load_lpips(registry=_registry(tmp_path, lpips=folder), device="cpu")
