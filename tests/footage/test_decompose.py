"""footage.decompose (backend/footage/decompose.py, backend/jobs/footage_decompose.py, the CLI in
backend/commands/footage_decompose.py): the layers of a CG plate, the template folder with exactly
the contract's files, a contract-valid job result, progress and cancel, and bad input refused with
one clear error and nothing written."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
from decompose_plate import make_plate, psnr
from PIL import Image

from backend.footage.decompose import Layers, decompose, write_template
from backend.footage.source import Footage, FootageError, ShotCamera
from backend.jobs.api import JOB_KINDS, JobCancelled, JobInputError
from backend.jobs.footage_decompose import footage_decompose
from protocol.kinds import check_result, contract
from protocol.kinds_footage import FOOTAGE_DECOMPOSE_LAYERS


class Ctx:
    def __init__(self, work_dir: Path, cancel_after: int | None = None) -> None:
        self.work_dir = work_dir
        self.events: list[tuple[float, str, str]] = []
        self.checks = 0
        self.cancel_after = cancel_after

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview=None) -> None:
        self.events.append((fraction, message, stage))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled()


def _footage(plate, first: int = 1) -> Footage:
    return Footage(plate.frames, tuple(range(first, first + len(plate.frames))), 24.0, "images")


def _camera(plate) -> ShotCamera:
    return ShotCamera(plate.K, plate.R, plate.t)


def _write_shot(folder: Path, plate, masks: bool = True, depth: bool = True) -> dict:
    """The plate as a job's inputs: PNG frames, PNG masks, one depth .npy, a CameraPath payload."""
    (folder / "plate").mkdir(parents=True)
    for i, f in enumerate(plate.frames):
        Image.fromarray(f).save(folder / "plate" / f"shot.{i + 1:04d}.png")
    params: dict = {"video": str(folder / "plate")}
    if masks:
        (folder / "masks").mkdir()
        for i, m in enumerate(plate.mask):
            Image.fromarray((m * 255).astype(np.uint8)).save(folder / "masks" / f"mask{i + 1:03d}.png")
        params["person_masks"] = str(folder / "masks")
    if depth:
        np.save(folder / "depth.npy", np.where(np.isfinite(plate.depth), plate.depth, 0).astype(np.float32))
        params["depth"] = str(folder / "depth.npy")
    h, w = plate.frames.shape[1:3]
    params["camera"] = {"K": plate.K, "R": plate.R, "t": plate.t, "width": w, "height": h}
    return params


def _contract_patterns() -> list[re.Pattern[str]]:
    out = []
    for name, _ in contract("footage.decompose").result.files:
        out.append(re.compile(re.escape(name).replace("%06d", r"\d{6}") + "$"))
    return out


# ----------------------------------------------------------------------------------- layers


def test_layers_of_a_static_plate_with_masks() -> None:
    plate = make_plate()
    layers = decompose(_footage(plate), _camera(plate), person_masks=plate.mask)
    n, h, w = plate.mask.shape
    assert isinstance(layers, Layers)
    assert layers.scene.shape == (n, h, w, 3) and layers.scene.dtype == np.uint8
    assert layers.person.shape == (n, h, w) and layers.person.dtype == np.float32
    assert layers.human.shape == (n, h, w, 4) and layers.human.dtype == np.uint8
    assert layers.people == "masks" and layers.depth_source == "none" and layers.depth is None
    assert layers.removed_pixels > plate.mask.sum() and layers.propagated_fraction == 1.0
    removed = plate.mask > 0  # the scene is the background where the person was
    assert psnr(layers.scene[removed], plate.background[removed]) >= 30.0
    # human: the person's pixels with the mask as alpha, nothing elsewhere
    assert np.array_equal(layers.human[..., 3], np.rint(plate.mask * 255).astype(np.uint8))
    assert np.array_equal(layers.human[removed][:, :3], plate.frames[removed])
    assert not layers.human[~removed].any()


def test_layers_with_depth_give_the_scene_depth_behind_removed_people() -> None:
    plate = make_plate(pan=1.2, yaw_deg=8.0)
    layers = decompose(_footage(plate), _camera(plate), depth=plate.depth, person_masks=plate.mask)
    assert layers.depth_source == "given" and layers.method == "reprojection-depth"
    person = plate.mask > 0.5
    rel = np.abs(layers.depth[person] - plate.background_depth[person]) / plate.background_depth[person]
    assert np.median(rel) < 0.01  # the wall/floor behind, not the person
    assert psnr(layers.scene[person], plate.background[person]) >= 30.0


def test_no_people_leaves_the_shot_as_it_is() -> None:
    plate = make_plate(n=3)
    layers = decompose(_footage(plate), None)
    assert layers.people == "none" and layers.removed_pixels == 0 and layers.propagated_fraction == 0.0
    assert np.array_equal(layers.scene, plate.frames) and not layers.human.any()


def test_decompose_refuses_mismatched_arrays() -> None:
    plate = make_plate(n=3)
    foot, cam = _footage(plate), _camera(plate)
    with pytest.raises(FootageError, match="person_masks: shape"):
        decompose(foot, cam, person_masks=plate.mask[:2])
    with pytest.raises(FootageError, match="depth: shape"):
        decompose(foot, cam, depth=plate.depth[:, :, :-1])
    with pytest.raises(FootageError, match="exclude"):
        decompose(foot, cam, person_masks=plate.mask, segment=True)
    with pytest.raises(FootageError, match="needs the shot's camera"):
        decompose(foot, None, depth_estimator=True)
    with pytest.raises(FootageError, match="inpaint"):
        decompose(foot, cam, inpaint="magic")


# ----------------------------------------------------------------------------------- template


def test_template_has_exactly_the_contracts_files(tmp_path: Path) -> None:
    plate = make_plate(n=4)
    foot = _footage(plate, first=11)  # numbered by footage frame: 11..14
    layers = decompose(foot, _camera(plate), depth=plate.depth, person_masks=plate.mask)
    files = write_template(tmp_path / "t", foot, _camera(plate), layers, {"note": "x"})
    root = tmp_path / "t"
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert sorted(files) == on_disk
    expected = [f"{layer}/{k:06d}.png" for layer in FOOTAGE_DECOMPOSE_LAYERS for k in range(11, 15)]
    expected += [f"depth/{k:06d}.npy" for k in range(11, 15)] + ["config.json"]
    assert on_disk == sorted(expected)
    assert all(any(p.match(f"template/{name}") for p in _contract_patterns()) for name in on_disk)
    # the files hold the layers
    assert np.array_equal(np.asarray(Image.open(files["video/000012.png"])), plate.frames[1])
    assert np.array_equal(np.asarray(Image.open(files["scene/000013.png"])), layers.scene[2])
    human = Image.open(files["human/000011.png"])
    assert human.mode == "RGBA" and np.array_equal(np.asarray(human), layers.human[0])
    mask = np.asarray(Image.open(files["masks/000014.png"]))
    assert mask.dtype == np.uint8 and np.array_equal(mask, np.rint(plate.mask[3] * 255).astype(np.uint8))
    depth = np.load(files["depth/000011.npy"], allow_pickle=False)
    assert depth.dtype == np.float32 and np.array_equal(depth, layers.depth[0], equal_nan=True)
    config = json.loads(files["config.json"].read_text())
    assert config["frame_numbers"] == [11, 12, 13, 14] and config["people"] == "masks"
    assert config["layers"] == [*FOOTAGE_DECOMPOSE_LAYERS, "depth"] and config["note"] == "x"
    np.testing.assert_allclose(config["camera"]["K"], plate.K)


def test_template_without_people_or_depth_has_video_and_scene_only(tmp_path: Path) -> None:
    plate = make_plate(n=2)
    layers = decompose(_footage(plate), None)
    files = write_template(tmp_path, _footage(plate), None, layers, {})
    assert sorted(files) == ["config.json", "scene/000001.png", "scene/000002.png", "video/000001.png",
                             "video/000002.png"]


# ----------------------------------------------------------------------------------- job


def test_job_is_registered_at_its_module() -> None:
    kind = JOB_KINDS["footage.decompose"]
    assert kind.module == "backend.jobs.footage_decompose" and kind.load() is footage_decompose


def test_job_returns_a_contract_valid_result(tmp_path: Path) -> None:
    plate = make_plate(n=6, pan=0.8, yaw_deg=6.0)
    params = _write_shot(tmp_path / "in", plate)
    ctx = Ctx(tmp_path / "work")
    ctx.work_dir.mkdir()
    result = footage_decompose(params, ctx)
    assert check_result("footage.decompose", result.data, result.arrays) == []
    declared = {k for k, _ in contract("footage.decompose").result.data}
    assert declared <= set(result.data)
    assert result.data["folder"] == "template" and result.data["frames"] == 6
    assert result.data["people"] == "masks" and result.data["depth_source"] == "given"
    assert result.data["propagated_fraction"] > 0.9
    patterns = _contract_patterns()
    assert all(any(p.match(name) for p in patterns) for name in result.files)
    assert len(result.files) == 6 * 5 + 1  # 4 layers + depth per frame, config.json
    assert all(path.is_file() and path.is_relative_to(ctx.work_dir / "template")
               for path in result.files.values())
    assert not (ctx.work_dir / "inputs").exists()  # the private copies are gone
    np.testing.assert_allclose(result.arrays["camera_R"], plate.R)
    assert result.arrays["camera_K"].dtype == np.float64
    fractions = [e[0] for e in ctx.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"read", "inpaint", "write"} <= {e[2] for e in ctx.events}
    config = json.loads(result.files["template/config.json"].read_text())
    assert config["sources"]["video"] == params["video"]  # as the client wrote it


def test_job_without_camera_assumes_a_static_one(tmp_path: Path) -> None:
    plate = make_plate(n=4)
    params = _write_shot(tmp_path / "in", plate, depth=False)
    del params["camera"]
    ctx = Ctx(tmp_path / "work")
    result = footage_decompose(params, ctx)
    assert check_result("footage.decompose", result.data, result.arrays) == []
    assert result.data["camera_source"] == "assumed" and result.data["propagation"] == "static"
    assert result.arrays["camera_K"].shape == (4, 3, 3)


def _bad(tmp_path: Path, plate, change) -> tuple[Ctx, str]:
    params = _write_shot(tmp_path / "in", plate)
    change(tmp_path / "in", params)
    ctx = Ctx(tmp_path / "work")
    ctx.work_dir.mkdir()
    with pytest.raises(JobInputError) as err:
        footage_decompose(params, ctx)
    assert list(ctx.work_dir.iterdir()) == []  # nothing written
    return ctx, str(err.value)


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path: Path) -> None:
    plate = make_plate(n=4)

    def broken_video(folder: Path, params: dict) -> None:
        (folder / "shot.mp4").write_bytes(b"\x00not a video" * 100)
        params["video"] = str(folder / "shot.mp4")

    def mask_wrong_size(folder: Path, params: dict) -> None:
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "masks" / "mask002.png")

    def masks_too_few(folder: Path, params: dict) -> None:
        (folder / "masks" / "mask004.png").unlink()

    def depth_wrong_size(folder: Path, params: dict) -> None:
        np.save(folder / "depth.npy", np.ones((4, 10, 10), np.float32))

    def camera_too_short(folder: Path, params: dict) -> None:
        cam = params["camera"]
        params["camera"] = {**cam, "K": cam["K"][:2], "R": cam["R"][:2], "t": cam["t"][:2]}

    cases = [(broken_video, "not a readable video"),
             (mask_wrong_size, "person_masks: mask002.png is 10x10"),
             (masks_too_few, "person_masks: .* holds 3 masks"),
             (depth_wrong_size, "depth: depth.npy has shape"),
             (camera_too_short, "camera: covers footage frames 1-2")]
    for i, (change, message) in enumerate(cases):
        _, text = _bad(tmp_path / str(i), plate, change)
        assert re.search(message, text), (change.__name__, text)
        assert "\n" not in text and str(tmp_path) not in text  # one line, no server paths


def test_cancel_stops_the_job_and_writes_no_template(tmp_path: Path) -> None:
    plate = make_plate(n=6)
    params = _write_shot(tmp_path / "in", plate, depth=False)
    ctx = Ctx(tmp_path / "work", cancel_after=3)
    ctx.work_dir.mkdir()
    with pytest.raises(JobCancelled):
        footage_decompose(params, ctx)
    assert list(ctx.work_dir.iterdir()) == []


# ----------------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> argparse.Namespace:
    from backend.commands.footage_decompose import add_parser

    parser = argparse.ArgumentParser(prog="avatar-studio footage")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_writes_the_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from protocol.cameras import CameraPath

    plate = make_plate(n=4)
    params = _write_shot(tmp_path / "in", plate, depth=True)
    cam = params["camera"]
    camera_json = tmp_path / "in" / "camera.json"
    camera_json.write_text(CameraPath(cam["K"], cam["R"], cam["t"], cam["width"], cam["height"]).to_json())
    out = tmp_path / "out"
    args = _cli(["decompose", "--video", params["video"], "--camera", str(camera_json), "--depth",
                 params["depth"], "--person-masks", params["person_masks"], "--out", str(out), "--json"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 4 and summary["people"] == "masks" and summary["files"] == 4 * 5 + 1
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(names) == 21 and "scene/000004.png" in names and "depth/000001.npy" in names


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plate = make_plate(n=3)
    params = _write_shot(tmp_path / "in", plate, depth=False)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(Path(params["person_masks"]) / "mask001.png")
    out = tmp_path / "out"
    args = _cli(["decompose", "--video", params["video"], "--person-masks", params["person_masks"],
                 "--out", str(out)])
    assert args.func(args) == 2
    assert "person_masks: mask001.png is 5x5" in capsys.readouterr().err
    assert not out.exists()
    args = _cli(["decompose", "--video", params["video"], "--camera", str(tmp_path / "nope.json"),
                 "--out", str(out)])
    assert args.func(args) == 2 and not out.exists()
    assert "--camera" in capsys.readouterr().err


def test_job_reads_a_video_file_with_a_frame_range(tmp_path: Path) -> None:
    import imageio_ffmpeg

    plate = make_plate(n=6, h=48, w=64, focal=60.0)
    video = tmp_path / "shot.mp4"
    gen = imageio_ffmpeg.write_frames(str(video), (64, 48), fps=24.0, codec="libx264", quality=9,
                                      macro_block_size=1, ffmpeg_log_level="error")
    gen.send(None)
    for f in plate.frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    ctx = Ctx(tmp_path / "work")
    result = footage_decompose({"video": str(video), "frame_start": 3, "frames": 3}, ctx)
    assert check_result("footage.decompose", result.data, result.arrays) == []
    assert result.data["frame_start"] == 3 and result.data["frames"] == 3 and result.data["fps"] == 24.0
    assert result.data["people"] == "none" and result.data["removed_pixels"] == 0
    assert sorted(result.files) == sorted([f"template/{layer}/{k:06d}.png" for layer in ("video", "scene")
                                           for k in (3, 4, 5)] + ["template/config.json"])
    decoded = np.asarray(Image.open(result.files["template/video/000004.png"])).astype(float)
    assert np.abs(decoded - plate.frames[3]).mean() < 6.0  # frame 4 of the file, through H.264
