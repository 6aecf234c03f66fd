"""The whole chain on CPU on the tiny models (``make_tiny``, loaded through the model registry):
prompt (or photo) -> K views -> masks/normals -> sculpt -> texture -> rigged glb, by the CLI
(``avatar --prompt``) and by the job functions (progress per stage, previews, cancel).

The avatar settings are the smallest that build a skinned, textured mesh from 4 views of 64 px:
grid 16, 30 + 15 sculpt iterations, a 64 px texture (docs/generate.md, "Measured": coarser or
shorter runs, and grids 24-32 with the body-render normals, lost the surface on some seeds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from generate_helpers import SIZE
from PIL import Image

from backend import cli
from backend.avatar.io.gltf import read_glb_summary
from backend.avatar.io.views import read_views
from backend.generate.multiview import SCHEDULER_NAMES, encode_image
from backend.jobs.api import JobCancelled, JobInputError
from backend.jobs.generate_avatar import generate_avatar
from backend.models.registry import MODELS_FILE_ENV
from protocol.kinds import GENERATE_SCHEDULERS

VIEWS = 4
SMALL = {"views": VIEWS, "size": SIZE, "steps": 2, "scheduler": "ddim", "grid": 16, "init_iters": 30,
         "refine_iters": 15, "texture_size": 64, "texture_iters": 5}


@pytest.fixture
def tiny_env(tiny_models_toml: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The tiny models as this process's registry (restored after the test), no HF cache."""
    monkeypatch.setenv(MODELS_FILE_ENV, str(tiny_models_toml))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    return tiny_models_toml


class Recorder:
    """A JobContext that records progress and can cancel once a stage starts."""

    def __init__(self, work_dir: Path, cancel_at: str | None = None) -> None:
        self.work_dir = work_dir
        self.events: list[tuple[float, str, str, Any]] = []
        self.cancel_at = cancel_at

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self.events.append((fraction, stage, message, preview))

    def check_cancelled(self) -> None:
        if self.cancel_at is not None and any(e[1] == self.cancel_at for e in self.events):
            raise JobCancelled()


def test_prompt_to_rigged_textured_glb_by_the_cli(tiny_env: Path, tmp_path: Path, capsys: Any) -> None:
    out, views_out = tmp_path / "avatar", tmp_path / "views"
    argv = ["avatar", "--prompt", "a knight in armour", "--models", str(tiny_env), "--num-views", str(VIEWS),
            "--size", str(SIZE), "--steps", "2", "--scheduler", "ddim", "--grid", "16", "--init-iters", "30",
            "--iters", "15", "--texture-size", "64", "--texture-iters", "5", "--views-out", str(views_out),
            "--out", str(out), "--json"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    glb = read_glb_summary(out / "avatar.glb")
    assert glb["joints"] == 55 and glb["weight_sets"] >= 1 and glb["images"] == 1, glb
    assert glb["vertices"] == summary["vertices"] > 100
    with Image.open(out / "avatar.png") as texture:
        assert texture.size == (64, 64)
    assert (out / "avatar_arrays.npz").exists() and (out / "avatar.obj").exists()
    # The views folder: K generated views with masks and the body's SMPL-X parameters.
    views = read_views(views_out)
    assert len(views.views) == VIEWS and views.smplx is not None and len(views.smplx["body_pose"]) == 63
    for view in views.views:
        assert view.rgba.shape == (SIZE, SIZE, 4) and 0.02 < view.mask.mean() < 0.9
        assert view.normal is not None
    generated = summary["generated"]
    assert generated["views"] == VIEWS
    assert generated["prompts"][0].startswith("a knight in armour, front view")
    assert generated["device"] == "cpu" and not generated["image_guided"]
    assert views.extra["generated"]["seed"] == 0


def test_photo_is_the_anchor_view_and_every_stage_reports(tiny_env: Path, tiny_pipe: Any,
                                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = (np.kron(rng.random((4, 4, 3)), np.ones((SIZE // 4, SIZE // 4, 1))) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    ctx = Recorder(tmp_path / "work")
    ctx.work_dir.mkdir()
    params = {**SMALL, "image": str(tmp_path / "photo.png"), "normals": "none"}
    result = generate_avatar("avatar.from_image", params, ctx)
    fractions = [e[0] for e in ctx.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = list(dict.fromkeys(e[1] for e in ctx.events))
    assert stages[:5] == ["load", "fit", "conditions", "generate", "views"], stages
    assert {"sculpt.init", "sculpt.refine", "texture", "rig", "export"} <= set(stages), stages
    previews = [e[3] for e in ctx.events if e[3] is not None]
    assert len(previews) == VIEWS and all(p.shape == (SIZE, SIZE, 3) for p in previews)
    assert result.data["generated"]["image_guided"] and result.data["info"]["normal_source"] == "none"
    assert {"avatar.glb", "avatar.png", "views/views.json"} <= set(result.files)
    assert sum(n.startswith("views/rgba/") for n in result.files) == VIEWS
    # The anchor (view 0, the photo's camera) is the photo itself in the views folder; the generator
    # kept its latents, so its generated image is the photo's round trip through the (random, lossy)
    # tiny VAE; the other views are generated, not copies of either.
    with torch.no_grad():
        decoded = tiny_pipe.vae.decode(encode_image(tiny_pipe, photo, SIZE, SIZE)
                                       / tiny_pipe.vae.config.scaling_factor).sample
    round_trip = tiny_pipe.image_processor.postprocess(decoded, output_type="np")[0]
    views = read_views(ctx.work_dir / "views")
    assert np.array_equal(np.round(views.views[0].rgba[..., :3] * 255).astype(np.uint8), photo)
    assert np.array_equal(previews[0], photo)
    error = [float(np.abs(v.rgba[..., :3] - round_trip).max()) for v in views.views]
    assert min(error[1:]) > 0.05 and min(float(np.abs(v.rgba[..., :3] - photo / 255).max())
                                         for v in views.views[1:]) > 0.05, error


def test_cancel_between_stages_stops_before_the_avatar(tiny_env: Path, tmp_path: Path) -> None:
    ctx = Recorder(tmp_path, cancel_at="generate")
    with pytest.raises(JobCancelled):
        generate_avatar("avatar.from_text", {**SMALL, "prompt": "a knight"}, ctx)
    assert {e[1] for e in ctx.events} <= {"load", "conditions", "generate"}
    assert not (tmp_path / "avatar").exists() and not (tmp_path / "views").exists()


def test_bad_params_name_the_field(tiny_env: Path, tmp_path: Path) -> None:
    with pytest.raises(JobInputError, match=r"params\.size: must be a multiple of 8"):
        generate_avatar("avatar.from_text", {**SMALL, "prompt": "x", "size": 100}, Recorder(tmp_path))
    (tmp_path / "not-an-image.png").write_bytes(b"not a png")
    with pytest.raises(JobInputError, match=r"params\.image: not a readable image"):
        generate_avatar("avatar.from_image", {**SMALL, "image": str(tmp_path / "not-an-image.png")},
                        Recorder(tmp_path))
    assert GENERATE_SCHEDULERS == SCHEDULER_NAMES  # the contract names the schedulers generate knows


def test_standard_quality_is_the_avatar_from_views_defaults() -> None:
    from backend.jobs.generate_avatar import AVATAR_KNOBS, QUALITY_PRESETS
    from protocol.kinds import contract

    views = contract("avatar.from_views")
    assert {k: QUALITY_PRESETS["standard"][k] for k in AVATAR_KNOBS} == {k: views.param(k).default
                                                                          for k in AVATAR_KNOBS}


def test_body_param_gives_its_first_frame_and_defaults_to_the_a_pose() -> None:
    from backend.jobs.generate_avatar import a_pose, first_frame
    from protocol.kinds import parse

    pose = np.zeros((2, 63), np.float32)
    pose[1] = 0.5  # frame 1 differs: only frame 0 is used
    p = parse("avatar.from_text", {"prompt": "x", "body": {"global_orient": np.zeros((2, 3), np.float32),
                                                          "body_pose": pose, "betas": [1.0, 2.0],
                                                          "gender": "female"}})
    body = first_frame(p.body)
    assert body["body_pose"] == [0.0] * 63 and body["betas"] == [1.0, 2.0] and body["gender"] == "female"
    default = first_frame(None)
    assert default == a_pose() and default["gender"] == "neutral"
    assert default["body_pose"][47] == -1.0 and default["body_pose"][50] == 1.0  # shoulders down


def test_cli_without_the_diffusion_weights_says_which_role_and_how(tmp_path: Path, capsys: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_FILE_ENV, "")  # restored after the test (the CLI sets it from --models)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    (tmp_path / "models.toml").write_text("# nothing configured\n")
    models = str(tmp_path / "models.toml")
    argv = ["avatar", "--prompt", "a knight", "--models", models, "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "'base-diffusion'" in err and "`avatar-studio models download base-diffusion`" in err, err
    assert not (tmp_path / "avatar.glb").exists()
