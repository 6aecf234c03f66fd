"""``avatar.from_image`` fits the body to the photo (backend/jobs/photo_body.py, backend/fitting/photo.py)
on the tiny models: the "photo" is a known posed, shaped body rendered by our rasterizer from the
assumed photo camera (flat blue on white, 256 x 192: not square), so the fitted body can be checked
against it; the generated ring starts at the photo's camera and the photo is view 0."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from generate_helpers import SIZE
from PIL import Image

from backend.avatar.io.views import read_views
from backend.jobs.generate_avatar import a_pose, generate_avatar
from backend.models.registry import MODELS_FILE_ENV

SMALL = {"views": 4, "size": SIZE, "steps": 2, "scheduler": "ddim", "grid": 16, "init_iters": 30,
         "refine_iters": 15, "texture_size": 64, "texture_iters": 5, "normals": "none"}
CROP = 32  # the 256 px render cropped to 256 x 192 (x from 32): the photo is not square


class Recorder:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.events: list[tuple[float, str, str, Any]] = []

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self.events.append((fraction, stage, message, preview))

    def check_cancelled(self) -> None:
        pass


@pytest.fixture
def tiny_env(tiny_models_toml: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(MODELS_FILE_ENV, str(tiny_models_toml))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    return tiny_models_toml


@pytest.fixture(scope="module")
def photo_scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """photo.png (256 x 192) and photo.keypoints.json of a known body, and that body."""
    from backend.body.procedural import procedural_motion
    from backend.fitting import write_keypoints
    from backend.fitting.synthetic import pose_body, render_photo

    folder = tmp_path_factory.mktemp("photo")
    body_pose = np.asarray(procedural_motion("walk").body_pose)[10]
    truth = pose_body({"gender": "neutral", "betas": [0.8, -0.6, 0.5], "global_orient": [0.0, 0.35, 0.0],
                       "body_pose": body_pose.tolist(), "transl": [0.1, -0.1, -3.0]})
    mask, keypoints, _ = render_photo(truth, 256, layout="coco17")
    rgb = np.full((256, 256, 3), 255, np.uint8)
    rgb[mask > 0.5] = (60, 90, 160)
    photo = rgb[:, CROP:CROP + 192]
    Image.fromarray(photo).save(folder / "photo.png")
    keypoints[:, 0] -= CROP  # in the photo's own pixels
    write_keypoints(folder / "photo.keypoints.json", "coco17", {"photo": keypoints})
    return {"folder": folder, "truth": truth, "photo": photo, "mask": mask[:, CROP:CROP + 192] > 0.5}


def silhouette_iou(smplx: dict[str, Any], camera: tuple, size: int, mask: np.ndarray) -> float:
    from backend.body.loading import load_body_model
    from backend.body.model import BodyParams
    from backend.render.camera import CameraBatch
    from backend.render.passes import Mesh, render_passes

    model = load_body_model()
    params = BodyParams.from_arrays({k: v for k, v in smplx.items() if k != "gender"}, n_frames=1,
                                    num_betas=model.num_betas, num_expression=model.num_expression)
    with torch.no_grad():
        verts = model(params).vertices[0]
        alpha = render_passes(Mesh(verts=verts, faces=model.faces_tensor),
                              CameraBatch(*(a[None] for a in camera), size, size, 0.05, 50.0),
                              passes=("alpha",)).alpha
    rendered = alpha[0].numpy() > 0.5
    return float((rendered & mask).sum() / (rendered | mask).sum())


def test_from_image_dresses_the_body_fitted_to_the_photo(tiny_env: Path, photo_scene: dict[str, Any],
                                                        tmp_path: Path) -> None:
    from backend.fitting.photo import photo_camera, square_photo

    folder = photo_scene["folder"]
    ctx = Recorder(tmp_path)
    params = {**SMALL, "image": str(folder / "photo.png"), "keypoints": str(folder / "photo.keypoints.json")}
    result = generate_avatar("avatar.from_image", params, ctx)
    fit = result.data["generated"]["body_fit"]
    assert fit["fitted"] and fit["keypoints"] == {"source": "file"} and fit["layout"] == "coco17"
    assert fit["diagnostics"]["mean_keypoint_error_px"] < 1.5  # exact keypoints, 192 px fit
    body = fit["smplx"]
    default = a_pose()
    # Not the default body: shaped, turned and posed like the photo's.
    assert np.abs(np.array(body["betas"])).max() > 0.1
    assert abs(body["global_orient"][1] - 0.35) < 0.25 and abs(body["transl"][2] + 3.0) < 0.4
    assert np.abs(np.array(body["body_pose"]) - default["body_pose"]).max() > 0.3
    # The views carry that body; view 0 is the photo (squared), seen by the camera the body was
    # fitted in; the other views ring the body starting from the photo's side.
    views = read_views(tmp_path / "views")
    assert views.smplx is not None and np.allclose(views.smplx["betas"][:10], body["betas"][:10])
    assert np.allclose(views.smplx["body_pose"], body["body_pose"])
    anchor = views.views[0]
    assert anchor.name == "photo" and len(views.views) == SMALL["views"]
    K, R, t = photo_camera(SIZE)
    assert np.allclose(anchor.camera.K, K) and np.allclose(anchor.camera.R, R)
    assert np.allclose(anchor.camera.t, t)
    square = square_photo(photo_scene["photo"], SIZE)
    assert np.array_equal(np.round(anchor.rgba[..., :3] * 255).astype(np.uint8), square.rgb)
    # The fitted body covers the photo's person: silhouette IoU from the photo's camera, at the
    # fit's resolution and at the views' (64 px, coarse: a pixel is 3 cm there).
    assert fit["diagnostics"]["mean_iou"] >= 0.9
    full = np.zeros((256, 256), bool)
    full[:, CROP:CROP + 192] = photo_scene["mask"]
    assert silhouette_iou(body, photo_camera(256), 256, full) >= 0.88
    assert silhouette_iou(body, (K, R, t), SIZE, anchor.mask > 0.5) >= 0.8
    # ...and the default A-pose body, placed by the same camera, would not.
    assert silhouette_iou({**default, "transl": body["transl"]}, photo_camera(256), 256, full) < 0.75
    stages = list(dict.fromkeys(e[1] for e in ctx.events))
    assert stages[:5] == ["load", "fit", "conditions", "generate", "views"], stages
    assert {"avatar.glb", "views/views.json"} <= set(result.files)
    assert json.loads((tmp_path / "views" / "views.json").read_text())["views"][0]["name"] == "photo"


def test_the_pose_estimator_role_is_run_and_its_scattered_keypoints_refused(
        tiny_env: Path, photo_scene: dict[str, Any], tmp_path: Path) -> None:
    """The tiny ViTPose (random weights) runs through the real processor and model; its keypoints
    do not agree with the silhouette, so the silhouette alone is fitted, and the record says so."""
    from backend.fitting.photo import detect_keypoints, square_photo
    from backend.jobs.photo_body import photo_body
    from backend.models.load import load_pose_estimator
    from backend.models.registry import ModelRegistry

    square = square_photo(photo_scene["photo"], 128)
    estimator = load_pose_estimator(registry=ModelRegistry.load(), device="cpu")
    mask = np.asarray(Image.fromarray(photo_scene["mask"]).resize((128, 128))) > 0
    kp = detect_keypoints(estimator, square.rgb, mask)
    assert kp.shape == (17, 3) and np.isfinite(kp).all() and ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all()
    alone = tmp_path / "photo.png"  # no keypoints file beside this copy
    alone.write_bytes((photo_scene["folder"] / "photo.png").read_bytes())
    params = SimpleNamespace(body=None, fit_body=True, keypoints=None, pose_estimator=True, photo_fov=40.0,
                             image=str(alone))
    messages: list[str] = []
    out = photo_body(photo_scene["photo"], params, SIZE, lambda f, m: messages.append(m))
    assert out.record["keypoints"]["source"] == "none"
    assert out.record["keypoints"]["estimator"]["used"] is False
    assert out.record["layout"] is None and out.record["diagnostics"]["mean_iou"] >= 0.85
    assert any("pose-estimator" in m for m in messages)
    # fit_body off (or a body given): nothing fitted, the photo still squared for the anchor view
    off = photo_body(photo_scene["photo"], SimpleNamespace(**{**vars(params), "fit_body": False}), SIZE,
                     lambda f, m: None)
    assert off.body is None and off.camera is None and off.rgb.shape == (SIZE, SIZE, 3)


def test_bad_keypoints_files_name_the_field(tiny_env: Path, photo_scene: dict[str, Any],
                                            tmp_path: Path) -> None:
    from backend.jobs.api import JobInputError

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    params = {**SMALL, "image": str(photo_scene["folder"] / "photo.png"), "keypoints": str(bad)}
    with pytest.raises(JobInputError, match=r"params\.keypoints: not a readable keypoints JSON"):
        generate_avatar("avatar.from_image", params, Recorder(tmp_path))
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"format": "avatar-studio.keypoints", "version": 1, "layout": "coco17",
                               "views": {"a": [[0, 0, 0]] * 17, "b": [[0, 0, 0]] * 17}}))
    with pytest.raises(JobInputError, match=r"params\.keypoints: no view named 'photo'"):
        generate_avatar("avatar.from_image", {**params, "keypoints": str(two)}, Recorder(tmp_path))


def test_cli_image_flags_become_the_photo_params(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import backend.jobs.generate_avatar as job
    from backend import cli
    from backend.fitting.photo import DEFAULT_FOV_Y_DEG
    from backend.jobs.api import JobInputError
    from protocol.kinds import contract, parse

    seen: list[tuple[str, dict[str, Any]]] = []

    def fake(kind: str, params: dict[str, Any], ctx: Any) -> Any:
        seen.append((kind, params))
        raise JobInputError("stop here")

    monkeypatch.setattr(job, "generate_avatar", fake)
    base = ["avatar", "--prompt", "x", "--image", str(tmp_path / "p.png"), "--out", str(tmp_path / "o")]
    flags = ["--keypoints", str(tmp_path / "k.json"), "--no-fit-body", "--photo-fov", "55"]
    assert cli.main([*base, *flags]) == 2
    assert cli.main(base) == 2
    (kind, flagged), (_, plain) = seen
    assert kind == "avatar.from_image"
    assert flagged["keypoints"] == str(tmp_path / "k.json")
    assert (flagged["fit_body"], flagged["photo_fov"]) == (False, 55.0)
    assert "keypoints" not in plain and plain["fit_body"] is True
    # the contract's defaults are the fit's own
    image = contract("avatar.from_image")
    assert image.param("photo_fov").default == DEFAULT_FOV_Y_DEG and image.param("fit_body").default is True
    assert parse("avatar.from_image", plain).photo_fov == DEFAULT_FOV_Y_DEG


def test_keypoints_beside_the_photo_are_found_inside_the_roots_only(photo_scene: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    from backend.jobs.confine import ConfinedFile
    from backend.jobs.photo_body import _keypoints_beside, photo_body

    folder = photo_scene["folder"]
    params = SimpleNamespace(body=None, fit_body=True, keypoints=None, pose_estimator=False, photo_fov=40.0,
                             image=str(folder / "photo.png"))
    out = photo_body(photo_scene["photo"], params, SIZE, lambda f, m: None)
    assert out.record["keypoints"] == {"source": "beside-photo", "file": "photo.keypoints.json"}
    assert out.record["layout"] == "coco17" and out.record["diagnostics"]["mean_keypoint_error_px"] < 1.5
    # A server's photo is a confined file: its neighbour is read through the same root check.
    inside = ConfinedFile((folder / "photo.png").resolve(), "photo.png", (str(folder.resolve()),))
    found = _keypoints_beside(inside)
    assert found is not None and found[0].read_bytes() == (folder / "photo.keypoints.json").read_bytes()
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "photo.png").write_bytes((folder / "photo.png").read_bytes())
    (outside / "secret.json").write_text((folder / "photo.keypoints.json").read_text())
    (root / "photo.keypoints.json").symlink_to(outside / "secret.json")  # leads out of the root
    confined = ConfinedFile((root / "photo.png").resolve(), "photo.png", (str(root.resolve()),))
    assert _keypoints_beside(confined) is None
    (root / "photo.keypoints.json").unlink()
    assert _keypoints_beside(confined) is None  # absent: nothing said either
