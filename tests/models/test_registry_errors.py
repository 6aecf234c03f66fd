"""What a user sees when a model is not there: one clear error naming the role, the model and the
command that provides it; bad paths in a models.toml; ``--models FILE`` honoured by ``models
check`` and by a job on a live server; ``models download`` without a network failing in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.models import load, tiny
from backend.models.registry import (
    MODELS_FILE_ENV,
    ROLES,
    ModelConfigError,
    ModelLoadError,
    ModelMissingError,
    ModelRegistry,
)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "server"))
from server_helpers import ServerProcess  # noqa: E402


@pytest.fixture
def empty_registry(tmp_path: Path) -> ModelRegistry:
    """No models.toml, an empty Hugging Face cache: every role is missing."""
    return ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache")


@pytest.mark.parametrize("role", sorted(load.LOADERS))
def test_missing_role_is_one_error_with_role_model_and_command(
    empty_registry: ModelRegistry, role: str
) -> None:
    with pytest.raises(ModelMissingError) as err:
        load.LOADERS[role](registry=empty_registry, device="cpu")
    # The pipeline loader needs base-diffusion first; every other loader names its own role.
    expected = "base-diffusion" if role == "base-diffusion" else role
    message = str(err.value)
    assert "\n" not in message and not isinstance(err.value, ModelLoadError)
    if ROLES[expected].manual:  # not on the hub (inception): the manual step, not `models download`
        assert err.value.role == expected and f"'{expected}'" in message and f"[models.{expected}]" in message
        return
    assert err.value.role == expected and err.value.model == ROLES[expected].default_hub_id
    assert f"'{expected}'" in message and ROLES[expected].default_hub_id in message
    assert f"`avatar-studio models download {expected}`" in message


def test_smplx_how_to_names_the_license_site(empty_registry: ModelRegistry) -> None:
    with pytest.raises(ModelMissingError, match=r"smpl-x\.is\.tue\.mpg\.de"):
        empty_registry.require("smplx")


def test_models_toml_with_bad_paths(tmp_path: Path) -> None:
    models = tmp_path / "conf" / "models.toml"
    models.parent.mkdir()
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    models.write_text(
        '[models.clip]\npath = "../../../../../../nowhere/clip"\n\n'
        f'[models.vae]\npath = "{a_file}"\n\n'
        f'[models.pose-estimator]\npath = "{empty}"\n'
    )
    registry = ModelRegistry.load(models_file=models, hf_cache=tmp_path / "hf")
    with pytest.raises(ModelMissingError) as err:
        load.load_clip(registry=registry, device="cpu")
    assert "does not exist" in str(err.value) and "nowhere/clip" in str(err.value)
    assert str(models) in str(err.value)  # which file to fix
    with pytest.raises(ModelMissingError, match="is not a folder"):
        load.load_vae(registry=registry, device="cpu")
    # A folder that is there but holds no model: the loader's failure, with role and folder.
    with pytest.raises(ModelLoadError) as err:
        load.load_pose_estimator(registry=registry, device="cpu")
    assert err.value.role == "pose-estimator" and str(empty) in str(err.value)
    assert "avatar-studio models download pose-estimator" in str(err.value)


def test_configured_vae_must_exist_but_default_vae_is_optional(tiny_models: Path, tmp_path: Path) -> None:
    text = tiny_models.read_text().replace('path = "vae"', 'path = "no-such-vae"')
    broken = tiny_models.parent / "broken-vae.toml"
    broken.write_text(text)
    registry = ModelRegistry.load(models_file=broken, hf_cache=tmp_path / "hf")
    with pytest.raises(ModelMissingError, match="'vae'"):
        load.load_controlnet_pipeline(registry=registry, device="cpu")


def test_models_file_that_does_not_exist(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(ModelConfigError, match="does not exist"):
        ModelRegistry.load(models_file=tmp_path / "nope.toml")
    assert cli.main(["models", "check", "--models", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.toml does not exist" in err


def test_models_check_honours_models_file(
    tiny_models: Path, capsys: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv(MODELS_FILE_ENV, raising=False)
    assert cli.main(["models", "check", "--data-dir", str(tmp_path), "--json"]) == 0
    default = {m["role"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert not any(m["present"] for m in default.values())
    # Per command and top-level: the same option.
    for argv in (
        ["models", "check", "--data-dir", str(tmp_path), "--models", str(tiny_models), "--json"],
        ["--models", str(tiny_models), "models", "check", "--data-dir", str(tmp_path), "--json"],
    ):
        monkeypatch.delenv(MODELS_FILE_ENV, raising=False)
        assert cli.main(argv) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["config"] == str(tiny_models)
        by_role = {m["role"]: m for m in report["models"]}
        for role in set(ROLES) - set(tiny.NOT_TINY):
            assert by_role[role]["present"] and by_role[role]["source"] == "path"
            assert Path(by_role[role]["location"]).parent == tiny_models.parent
        assert not by_role["smplx"]["present"]


def test_serve_passes_models_file_to_job_workers(tiny_models: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv(MODELS_FILE_ENV, raising=False)
    server = ServerProcess(tmp_path / "data", "--models", str(tiny_models), workers=1).start()
    try:
        with server.client() as client:
            info = client.wait(client.submit("system.info", {}), timeout=120)
    finally:
        server.stop()
    assert info.state == "succeeded", info.error
    models = info.data["models"]
    assert set(models) == set(ROLES)
    assert all(models[r] == {"present": True, "source": "path"} for r in set(ROLES) - set(tiny.NOT_TINY))
    assert models["smplx"]["present"] is False and info.data["body_model"]["kind"] == "stand-in"


def test_serve_refuses_a_missing_models_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        ServerProcess(tmp_path / "data", "--models", str(tmp_path / "nope.toml"), workers=1).start()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends: connections are refused


def test_download_without_network_fails_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
        "HF_HUB_ETAG_TIMEOUT": "1",
        "HF_HUB_DOWNLOAD_TIMEOUT": "1",
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "AVATAR_STUDIO_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    env.pop(MODELS_FILE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "backend", "models", "download", "controlnet-depth"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: DownloadError: download of lllyasviel/control_v11f1p_sd15_depth")
    assert "'controlnet-depth'" in lines[0] and "again" in lines[0]
    assert not list((tmp_path / "hf").glob("**/*.safetensors"))


def test_download_of_a_licensed_role_says_where_to_get_it(capsys: Any, tmp_path: Path) -> None:
    assert cli.main(["models", "download", "smplx", "--data-dir", str(tmp_path)]) == 2
    assert "smpl-x.is.tue.mpg.de" in capsys.readouterr().err
    assert cli.main(["models", "download", "no-such-role", "--data-dir", str(tmp_path)]) == 2
    assert "unknown model role" in capsys.readouterr().err


def test_make_tiny_cli(tmp_path: Path, capsys: Any) -> None:
    assert cli.main(["models", "make-tiny", str(tmp_path / "tiny"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models_file"] == str(tmp_path / "tiny" / "models.toml")
    assert 0 < report["bytes"] < 16_000_000  # 17 roles of tiny models, ~0.7 MB each
    registry = ModelRegistry.load(models_file=report["models_file"], hf_cache=tmp_path / "hf")
    assert all(r.present for r in registry.check() if r.spec.role not in tiny.NOT_TINY)
