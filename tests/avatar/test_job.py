"""The ``avatar.from_views`` job: parameter errors, wiring of files/arrays, cancellation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.jobs.api import JobCancelled, JobInputError, get_job_kind
from protocol.kinds import check_result


class Ctx:
    def __init__(self, work_dir: Path, cancel_after: int | None = None) -> None:
        self.work_dir = work_dir
        self.events: list[tuple[float, str, str]] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def progress(self, fraction, message="", *, stage="", preview=None) -> None:
        self.events.append((fraction, message, stage))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled()


TINY = {"grid": 20, "init_iters": 25, "refine_iters": 3, "texture_size": 64, "texture_iters": 2}


def test_registered_and_input_errors(tmp_path):
    run = get_job_kind("avatar.from_views").load()
    with pytest.raises(JobInputError, match="views"):
        run({}, Ctx(tmp_path))
    with pytest.raises(JobInputError, match="grid"):
        run({"views": str(tmp_path), "grid": 2}, Ctx(tmp_path))
    with pytest.raises(JobInputError, match=r"views\.json"):
        run({"views": str(tmp_path)}, Ctx(tmp_path))


def test_job_returns_files_and_arrays(small_character, tmp_path):
    folder, _, _ = small_character
    run = get_job_kind("avatar.from_views").load()
    ctx = Ctx(tmp_path)
    res = run({"views": str(folder), **TINY}, ctx)
    assert check_result("avatar.from_views", res.data, res.arrays) == []  # protocol/kinds.py
    for name in ("avatar.glb", "avatar.obj", "avatar.mtl", "avatar.png", "avatar.json"):
        assert res.files[name].exists()
    a = res.arrays
    n = len(a["vertices"])
    assert a["faces"].dtype == np.int32 and a["faces"].max() < n
    assert a["uvs"].shape == (n, 2) and a["weights"].shape == (n, 55) and a["part_labels"].shape == (n,)
    assert a["texture"].shape == (64, 64, 3) and a["texture"].dtype == np.uint8
    assert a["parents"].shape == (55,) and a["joints_rest"].shape == (55, 3)
    assert ctx.events[-1][0] == pytest.approx(1.0) and ctx.checks > 5
    assert res.data["info"]["normal_source"] == "views"


def test_job_cancels(small_character, tmp_path):
    folder, _, _ = small_character
    run = get_job_kind("avatar.from_views").load()
    with pytest.raises(JobCancelled):
        run({"views": str(folder), **TINY}, Ctx(tmp_path, cancel_after=3))


def test_stage_config_reads_the_same_knobs_for_every_avatar_kind(tmp_path):
    """avatar.from_views and the 3DGM kinds build the pipeline's config through one function: each
    knob lands in its config field, and a value the pipeline refuses is a JobInputError."""
    from types import SimpleNamespace

    from backend.jobs.api import typed_params
    from backend.jobs.avatar import STAGE_OPTIONS, stage_config

    knobs = {"grid": 24, "init_iters": 7, "refine_iters": 3, "texture_size": 64, "texture_iters": 2,
             "unwrap": "cylinder", "normals": "none", "render_scale": 0.5}
    assert set(knobs) == set(STAGE_OPTIONS)
    kinds = {"avatar.from_views": {"views": str(tmp_path)},
             "avatar.from_noise": {"checkpoint": str(tmp_path)},
             "avatar.from_image_inversion": {"checkpoint": str(tmp_path), "target": str(tmp_path)}}
    for kind, paths in kinds.items():
        cfg = stage_config(typed_params(kind, {**paths, **knobs}))
        got = (cfg.sculpt.grid_resolution, cfg.sculpt.init_iters, cfg.sculpt.refine_iters,
               cfg.texture.texture_size, cfg.uv.atlas.texture_size, cfg.texture.iterations,
               cfg.uv.unwrap.method, cfg.sculpt.normal_source, cfg.sculpt.render_scale)
        assert got == (24, 7, 3, 64, 64, 2, "cylinder", "none", 0.5), kind
    with pytest.raises(JobInputError, match=r"grid must be in \[8, 512\], got 4"):
        stage_config(SimpleNamespace(**{**dict.fromkeys(STAGE_OPTIONS), "grid": 4}))
