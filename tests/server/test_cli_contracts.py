"""The CLI reads the job contracts: `submit --help-kind`, `--help` defaults that are what runs,
and `--motion clip.bvh` through the one load_motion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend import cli
from protocol.kinds import KINDS, contract, describe


def test_submit_help_kind_prints_the_contract(capsys: Any) -> None:
    for kind in KINDS:
        assert cli.main(["submit", "--help-kind", kind]) == 0
        assert capsys.readouterr().out == describe(kind) + "\n"
    assert cli.main(["submit", "--help-kind", "no.such"]) == 2
    assert "unknown job kind 'no.such'" in capsys.readouterr().err


def test_contract_defaults_are_what_the_backend_runs() -> None:
    from backend.avatar.eval.synthetic import SHAPE_PRESETS, SyntheticConfig
    from backend.avatar.geometry.sculpt import SculptConfig
    from backend.avatar.texture.optimise import TextureConfig
    from backend.avatar.texture.uv_unwrap import UnwrapConfig
    from backend.body.procedural import PROCEDURAL_MOTIONS
    from backend.preview.pipeline import PREVIEW_PASSES, PreviewConfig

    avatar = {p.name: p.default for p in contract("avatar.from_views").params}
    sculpt, texture = SculptConfig(), TextureConfig()
    assert (avatar["grid"], avatar["init_iters"], avatar["refine_iters"], avatar["render_scale"]) == (
        sculpt.grid_resolution, sculpt.init_iters, sculpt.refine_iters, sculpt.render_scale
    )
    # texture_size: None in the contract = 0 in the library = matched to what the views resolve
    assert (avatar["texture_size"] or 0, avatar["texture_iters"]) == (
        texture.texture_size, texture.iterations)
    assert (avatar["unwrap"], avatar["normals"]) == (UnwrapConfig().method, sculpt.normal_source)
    fields = contract("avatar.from_views").param("synthetic").type.fields
    cfg = SyntheticConfig()
    assert {p.name: p.default for p in fields} == {
        "shape": cfg.shape, "resolution": cfg.resolution, "skirt": cfg.skirt, "hair": cfg.hair
    }  # fmt: skip
    assert set(fields[0].type.values) == set(SHAPE_PRESETS)
    preview = {p.name: p.default for p in contract("body.preview").params}
    assert tuple(preview["passes"]) == PREVIEW_PASSES == PreviewConfig.__dataclass_fields__["passes"].default
    names = {n.replace("_", "-") for n in PROCEDURAL_MOTIONS}
    assert set(contract("body.preview").param("motion").type.options[0].values) == names


def test_avatar_help_shows_the_defaults_that_run(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        cli.main(["avatar", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--iters N sculpt refinement iterations (int in [0, 100000]; default 160)" in text
    assert "--init-iters N body-SDF fitting iterations (int in [0, 100000]; default 100)" in text
    assert "--body-model" not in text  # the body comes from the smplx model role


def test_preview_motion_bvh(tmp_path: Path, capsys: Any) -> None:
    from backend.body.bvh import save_bvh
    from backend.body.procedural import procedural_motion

    bvh = save_bvh(procedural_motion("wave", 3), tmp_path / "wave.bvh", np.zeros((55, 3)))
    out = tmp_path / "out"
    args = ["preview", "--motion", str(bvh), "--frames", "2", "--size", "32x24", "--cameras", "orbit:1",
            "--passes", "rgb", "--no-mp4", "--out", str(out), "--json"]  # fmt: skip
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 2 and summary["width"] == 32 and (out / "rgb" / "0002.png").is_file()
