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
    smplx_model_file,
)

# Only roles some code loads (backend/models/load.py; issue 12): roles nothing consumes are dropped.
EXPECTED_ROLES = {
    "base-diffusion", "controlnet-openpose", "controlnet-depth", "controlnet-normal", "vae", "clip",
    "normal-estimator", "pose-estimator", "smplx", "inception", "lpips",
    # the neural insertion route (backend/mimo, docs/mimo.md)
    "mimo-denoising-unet", "mimo-reference-unet", "mimo-motion-module", "mimo-pose-guider",
    "mimo-image-encoder",
    "person-segmentation", "depth-estimator", "inpainting",  # footage decomposition (issue 13)
}
MARIGOLD = "prs-eth/marigold-normals-v1-1"


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
    assert results["normal-estimator"].spec.hub_id == MARIGOLD
    assert "`avatar-studio models download normal-estimator`" in results["normal-estimator"].how_to
    assert results["smplx"].spec.hub_id is None and "smpl-x.is.tue.mpg.de" in results["smplx"].how_to
    with pytest.raises(ModelMissingError) as err:
        registry.require("normal-estimator")
    text = str(err.value)
    assert "'normal-estimator'" in text and MARIGOLD in text and "models.toml" in text
    assert err.value.role == "normal-estimator" and err.value.model == MARIGOLD


def test_config_local_path_then_hf_cache(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # use the documented layout
    data = tmp_path / "data"
    data.mkdir()
    local = tmp_path / "weights" / "normals"
    local.mkdir(parents=True)
    smplx_dir = tmp_path / "smplx"
    smplx_dir.mkdir()
    (data / "models.toml").write_text(
        f'[models.normal-estimator]\npath = "{local}"\n\n[models.smplx]\npath = "{smplx_dir}"\n'
    )
    registry = ModelRegistry.load(data, hf_cache=tmp_path / "hf")
    assert registry.require("normal-estimator") == local
    assert registry.resolve("normal-estimator").source == "path"
    # smplx: the folder exists but holds no SMPLX_* .npz yet -> missing; a .pkl in the folder is
    # not used (a pickle runs code: only a models.toml naming the file itself selects one).
    assert not registry.resolve("smplx").present
    (smplx_dir / "SMPLX_NEUTRAL.pkl").write_bytes(b"x")
    assert not registry.resolve("smplx").present
    (smplx_dir / "SMPLX_NEUTRAL.npz").write_bytes(b"x")
    assert registry.require("smplx") == smplx_dir
    assert smplx_model_file(smplx_dir, "neutral") == (smplx_dir / "SMPLX_NEUTRAL.npz", False)
    assert smplx_model_file(smplx_dir, "male") is None
    assert smplx_model_file(smplx_dir / "SMPLX_NEUTRAL.pkl", "male") == (
        smplx_dir / "SMPLX_NEUTRAL.pkl",
        True,
    )
    # The hub id of a role found in the cache; a relative path is relative to the config file.
    (data / "models.toml").write_text('[models.normal-estimator]\nhub_id = "org/normals"\nrevision = "v2"\n')
    snapshot = _fake_hf_snapshot(tmp_path / "hf", "org/normals", ref="v2")
    registry = ModelRegistry.load(data, hf_cache=tmp_path / "hf")
    assert registry.require("normal-estimator") == snapshot
    assert registry.resolve("normal-estimator").source == "hf-cache"
    (data / "models.toml").write_text('[models.normal-estimator]\npath = "relative/normals"\n')
    found = ModelRegistry.load(data, hf_cache=tmp_path / "hf").resolve("normal-estimator")
    assert (
        found.spec.path == data / "relative" / "normals" and not found.present and found.spec.hub_id is None
    )


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
        ("[models.smplx]\npath = 3\n", "must be a string"),
        ("[models.segment-anything]\npath = '/x'\n", "unknown model roles"),  # no loader: no role
        ("models = 3\n", "must be a table"),
        ("[models.smplx\n", "models.toml"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ModelConfigError, match=message):
        ModelRegistry.load(tmp_path)


def test_models_check_cli(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    _fake_hf_snapshot(tmp_path / "hf", MARIGOLD)
    assert cli.main(["models", "check", "--data-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_role = {m["role"]: m for m in report["models"]}
    assert set(by_role) == EXPECTED_ROLES
    assert by_role["normal-estimator"]["present"] and by_role["normal-estimator"]["source"] == "hf-cache"
    assert not by_role["smplx"]["present"] and by_role["smplx"]["how_to"]
    assert cli.main(["models", "check", "--data-dir", str(tmp_path)]) == 0
    human = capsys.readouterr().out
    assert "normal-estimator" in human and "present (hf-cache" in human and "how to provide" in human
