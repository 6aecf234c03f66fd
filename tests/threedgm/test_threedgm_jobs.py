"""The 3DGM job kinds and the CLI on a tiny run trained in the test session: contract-valid
results with a rigged glb, the views and the density mesh; the CLI writes the folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend import cli
from backend.avatar.io.views import View, ViewSet, write_views
from backend.jobs.api import JobInputError, get_job_kind
from protocol import kinds
from protocol.cameras import CameraFrame

# small avatar stages; grid 16 lost the surface on the mask-only path of a 20-step model, 24 keeps it
SMALL = {"views": 4, "size": 64, "mesh_resolution": 24, "grid": 24, "init_iters": 30, "refine_iters": 15,
         "texture_size": 64, "texture_iters": 5}


class Recorder:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.events: list[tuple[float, str]] = []

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self.events.append((fraction, stage))

    def check_cancelled(self) -> None:
        return None


def _run(kind: str, params: dict[str, Any], work: Path) -> tuple[Any, Recorder]:
    work.mkdir(parents=True, exist_ok=True)
    ctx = Recorder(work)
    return get_job_kind(kind).load()(params, ctx), ctx


def _check(kind: str, result: Any) -> None:
    assert kinds.check_result(kind, result.data, result.arrays) == []
    assert {"avatar.glb", "avatar.png", "sample/mesh.obj", "sample/sample.json", "sample/views/views.json"} \
        <= set(result.files)
    assert sum(n.startswith("sample/views/rgba/") for n in result.files) == SMALL["views"]
    assert result.files["avatar.glb"].read_bytes()[:4] == b"glTF"
    assert result.data["vertices"] > 100 and result.data["sample_folder"] == "sample"


def test_from_noise_job_gives_a_rigged_avatar(tiny_run: Path, tmp_path: Path) -> None:
    result, ctx = _run("avatar.from_noise", {"checkpoint": str(tiny_run), "seed": 5, **SMALL}, tmp_path / "w")
    _check("avatar.from_noise", result)
    assert result.data["threedgm"]["seed"] == 5 and result.data["threedgm"]["mesh_faces"] > 0
    assert result.data["threedgm"]["init_shape"] == "density"  # the sculpting started from the density
    fractions = [f for f, _ in ctx.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = list(dict.fromkeys(s for _, s in ctx.events))
    assert stages[:3] == ["load", "sample", "render"] and "rig" in stages


def test_from_noise_rejects_a_folder_that_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(JobInputError, match="not a 3DGM run"):
        _run("avatar.from_noise", {"checkpoint": str(tmp_path), **SMALL}, tmp_path / "w")
    with pytest.raises(JobInputError, match=r"params\.truncation"):
        _run("avatar.from_noise", {"checkpoint": str(tmp_path), "truncation": 5.0}, tmp_path / "w")


def test_inversion_job_on_a_training_view(tiny_run: Path, data, tmp_path: Path) -> None:
    """A views folder holding one training view of the clips (RGBA with its mask, its camera at the
    crop's size and the frame's SMPL-X) is inverted, then rendered around the body and rigged."""
    item = data[0]
    S = item["image"].shape[-1]
    rgb = ((item["image"].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    rgba = np.concatenate([rgb, item["mask"][0].numpy()[..., None]], -1).astype(np.float32)
    camera = CameraFrame.from_payload({"K": item["K"].double().tolist(), "R": item["R"].double().tolist(),
                                       "t": item["t"].double().tolist(), "width": S, "height": S,
                                       "near": 0.05, "far": 100.0})
    smplx = {k: v.numpy().tolist() for k, v in item["params"].items()}
    write_views(tmp_path / "target", ViewSet([View("front", camera, rgba)], smplx=smplx))
    params = {"checkpoint": str(tiny_run), "target": str(tmp_path / "target"), "w_steps": 40,
              "tune_steps": 60, **SMALL}
    result, _ = _run("avatar.from_image_inversion", params, tmp_path / "w")
    _check("avatar.from_image_inversion", result)
    info = result.data["threedgm"]
    assert info["target_view"] == "front" and info["psnr_db"] > info["psnr_pivot_db"] > 15, info
    with pytest.raises(JobInputError, match="no view named 'side'"):
        _run("avatar.from_image_inversion", {**params, "target_view": "side"}, tmp_path / "w2")


def test_cli_from_noise_writes_the_folder(tiny_run: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "avatar"
    argv = ["avatar", "--from-noise", "--seed", "2", "--checkpoint", str(tiny_run), "--out", str(out),
            "--num-views", "4", "--size", "64", "--grid", "24", "--init-iters", "30", "--iters", "15",
            "--texture-size", "64", "--texture-iters", "5", "--json"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["threedgm"]["seed"] == 2
    for name in ("avatar.glb", "avatar.obj", "avatar.png", "avatar_arrays.npz", "sample/mesh.obj",
                 "sample/views/views.json"):
        assert (out / name).is_file(), name
    assert cli.main(["avatar", "--from-noise", "--out", str(out)]) == 2
    assert "--checkpoint" in capsys.readouterr().err
