"""The Avatar panel's From Prompt / From Photo against a real backend (real bpy, real sockets).

- the params the panel builds for avatar.from_text / avatar.from_image pass the contract;
- on the tiny models (``avatar-studio models make-tiny``), From Prompt brings each generated view
  into bpy.data.images while the job still runs, then the rigged, textured avatar;
- with a models file that names no base-diffusion weights, the job fails and the panel's status
  says the role, the model and the download command.

The stages are the smallest tests/generate/test_avatar_chain.py uses (4 views of 64 px).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from conftest import BackendProcess, backend_python  # noqa: E402
from test_addon_e2e import connect  # noqa: E402

from blender_addon import avatar_panel, job_params, view_previews  # noqa: E402
from blender_addon.operators.avatar_generate import submit_generated_avatar  # noqa: E402
from blender_addon.wire import kinds_module  # noqa: E402

kinds = kinds_module()
VIEWS = 4
TEXT = kinds.names("avatar.from_text")
# The smallest stages that build a skinned, textured mesh (tests/generate/test_avatar_chain.py).
SMALL = {TEXT.size: 64, TEXT.steps: 2, TEXT.scheduler: "ddim", TEXT.grid: 16, TEXT.init_iters: 30,
         TEXT.refine_iters: 15, TEXT.texture_size: 64, TEXT.texture_iters: 5}


class StubLayout:
    """Records what a panel draws (bpy-as-a-module has no UI to draw into)."""

    def __init__(self, log: list[tuple[str, str]] | None = None) -> None:
        self.log = [] if log is None else log

    def prop(self, _data: object, name: str, **_kw: object) -> None:
        self.log.append(("prop", name))

    def label(self, text: str = "", **_kw: object) -> None:
        self.log.append(("label", text))

    def operator(self, idname: str, **_kw: object) -> None:
        self.log.append(("operator", idname))

    def row(self, **_kw: object) -> StubLayout:
        return StubLayout(self.log)

    column = box = row


def start_server(tmp_path: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> BackendProcess:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # the server inherits it
    data = tmp_path / "backend-data"
    data.mkdir()
    server = BackendProcess(data, [backend_python(), "-m", "backend", "serve", "--data-dir", str(data),
                                   "--models", str(models)])
    server.start()
    return server


def test_panel_params_pass_the_contract(clean_scene) -> None:
    settings = clean_scene.avatar_studio.avatar
    settings.prompt, settings.negative_prompt, settings.seed = "a knight", "blurry", 7
    settings.views, settings.quality = 6, "draft"
    text = job_params.generated_avatar_params("avatar.from_text", settings)
    kinds.validate("avatar.from_text", text)
    contract = kinds.contract("avatar.from_text")
    # size and steps left to the quality preset (0); guidance and scheduler at the contract's defaults
    assert text == {"prompt": "a knight", "negative_prompt": "blurry", "seed": 7, "views": 6,
                    "quality": "draft", "guidance": contract.param(TEXT.guidance).default,
                    "scheduler": contract.param(TEXT.scheduler).default}
    image = job_params.generated_avatar_params("avatar.from_image", settings, "/data/in/photo.png")
    kinds.validate("avatar.from_image", image)
    assert image["image"] == "/data/in/photo.png" and image["views"] == 6 and image["fit_body"] is True
    # Advanced: size, steps, guidance, scheduler; the scheduler choices are the contract's
    settings.size, settings.steps, settings.guidance, settings.scheduler = 256, 12, 5.5, "euler-a"
    advanced = job_params.generated_avatar_params("avatar.from_text", settings)
    kinds.validate("avatar.from_text", advanced)
    assert (advanced["size"], advanced["steps"], advanced["guidance"], advanced["scheduler"]) == (
        256, 12, 5.5, "euler-a")
    scheduler_items = settings.bl_rna.properties["scheduler"].enum_items
    assert tuple(i.identifier for i in scheduler_items) == contract.param(TEXT.scheduler).type.values
    assert settings.bl_rna.properties["size"].hard_max == contract.param(TEXT.size).type.hi
    settings.fit_body = False
    assert job_params.generated_avatar_params("avatar.from_image", settings, "/p.png")["fit_body"] is False
    for name in ("size", "steps", "guidance", "scheduler", "fit_body"):  # the scene outlives this test
        settings.property_unset(name)
    assert settings.fit_body is True and settings.size == 0
    settings.negative_prompt = "  "  # empty: the backend's default, not an empty negative prompt
    assert "negative_prompt" not in job_params.generated_avatar_params("avatar.from_text", settings)
    with pytest.raises(ValueError, match=r"params\.views"):
        kinds.validate("avatar.from_text", {**text, "views": 99})


def test_from_prompt_streams_the_views_then_imports_the_avatar(
    clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = subprocess.run([backend_python(), "-m", "backend", "models", "make-tiny", str(tmp_path / "tiny")],
                          capture_output=True, text=True, timeout=300)
    assert tiny.returncode == 0, tiny.stderr
    server = start_server(tmp_path, tmp_path / "tiny" / "models.toml", monkeypatch)
    try:
        scene = clean_scene
        the_bridge, pumper = connect(tmp_path, server.connection_file)
        settings = scene.avatar_studio.avatar
        settings.source, settings.prompt, settings.views = "PROMPT", "a knight in armour", VIEWS
        assert bpy.ops.avatar_studio.generate_avatar_prompt.poll()
        item = submit_generated_avatar(scene, SMALL)
        assert item.kind == "avatar.from_text"
        # (images seen, job state) at each pump: the views must show up before the job ends.
        seen: list[tuple[int, str]] = []

        def imported() -> bool:
            seen.append((len(view_previews.job_images(item.job_id)) if item.job_id else 0, item.state))
            return item.imported or item.state in ("failed", "cancelled")

        pumper.until(imported, 240, "the generated avatar")
        assert item.state == "succeeded", f"{item.error}\n{server.log()}"
        images = view_previews.job_images(item.job_id)
        assert len(images) == VIEWS, [i.name for i in images]
        names = [i.get(view_previews.VIEW_PROP) for i in images]
        assert len(set(names)) == VIEWS, names
        assert [i.name for i in images] == [f"AVS {item.job_id[:8]} {n}" for n in names]
        for image in images:
            assert tuple(image.size) == (64, 64)
            pixels = np.empty(64 * 64 * 4, np.float32)
            image.pixels.foreach_get(pixels)
            assert pixels.reshape(-1, 4)[:, :3].std() > 0.0  # an image, not an empty block
        counts_while_running = [n for n, state in seen if state == "running"]
        assert counts_while_running and max(counts_while_running) == VIEWS, seen[-5:]
        counts = [n for n, _ in seen]
        assert counts == sorted(counts), "an image disappeared"
        first = next(i for i, n in enumerate(counts) if n)
        assert seen[first][1] == "running", "the first view must show before the job ends"
        # The rigged, textured avatar, by the avatar.from_views importer.
        armature = next(o for o in scene.objects if o.type == "ARMATURE")
        mesh = next(o for o in scene.objects if o.type == "MESH" and o.parent == armature)
        assert len(armature.data.bones) == 55 and len(mesh.data.vertices) > 100
        texture = next(n for n in mesh.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
        assert tuple(texture.size) == (64, 64)
        assert len(mesh.vertex_groups) > 0
        assert avatar_panel.status_lines(item) == ["Succeeded"]
        assert max(pumper.durations) < 1.0, max(pumper.durations)
        the_bridge.disconnect()
    finally:
        server.stop()


def test_missing_base_diffusion_is_said_in_the_panel(
    clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models.toml"
    models.write_text("# nothing configured\n")
    server = start_server(tmp_path, models, monkeypatch)
    try:
        scene = clean_scene
        the_bridge, pumper = connect(tmp_path, server.connection_file)
        scene.avatar_studio.avatar.source = "PROMPT"
        item = submit_generated_avatar(scene, SMALL)
        pumper.until(lambda: item.state in ("failed", "succeeded", "cancelled"), 120, "the job to fail")
        assert item.state == "failed"
        assert item.error.startswith("ModelMissingError: "), item.error
        assert "'base-diffusion'" in item.error, item.error
        assert "`avatar-studio models download base-diffusion`" in item.error, item.error
        lines = avatar_panel.status_lines(avatar_panel.last_generated_job(scene))
        said = " ".join(lines)
        assert lines[0].startswith("Failed: ModelMissingError")
        assert "avatar-studio models download base-diffusion" in said, lines
        assert all(len(line) <= avatar_panel.ERROR_WIDTH + len("Failed: ") for line in lines)
        assert not view_previews.job_images(item.job_id)
        layout = StubLayout()
        avatar_panel.draw_generated(layout, scene)
        drawn = [name for what, name in layout.log if what == "prop"]
        assert drawn == ["prompt", "negative_prompt", "seed", "views", "quality", "show_advanced"]
        scene.avatar_studio.avatar.show_advanced = True
        advanced = StubLayout()
        avatar_panel.draw_generated(advanced, scene)
        drawn = [name for what, name in advanced.log if what == "prop"]
        assert drawn[-5:] == ["show_advanced", "size", "steps", "guidance", "scheduler"], drawn
        assert ("operator", "avatar_studio.generate_avatar_prompt") in layout.log
        assert [text for what, text in layout.log if what == "label"] == lines
        scene.avatar_studio.avatar.source = "PHOTO"
        photo = StubLayout()
        avatar_panel.draw_generated(photo, scene)
        assert [n for w, n in photo.log if w == "prop"][:2] == ["image_path", "fit_body"]
        the_bridge.disconnect()
    finally:
        server.stop()


# A "photo" of a person on a plain background: the stand-in body (shaped, turned, walking) rendered
# by the backend's rasterizer from the photo camera the fit assumes, flat red on white, 64 x 64 (the
# views' size, so the anchor view is the photo pixel for pixel). Written by the backend's Python:
# Blender's has no PIL and no torch.
PHOTO_SCRIPT = """
import sys
import numpy as np
from PIL import Image
from backend.body.procedural import procedural_motion
from backend.fitting.synthetic import pose_body, render_photo
pose = np.asarray(procedural_motion("walk").body_pose)[10].tolist()
truth = pose_body({"gender": "neutral", "betas": [0.8, -0.6], "global_orient": [0.0, 0.3, 0.0],
                   "body_pose": pose, "transl": [0.05, -0.1, -3.0]})
mask, _, _ = render_photo(truth, 64)
rgb = np.full((64, 64, 3), 255, np.uint8)
rgb[mask > 0.5] = (170, 60, 50)
Image.fromarray(rgb).save(sys.argv[1])
"""


def test_from_photo_fits_the_body_streams_the_views_then_imports_the_avatar(
    clean_scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = subprocess.run([backend_python(), "-m", "backend", "models", "make-tiny", str(tmp_path / "tiny")],
                          capture_output=True, text=True, timeout=300)
    assert tiny.returncode == 0, tiny.stderr
    server = start_server(tmp_path, tmp_path / "tiny" / "models.toml", monkeypatch)
    try:
        inputs = server.data_dir / "inputs"  # always one of the server's input roots
        inputs.mkdir(exist_ok=True)
        photo = inputs / "photo.png"
        made = subprocess.run([backend_python(), "-c", PHOTO_SCRIPT, str(photo)], capture_output=True,
                              text=True, timeout=300, cwd=str(Path(__file__).resolve().parents[2]))
        assert made.returncode == 0, made.stderr
        scene = clean_scene
        the_bridge, pumper = connect(tmp_path, server.connection_file)
        settings = scene.avatar_studio.avatar
        settings.source, settings.prompt, settings.views = "PHOTO", "a woman in a red dress", VIEWS
        settings.image_path = str(photo)
        assert settings.bl_rna.properties["fit_body"].default is True  # the contract's default
        settings.fit_body = True  # the body comes from the photo
        assert bpy.ops.avatar_studio.generate_avatar_prompt.poll()
        item = submit_generated_avatar(scene, SMALL)
        assert item.kind == "avatar.from_image"
        seen: list[tuple[int, str]] = []
        stages: list[str] = []

        def imported() -> bool:
            seen.append((len(view_previews.job_images(item.job_id)) if item.job_id else 0, item.state))
            if item.stage and (not stages or stages[-1] != item.stage):
                stages.append(item.stage)
            return item.imported or item.state in ("failed", "cancelled")

        pumper.until(imported, 300, "the avatar from the photo")
        assert "fit" in stages and stages.index("fit") < stages.index("generate"), stages
        assert item.state == "succeeded", f"{item.error}\n{server.log()}"
        images = view_previews.job_images(item.job_id)
        names = [i.get(view_previews.VIEW_PROP) for i in images]
        assert len(images) == VIEWS and len(set(names)) == VIEWS, names
        # The first view is the photo itself (view 0, the camera the body was fitted in).
        assert names[0] == "photo", names
        loaded = bpy.data.images.load(str(photo))
        expected = np.empty(64 * 64 * 4, np.float32)
        loaded.pixels.foreach_get(expected)
        got = np.empty(64 * 64 * 4, np.float32)
        images[0].pixels.foreach_get(got)
        assert np.abs(got.reshape(-1, 4)[:, :3] - expected.reshape(-1, 4)[:, :3]).max() <= 1.5 / 255
        for image in images[1:]:
            image.pixels.foreach_get(got)
            assert np.abs(got.reshape(-1, 4)[:, :3] - expected.reshape(-1, 4)[:, :3]).max() > 0.05
        running = [n for n, state in seen if state == "running"]
        assert running and max(running) == VIEWS, seen[-5:]
        # The rigged, textured avatar arrives.
        armature = next(o for o in scene.objects if o.type == "ARMATURE")
        mesh = next(o for o in scene.objects if o.type == "MESH" and o.parent == armature)
        assert len(armature.data.bones) == 55 and len(mesh.data.vertices) > 100
        assert any(m.type == "ARMATURE" and m.object == armature for m in mesh.modifiers)
        assert len(mesh.vertex_groups) > 0
        texture = next(n for n in mesh.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
        assert tuple(texture.size) == (64, 64)
        assert avatar_panel.status_lines(item) == ["Succeeded"]
        the_bridge.disconnect()
    finally:
        server.stop()
