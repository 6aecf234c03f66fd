"""The Avatar panel's Random Avatar (avatar.from_noise; docs/threedgm.md): the button shows only once
a trained 3DGM run is configured (and the backend has the kind), and the params the panel builds
parse against the contract."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from conftest import backend_python  # noqa: E402
from test_addon_e2e import connect  # noqa: E402
from test_addon_generated_avatar import StubLayout, start_server  # noqa: E402

from blender_addon import avatar_panel, bridge, job_params  # noqa: E402
from blender_addon.operators.avatar_random import submit_random_avatar  # noqa: E402
from blender_addon.wire import kinds_module  # noqa: E402

kinds = kinds_module()
NOISE = kinds.names("avatar.from_noise")
BUTTON = ("operator", "avatar_studio.random_avatar")
REPO = Path(__file__).resolve().parents[2]
# small avatar stages (tests/threedgm/test_threedgm_jobs.py): grid 24 keeps the surface
SMALL = {NOISE.size: 64, NOISE.mesh_resolution: 24, NOISE.grid: 24, NOISE.init_iters: 30,
         NOISE.refine_iters: 15, NOISE.texture_size: 64, NOISE.texture_iters: 5}


def _draw(scene) -> list[tuple[str, str]]:
    layout = StubLayout()
    avatar_panel.draw_random(layout, scene)
    return layout.log


def test_button_shows_only_when_a_run_is_configured(clean_scene, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = clean_scene.avatar_studio.avatar
    the_bridge = bridge.get_bridge()
    monkeypatch.setattr(the_bridge, "has_job_kind", lambda kind: kind == "avatar.from_noise")
    assert settings.threedgm_checkpoint == ""
    log = _draw(clean_scene)
    assert BUTTON not in log and ("prop", "threedgm_checkpoint") in log
    settings.threedgm_checkpoint = "/data/in/run"
    log = _draw(clean_scene)
    assert BUTTON in log and ("prop", "truncation") in log and ("prop", "seed") in log
    # a backend without the kind: no button, and the panel says why
    monkeypatch.setattr(the_bridge, "has_job_kind", lambda kind: False)
    log = _draw(clean_scene)
    assert BUTTON not in log and ("label", "Needs a backend with avatar.from_noise.") in log
    # not connected: the operator is greyed out even with a run configured
    assert not bpy.ops.avatar_studio.random_avatar.poll()


def test_random_avatar_params_parse_against_the_contract(clean_scene) -> None:
    settings = clean_scene.avatar_studio.avatar
    settings.seed, settings.truncation, settings.views = 11, 0.5, 6
    params = job_params.random_avatar_params(settings, "/data/in/run")
    kinds.validate("avatar.from_noise", params)
    assert params == {NOISE.checkpoint: "/data/in/run", NOISE.seed: 11, NOISE.truncation: 0.5, NOISE.views: 6}
    contract = kinds.contract("avatar.from_noise")
    default = contract.param(NOISE.truncation).default
    assert settings.bl_rna.properties["truncation"].default == pytest.approx(default)
    settings.truncation = 3.0  # clamped to the contract's range by the property
    assert settings.truncation == contract.param(NOISE.truncation).type.hi


def test_random_avatar_end_to_end(clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny 3DGM run trained here (2 clips of 64 px, 5 steps) inside the server's input roots;
    Random Avatar through a real backend brings a rigged, textured avatar into the scene."""
    models = tmp_path / "models.toml"
    models.write_text("# nothing configured\n")
    server = start_server(tmp_path, models, monkeypatch)
    try:
        inputs = server.data_dir / "inputs"  # always one of the server's input roots
        inputs.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["OMP_NUM_THREADS"] = "1"
        for argv in (["clips", "render", "--people", "1", "--motion", "walk", "--cameras", "ring:4",
                      "--frames", "2", "--clips", "2", "--size", "64x64", "--seed", "1", "--out",
                      str(tmp_path / "data")],
                     ["3dgm", "train", "--data", str(tmp_path / "data"), "--config", "tiny", "--out",
                      str(inputs / "run"), "--steps", "5"]):
            done = subprocess.run([backend_python(), "-m", "backend", *argv], capture_output=True, text=True,
                                  timeout=300, cwd=str(REPO), env=env)
            assert done.returncode == 0, done.stderr
        scene = clean_scene
        the_bridge, pumper = connect(tmp_path, server.connection_file)
        settings = scene.avatar_studio.avatar
        settings.threedgm_checkpoint, settings.views, settings.seed = str(inputs / "run"), 4, 3
        assert ("operator", "avatar_studio.random_avatar") in _draw(scene)
        assert bpy.ops.avatar_studio.random_avatar.poll()
        item = submit_random_avatar(scene, SMALL)
        assert item.kind == "avatar.from_noise"
        pumper.until(lambda: item.imported or item.state in ("failed", "cancelled"), 400, "the random avatar")
        assert item.state == "succeeded", f"{item.error}\n{server.log()}"
        armature = next(o for o in scene.objects if o.type == "ARMATURE")
        mesh = next(o for o in scene.objects if o.type == "MESH" and o.parent == armature)
        assert len(armature.data.bones) == 55 and len(mesh.data.vertices) > 100
        assert len(mesh.vertex_groups) > 0
        the_bridge.disconnect()
    finally:
        server.stop()
