"""``footage.insert`` end to end beyond the 3D route itself: the shot's decomposition inside the
job (a person already in the shot removed and the scene filled behind them, the template written
under ``insert/layers/``), and the neural route (MIMO's decoder, backend/mimo) on tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation
from test_insert import Ctx  # the job context of the 3D-route tests

from backend.avatar.eval.metrics import psnr
from backend.footage.cgplate import make_plate, write_body_avatar
from backend.jobs.footage import footage_insert
from backend.models.registry import MODELS_FILE_ENV
from backend.render.threads import torch_threads
from protocol.cameras import CameraPath
from protocol.kinds import check_result

FPS = 30.0


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_body_avatar(tmp_path_factory.mktemp("routes-avatar") / "avatar")


def _write_frames(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(np.asarray(f, np.uint8)).save(folder / f"{i + 1:04d}.png")
    return folder


def _camera(plate, w: int, h: int, first: int = 1) -> dict:
    """The plate's cameras as a CameraPath whose first entry is footage frame ``first``."""
    payload = CameraPath(K=plate.K, R=plate.R, t=plate.t, width=w, height=h, fps=FPS).to_payload()
    return {**payload, "frame_start": first}


def _read(files: dict[str, Path], name: str) -> np.ndarray:
    return np.asarray(Image.open(files[name]))


def test_a_person_in_the_shot_is_removed_and_the_avatar_inserted_elsewhere(avatar_dir, tmp_path) -> None:
    """The shot shows a person walking (the truth of a CG plate); the job is given their masks and
    inserts the avatar on another path: where the person was (away from the new character) the
    composite is the empty plate again, filled from the frames that saw it."""
    frames, w, h = 12, 160, 120
    shot = make_plate(avatar_dir, frames, w, h, place=(-0.9, 0.0, 0.0), heading=90.0, fps=FPS, pillar=None)
    video = _write_frames(tmp_path / "shot", shot.truth)
    masks = np.stack([binary_dilation(c > 0, iterations=1) for c in shot.truth_cover])
    _write_frames(tmp_path / "masks", masks.astype(np.uint8) * 255)
    result = footage_insert({"video": str(video), "camera": _camera(shot, w, h), "fps": FPS,
                             "avatar": str(avatar_dir), "person_masks": str(tmp_path / "masks"),
                             "motion": "a-pose", "place": [0.9, 0.0, -1.0], "lighting": "flat",
                             "shadow": 0.0, "mp4": False}, Ctx(tmp_path / "work"))
    assert check_result("footage.insert", result.data, result.arrays) == []
    assert result.data["people"] == "masks"
    for layer in ("video", "masks", "human", "scene"):
        assert f"insert/layers/{layer}/{frames:06d}.png" in result.files, layer
    assert "insert/layers/config.json" in result.files
    comp = np.stack([_read(result.files, f"insert/composite/{n:06d}.png") for n in range(1, frames + 1)])
    alpha = np.stack([_read(result.files, f"insert/character/{n:06d}.png")[..., 3]
                      for n in range(1, frames + 1)])
    assert (alpha > 0).sum() > 500, "the avatar is in the picture"
    removed = masks & ~np.stack([binary_dilation(a > 0, iterations=2) for a in alpha])
    assert removed.sum() > 1000
    # The person walks across the frame, so the background behind them is seen in other frames.
    assert psnr(comp / 255.0, shot.plate / 255.0, removed) >= 30.0
    # The scene layer equals the plate there too, and the shot as given is kept under layers/video.
    video_layer = _read(result.files, "insert/layers/video/000001.png")
    np.testing.assert_array_equal(video_layer, shot.truth[0])


@pytest.fixture(scope="module")
def tiny_route_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.models.mimo import write_tiny_route_models

    with torch_threads(1):
        return write_tiny_route_models(tmp_path_factory.mktemp("tiny-route"))


def _neural(avatar_dir: Path, plate, video: Path, depth: Path, work: Path, **extra) -> object:
    w, h = plate.plate.shape[2], plate.plate.shape[1]
    camera = _camera(plate, w, h, extra.get("frame_start", 1))
    params = {"video": str(video), "camera": camera, "fps": FPS, "avatar": str(avatar_dir),
              "depth": str(depth), "place": [-0.9, 0.0, 0.0], "heading": 90.0, "route": "neural",
              "steps": 2, "window": 4, "overlap": 1, "guidance": 1.5, "mp4": False, **extra}
    with torch_threads(1):
        return footage_insert(params, Ctx(work))


def test_the_neural_route_runs_through_the_job_on_tiny_models(avatar_dir, tiny_route_models, tmp_path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_FILE_ENV, str(tiny_route_models))
    frames, w, h = 12, 96, 64  # the walk passes behind the pillar in the last frames
    plate = make_plate(avatar_dir, frames, w, h, fps=FPS)
    video = _write_frames(tmp_path / "plate", plate.plate)
    np.save(tmp_path / "depth.npy", plate.depth)
    first = _neural(avatar_dir, plate, video, tmp_path / "depth.npy", tmp_path / "a")
    assert check_result("footage.insert", first.data, first.arrays) == []
    assert first.data["route"] == "neural" and first.data["lighting"] == "neural"
    # Nothing was removed or estimated: no template of the shot is written again.
    assert first.data["people"] == "none" and not any(n.startswith("insert/layers/") for n in first.files)
    numbers = range(1, frames + 1)
    comp = np.stack([_read(first.files, f"insert/composite/{n:06d}.png") for n in numbers])
    occl = np.stack([_read(first.files, f"insert/occlusion/{n:06d}.png") for n in numbers])
    assert comp.shape == (frames, h, w, 3)
    # The pillar in front of the character stays the plate's wherever the matte is full.
    full = occl == 255
    assert full.sum() > 20
    np.testing.assert_array_equal(comp[full], plate.plate[full])
    assert (_read(first.files, "insert/shadow/000001.png") == 0).all()
    assert (first.arrays["character_pixels"] > 0).all()
    # Same seed, same frames; another seed, other frames.
    again = _neural(avatar_dir, plate, video, tmp_path / "depth.npy", tmp_path / "b")
    other = _neural(avatar_dir, plate, video, tmp_path / "depth.npy", tmp_path / "c", seed=7)
    same = np.stack([_read(again.files, f"insert/composite/{n:06d}.png") for n in numbers])
    diff = np.stack([_read(other.files, f"insert/composite/{n:06d}.png") for n in numbers])
    np.testing.assert_array_equal(comp, same)
    assert np.abs(diff.astype(int) - comp.astype(int)).mean() > 0.5


def test_the_neural_route_without_weights_names_the_role(avatar_dir, tmp_path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.models.registry import ModelMissingError

    (tmp_path / "models.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv(MODELS_FILE_ENV, str(tmp_path / "models.toml"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    plate = make_plate(avatar_dir, 2, 64, 48, fps=FPS)
    video = _write_frames(tmp_path / "plate", plate.plate)
    np.save(tmp_path / "depth.npy", plate.depth)
    with pytest.raises(ModelMissingError, match="mimo-"):
        _neural(avatar_dir, plate, video, tmp_path / "depth.npy", tmp_path / "w")
    assert not (tmp_path / "w" / "insert" / "composite").exists()
