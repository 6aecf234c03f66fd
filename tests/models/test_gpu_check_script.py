"""scripts/gpu_check.sh (not CI: real weights on CUDA) fails clearly before loading anything when a
role it needs is missing or there is no CUDA, and its measuring path runs (``--allow-cpu`` on the
tiny models: the job's stages, seconds, VRAM "n/a")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def run_script(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AVATAR_STUDIO_MODELS")}
    env.update(HF_HUB_CACHE=str(tmp_path / "empty-hf-cache"), AVATAR_STUDIO_BACKEND_PYTHON=sys.executable,
               AVATAR_STUDIO_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(tmp_path))


def test_missing_roles_are_named_with_their_download_command(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text("# no roles configured, an empty Hugging Face cache\n")
    out = run_script(tmp_path, "--models", str(models), "--conditions", "pose,depth")
    assert out.returncode == 2, out.stdout + out.stderr
    for role in ("base-diffusion", "controlnet-openpose", "controlnet-depth"):
        assert f"gpu_check: missing role {role!r}" in out.stderr, out.stderr
        assert f"avatar-studio models download {role}" in out.stderr
    assert "controlnet-normal" not in out.stderr  # only the roles this run reads
    assert out.stdout == ""  # nothing measured


def test_one_missing_role_among_present_ones(tmp_path: Path, tiny_models: Path) -> None:
    models = tmp_path / "models.toml"
    folder = tiny_models.parent / "controlnet-openpose"
    assert folder.is_dir()
    models.write_text(f'[models.controlnet-openpose]\npath = "{folder}"\n')
    out = run_script(tmp_path, "--models", str(models), "--allow-cpu")
    assert out.returncode == 2
    assert "missing role 'base-diffusion'" in out.stderr and "controlnet-openpose" not in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA message needs a machine without CUDA")
def test_no_cuda_is_said_when_the_weights_are_there(tmp_path: Path, tiny_models: Path) -> None:
    out = run_script(tmp_path, "--models", str(tiny_models))
    assert out.returncode == 2
    assert "gpu_check: no CUDA device" in out.stderr and "missing role" not in out.stderr


def test_allow_cpu_runs_the_job_and_reports_every_stage(tmp_path: Path, tiny_models: Path) -> None:
    small = ["steps=2", "size=64", 'scheduler="ddim"', "grid=16", "init_iters=30", "refine_iters=15",
             "texture_size=64", "texture_iters=5", 'normals="none"']
    args = ["--models", str(tiny_models), "--allow-cpu", "--views", "4", "--out", str(tmp_path / "out")]
    for p in small:
        args += ["--param", p]
    out = run_script(tmp_path, *args, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: cpu")
    stages = [line.split()[0] for line in lines[2:] if line.split()]
    for stage in ("load", "conditions", "generate", "views", "sculpt.init", "texture", "rig", "total"):
        assert stage in stages, out.stdout
    rows = [line.split() for line in lines[2:] if line.split() and line.split()[0] in ("load", "generate")]
    assert all(float(r[1]) >= 0 and r[2] == "n/a" for r in rows), rows
    assert "avatar:" in out.stdout and "64x64 px, 2 steps" in out.stdout
    assert (tmp_path / "out" / "avatar.glb").is_file()
    assert (tmp_path / "out" / "views" / "views.json").is_file()
