"""The models registry: roles, models.toml, offline resolution (local path, then the HF cache)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.models.registry import (
    ROLES,
    ModelConfigError,
    ModelMissingError,
    ModelRegistry,
    find_in_hf_cache,
)

EXPECTED_ROLES = {
    "base-diffusion",
    "controlnet-openpose",
    "vae",
    "clip-image-encoder",
    "depth-estimator",
    "normal-estimator",
    "mimo-unet",
    "smplx",
}


def _fake_hf_snapshot(cache: Path, hub_id: str, commit: str = "a" * 40, ref: str = "main") -> Path:
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def test_defaults_are_all_missing_with_how_to(tmp_path: Path) -> None:
    registry = ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-cache")
    results = {r.spec.role: r for r in registry.check()}
    assert set(results) == EXPECTED_ROLES == set(ROLES)
    assert not any(r.present for r in results.values())
    assert results["controlnet-openpose"].spec.hub_id == "lllyasviel/control_v11p_sd15_openpose"
    assert (
        "huggingface-cli download lllyasviel/control_v11p_sd15_openpose"
        in results["controlnet-openpose"].how_to
    )
    assert results["smplx"].spec.hub_id is None and "smpl-x.is.tue.mpg.de" in results["smplx"].how_to
    with pytest.raises(ModelMissingError) as err:
        registry.require("vae")
    text = str(err.value)
    assert "'vae'" in text and "stabilityai/sd-vae-ft-mse" in text and "models.toml" in text
    assert err.value.role == "vae" and err.value.model == "stabilityai/sd-vae-ft-mse"


def test_config_local_path_then_hf_cache(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # use the documented layout
    data = tmp_path / "data"
    data.mkdir()
    local_vae = tmp_path / "weights" / "vae"
    local_vae.mkdir(parents=True)
    smplx_dir = tmp_path / "smplx"
    smplx_dir.mkdir()
    (data / "models.toml").write_text(
        f'[models.vae]\npath = "{local_vae}"\n\n'
        '[models.depth-estimator]\nhub_id = "org/depth"\nrevision = "v2"\n\n'
        f'[models.smplx]\npath = "{smplx_dir}"\n\n'
        '[models.mimo-unet]\npath = "relative/unet"\n'
    )
    cache = tmp_path / "hf"
    snapshot = _fake_hf_snapshot(cache, "org/depth", ref="v2")
    base = _fake_hf_snapshot(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", commit="b" * 40)
    registry = ModelRegistry.load(data, hf_cache=cache)
    assert registry.require("vae") == local_vae
    assert registry.resolve("vae").source == "path"
    assert registry.require("depth-estimator") == snapshot
    assert registry.resolve("depth-estimator").source == "hf-cache"
    assert registry.require("base-diffusion") == base  # default hub id, found in the cache
    # smplx: the folder exists but holds no SMPLX_* file yet -> missing; with the file -> present.
    assert not registry.resolve("smplx").present
    (smplx_dir / "SMPLX_NEUTRAL.npz").write_bytes(b"x")
    assert registry.require("smplx") == smplx_dir
    # A relative path is relative to the config file and, when absent, is reported missing.
    mimo = registry.resolve("mimo-unet")
    assert mimo.spec.path == data / "relative" / "unet" and not mimo.present and mimo.spec.hub_id is None


def test_hf_cache_pinned_commit(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    snapshot = _fake_hf_snapshot(tmp_path, "a/b", commit="c" * 40)
    assert find_in_hf_cache("a/b", "c" * 40, tmp_path) == snapshot
    assert find_in_hf_cache("a/b", "main", tmp_path) == snapshot
    assert find_in_hf_cache("a/b", "other-branch", tmp_path) is None
    assert find_in_hf_cache("a/missing", "main", tmp_path) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("[models.unknown-role]\npath = '/x'\n", "unknown model roles"),
        ("[models.vae]\npath = 3\n", "must be a string"),
        ("models = 3\n", "must be a table"),
        ("[models.vae\n", "models.toml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ModelConfigError, match=message):
        ModelRegistry.load(tmp_path)


def test_models_check_cli(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    _fake_hf_snapshot(tmp_path / "hf", "stabilityai/sd-vae-ft-mse")
    assert cli.main(["models", "check", "--data-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_role = {m["role"]: m for m in report["models"]}
    assert set(by_role) == EXPECTED_ROLES
    assert by_role["vae"]["present"] and by_role["vae"]["source"] == "hf-cache"
    assert not by_role["controlnet-openpose"]["present"] and by_role["controlnet-openpose"]["how_to"]
    assert cli.main(["models", "check", "--data-dir", str(tmp_path)]) == 0
    human = capsys.readouterr().out
    assert "vae" in human and "present (hf-cache" in human and "how to provide" in human
