"""The Avatar panel's "Avatar from Photo (3DGM)" (avatar.from_image_inversion with a photo;
docs/threedgm.md): shown under Random Avatar once a run is configured and the backend has the kind;
the params parse against the contract; a photo outside the local backend's inputs is staged into
them; end to end through a real backend a rigged, skinned avatar lands in the scene, and a photo
outside the input roots sent as is is refused by the backend."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from conftest import backend_python  # noqa: E402
from test_addon_e2e import connect  # noqa: E402
from test_addon_generated_avatar import StubLayout, start_server  # noqa: E402

from blender_addon import avatar_panel, bridge  # noqa: E402
from blender_addon.operators.avatar_invert import (  # noqa: E402
    INVERT_KIND,
    invert_params,
    stage_photo,
    submit_photo_inversion,
)
from blender_addon.wire import kinds_module  # noqa: E402

kinds = kinds_module()
INVERT = kinds.names(INVERT_KIND)
BUTTON = ("operator", "avatar_studio.avatar_from_photo_3dgm")
REPO = Path(__file__).resolve().parents[2]
# few PTI steps (the PSNR is the CLI test's to check) and the smallest stages
# (tests/threedgm/test_threedgm_jobs.py: grid 24 keeps the surface)
SMALL = {INVERT.w_steps: 10, INVERT.tune_steps: 10, INVERT.size: 64, INVERT.mesh_resolution: 24,
         INVERT.grid: 24, INVERT.init_iters: 30, INVERT.refine_iters: 15, INVERT.texture_size: 64,
         INVERT.texture_iters: 5}
# A training item's crop (RGBA, alpha = its mask) at 128 px: a photo of a person the run has seen.
PHOTO_SCRIPT = """
import sys
import numpy as np
from PIL import Image
from backend.threedgm.config import TINY
from backend.threedgm.dataset import ClipsDataset
item = ClipsDataset(sys.argv[1], TINY.generator.out_res, TINY.generator.warp_vertices)[0]
rgb = ((item["image"].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
rgba = np.concatenate([rgb, item["mask"][0].numpy()[..., None]], -1)
Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").resize((128, 128)).save(sys.argv[2])
"""


def _draw(scene) -> list[tuple[str, str]]:
    layout = StubLayout()
    avatar_panel.draw_random(layout, scene)
    return layout.log


def test_action_shows_only_with_a_run_and_the_kind(clean_scene, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = clean_scene.avatar_studio.avatar
    the_bridge = bridge.get_bridge()
    monkeypatch.setattr(the_bridge, "has_job_kind", lambda kind: True)
    assert BUTTON not in _draw(clean_scene)  # no run configured
    settings.threedgm_checkpoint = "/data/in/run"
    log = _draw(clean_scene)
    assert BUTTON in log and ("prop", "image_path") in log
    assert log.index(("operator", "avatar_studio.random_avatar")) < log.index(BUTTON)
    monkeypatch.setattr(the_bridge, "has_job_kind", lambda kind: kind != INVERT_KIND)
    assert BUTTON not in _draw(clean_scene)  # a backend without the kind
    assert not bpy.ops.avatar_studio.avatar_from_photo_3dgm.poll()  # not connected


def test_params_parse_against_the_contract(clean_scene) -> None:
    settings = clean_scene.avatar_studio.avatar
    settings.views = 6
    params = invert_params(settings, "/data/in/run", "/data/in/photo.png")
    kinds.validate(INVERT_KIND, params)
    assert params == {INVERT.checkpoint: "/data/in/run", INVERT.image: "/data/in/photo.png", INVERT.views: 6}
    with pytest.raises(ValueError, match=r"params\.image"):
        kinds.validate(INVERT_KIND, {**params, INVERT.image: "/data/in/photo.txt"})


def test_photo_outside_the_inputs_is_staged(tmp_path: Path) -> None:
    inputs = tmp_path / "data" / "inputs"
    inputs.mkdir(parents=True)
    photo = tmp_path / "shots" / "me.png"
    photo.parent.mkdir()
    photo.write_bytes(b"\x89PNG fake")
    (photo.parent / "me.keypoints.json").write_text("{}")
    (photo.parent / "other.png").write_bytes(b"unrelated")
    staged = stage_photo(photo, inputs)
    assert staged.parent.parent == inputs and staged.name == "me.png"
    assert staged.read_bytes() == photo.read_bytes()
    assert sorted(p.name for p in staged.parent.iterdir()) == ["me.keypoints.json", "me.png"]
    inside = inputs / "here.png"
    inside.write_bytes(b"x")
    assert stage_photo(inside, inputs) == inside  # already readable by the backend
    assert stage_photo(photo, None) == photo  # a remote backend: the path as it is
    with pytest.raises(ValueError, match="not a file"):
        stage_photo(tmp_path / "missing.png", inputs)


def test_avatar_from_photo_end_to_end(clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny 3DGM run trained here (2 clips of 64 px, 5 steps) inside the server's input roots, a
    photo outside them; the operator stages the photo, the backend fits the body and inverts, the
    rigged avatar is imported. The same photo sent unstaged is refused by the backend."""
    models = tmp_path / "models.toml"
    models.write_text("# nothing configured\n")
    server = start_server(tmp_path, models, monkeypatch)
    try:
        inputs = server.data_dir / "inputs"  # always one of the server's input roots
        inputs.mkdir(exist_ok=True)
        photo = tmp_path / "photos" / "person.png"  # outside the roots
        photo.parent.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["OMP_NUM_THREADS"] = "1"
        for argv in (["-m", "backend", "clips", "render", "--people", "1", "--motion", "walk", "--cameras",
                      "ring:4", "--frames", "2", "--clips", "2", "--size", "64x64", "--seed", "1", "--out",
                      str(tmp_path / "data")],
                     ["-m", "backend", "3dgm", "train", "--data", str(tmp_path / "data"), "--config", "tiny",
                      "--out", str(inputs / "run"), "--steps", "5"],
                     ["-c", PHOTO_SCRIPT, str(tmp_path / "data"), str(photo)]):
            done = subprocess.run([backend_python(), *argv], capture_output=True, text=True, timeout=300,
                                  cwd=str(REPO), env=env)
            assert done.returncode == 0, done.stderr
        scene = clean_scene
        the_bridge, pumper = connect(tmp_path, server.connection_file)
        settings = scene.avatar_studio.avatar
        settings.threedgm_checkpoint, settings.image_path, settings.views = str(inputs / "run"), str(photo), 4
        assert BUTTON in _draw(scene)
        assert bpy.ops.avatar_studio.avatar_from_photo_3dgm.poll()

        # unstaged, outside the roots: the backend's one refusal, naming the field
        refused = the_bridge.submit(scene, INVERT_KIND, {**invert_params(settings, str(inputs / "run"),
                                                                         str(photo)), **SMALL})
        pumper.until(lambda: refused.state in ("failed", "succeeded", "cancelled"), 60, "the refusal")
        assert refused.state == "failed" and "params.image" in refused.error, refused.error
        assert "input roots" in refused.error

        item = submit_photo_inversion(scene, SMALL)
        assert item.kind == INVERT_KIND
        pumper.until(lambda: item.imported or item.state in ("failed", "cancelled"), 600, "the avatar")
        assert item.state == "succeeded", f"{item.error}\n{server.log()}"
        assert any(p.name == "person.png" for p in inputs.glob("photo-*/*"))  # staged into the inputs
        armature = next(o for o in scene.objects if o.type == "ARMATURE")
        mesh = next(o for o in scene.objects if o.type == "MESH" and o.parent == armature)
        assert len(armature.data.bones) == 55 and len(mesh.data.vertices) > 100
        assert len(mesh.vertex_groups) > 0
        assert any(m.type == "ARMATURE" and m.object == armature for m in mesh.modifiers)
        the_bridge.disconnect()
    finally:
        server.stop()
