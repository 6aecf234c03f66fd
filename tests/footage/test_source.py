"""Footage in (backend/footage/source.py): frames from a real H.264 file and from image folders,
the camera per frame, depth and masks, and the clear refusals of hostile or mismatched input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.footage.source import (
    FootageError,
    read_depth,
    read_footage,
    read_masks,
    shot_camera,
)


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Smooth, distinct frames (a moving gradient) that H.264 keeps to within a few levels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = [np.stack([x * 3 + 8 * i, y * 4, 128 + 0 * x + 10 * i], -1) for i in range(n)]
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_video(path: Path, frames: np.ndarray, fps: float = 24.0) -> None:
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", quality=9,
                                      macro_block_size=1, ffmpeg_log_level="error")
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()


def _write_folder(folder: Path, frames: np.ndarray, start: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"plate_{start + i:04d}.png")
    return folder


def _camera(n: int, w: int = 64, h: int = 48, frame_start: int | None = None) -> dict:
    K = np.tile(np.array([[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]]), (n, 1, 1))
    R = np.tile(np.eye(3), (n, 1, 1))
    t = np.stack([[0.1 * i, 0.0, 3.0] for i in range(n)])
    cam = {"K": K, "R": R, "t": t, "width": w, "height": h}
    if frame_start is not None:
        cam["frame_start"] = frame_start
    return cam


def test_video_file_frames_in_range(tmp_path: Path) -> None:
    frames = _frames(10)
    _write_video(tmp_path / "shot.mp4", frames, fps=24.0)
    footage = read_footage(tmp_path / "shot.mp4", frame_start=3, frames=5)
    assert footage.kind == "video" and footage.fps == pytest.approx(24.0)
    assert footage.numbers == (3, 4, 5, 6, 7)
    assert footage.frames.shape == (5, 48, 64, 3)
    err = np.abs(footage.frames.astype(int) - frames[2:7].astype(int)).mean(axis=(1, 2, 3))
    assert (err < 4).all(), err  # lossy, but each decoded frame is the one asked for
    other = np.abs(footage.frames[0].astype(int) - frames[3].astype(int)).mean()
    assert other > err[0] + 2


def test_image_folder_in_number_order_and_to_the_end(tmp_path: Path) -> None:
    frames = _frames(6)
    folder = _write_folder(tmp_path / "plate", frames, start=101)
    (folder / "notes.txt").write_text("ignored")
    footage = read_footage(folder, frame_start=2, fps=30.0)
    assert footage.numbers == (2, 3, 4, 5, 6) and footage.fps == 30.0
    np.testing.assert_array_equal(footage.frames, frames[1:])


@pytest.mark.parametrize("content", [b"not a video at all", b"\x00" * 1000])
def test_unreadable_video_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(content)
    with pytest.raises(FootageError, match=re.escape("video: broken.mp4 is not a readable video")):
        read_footage(bad)


def test_range_past_the_end_is_refused(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "p", _frames(4))
    with pytest.raises(FootageError, match="frames 3-6 asked, it has 4"):
        read_footage(folder, frame_start=3, frames=4)
    _write_video(tmp_path / "s.mp4", _frames(4))
    with pytest.raises(FootageError, match="frames 2-9 asked"):
        read_footage(tmp_path / "s.mp4", frame_start=2, frames=8)


def test_mixed_sizes_in_a_folder_are_refused(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "p", _frames(3))
    Image.fromarray(_frames(1, 32, 32)[0]).save(folder / "plate_0004.png")
    with pytest.raises(FootageError, match=re.escape("plate_0004.png is 32x32")):
        read_footage(folder)


def test_camera_static_per_frame_and_too_short(tmp_path: Path) -> None:
    footage = read_footage(_write_folder(tmp_path / "p", _frames(6)), frame_start=2, frames=4)
    static = shot_camera(_camera(1), footage)
    assert static.K.shape == (4, 3, 3) and static.static
    # one entry per footage frame, starting at footage frame 1: frames 2-5 pick entries 1-4
    moving = shot_camera(_camera(6, frame_start=1), footage)
    np.testing.assert_allclose(moving.t[:, 0], [0.1, 0.2, 0.3, 0.4])
    assert not moving.static
    # no frame_start: the path starts at the first frame used
    np.testing.assert_allclose(shot_camera(_camera(4), footage).t[:, 0], [0.0, 0.1, 0.2, 0.3])
    with pytest.raises(FootageError, match="covers footage frames 2-4, the job uses 2-5"):
        shot_camera(_camera(3), footage)
    with pytest.raises(FootageError, match="sized 32x48, the footage is 64x48"):
        shot_camera(_camera(1, w=32), footage)


def test_depth_npy_folder_exr_and_wrong_size(tmp_path: Path) -> None:
    import OpenEXR

    footage = read_footage(_write_folder(tmp_path / "p", _frames(3)))
    depth = np.random.default_rng(0).uniform(1, 5, (3, 48, 64)).astype(np.float32)
    depth[0, 0, 0] = np.nan
    depth[0, 0, 1] = 0.0
    np.save(tmp_path / "d.npy", depth)
    got = read_depth(tmp_path / "d.npy", footage)
    assert np.isinf(got[0, 0, :2]).all()
    np.testing.assert_array_equal(got[1:], depth[1:])
    exr_dir = tmp_path / "exr"
    exr_dir.mkdir()
    for i in range(3):  # Blender's multilayer naming of the Z pass
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        channels = {"ViewLayer.Depth.Z": depth[i].copy()}
        with OpenEXR.File(header, channels) as f:
            f.write(str(exr_dir / f"z_{i + 1:04d}.exr"))
    np.testing.assert_array_equal(read_depth(exr_dir, footage)[1:], depth[1:])
    np.save(tmp_path / "small.npy", depth[:, :24])
    with pytest.raises(FootageError, match=r"small.npy has shape \[3, 24, 64\], the job needs \[3, 48, 64\]"):
        read_depth(tmp_path / "small.npy", footage)


class _TouchOnLoad:
    """Unpickling this creates a file: the proof that a load executed client-supplied code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_depth_npy_is_never_unpickled(tmp_path: Path) -> None:
    footage = read_footage(_write_folder(tmp_path / "p", _frames(1)))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([_TouchOnLoad(marker)], dtype=object), allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(FootageError, match=re.escape("evil.npy is not a readable .npy")):
        read_depth(evil, footage)
    assert not marker.exists()


def test_masks_grey_and_alpha(tmp_path: Path) -> None:
    footage = read_footage(_write_folder(tmp_path / "p", _frames(2)))
    folder = tmp_path / "m"
    folder.mkdir()
    grey = np.zeros((48, 64), np.uint8)
    grey[10:20, 5:15] = 255
    Image.fromarray(grey).save(folder / "m0001.png")
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 3][30:40, 30:40] = 128
    Image.fromarray(rgba).save(folder / "m0002.png")
    masks = read_masks(folder, footage, "person_masks")
    assert masks.shape == (2, 48, 64)
    assert masks[0].sum() == 100 and masks[0, 15, 10] == 1.0
    assert masks[1, 35, 35] == pytest.approx(128 / 255) and masks[1].sum() == pytest.approx(100 * 128 / 255)
    Image.fromarray(grey[:10]).save(folder / "m0002.png")
    with pytest.raises(FootageError, match=re.escape("person_masks: m0002.png is 64x10")):
        read_masks(folder, footage, "person_masks")


def test_depth_and_mask_folders_hold_the_frames_used_or_the_whole_shot(tmp_path: Path) -> None:
    """One rule for both folders: exactly the frames used (in order), or the whole shot, picked by
    footage frame number; anything shorter is refused naming the frames the job uses."""
    footage = read_footage(_write_folder(tmp_path / "p", _frames(5)), frame_start=3, frames=2)
    values = np.arange(1, 6, dtype=np.float32)  # frame k of the shot: depth k, mask grey 10 k
    whole_depth, whole_masks = tmp_path / "whole_depth", tmp_path / "whole_masks"
    used_depth, used_masks = tmp_path / "used_depth", tmp_path / "used_masks"
    for folder in (whole_depth, whole_masks, used_depth, used_masks):
        folder.mkdir()
    for k in range(1, 6):
        np.save(whole_depth / f"d{k:04d}.npy", np.full((48, 64), values[k - 1], np.float32))
        Image.fromarray(np.full((48, 64), 10 * k, np.uint8)).save(whole_masks / f"m{k:04d}.png")
    for i, k in enumerate((3, 4)):  # numbered from 1 as a render of the used range would be
        np.save(used_depth / f"d{i + 1:04d}.npy", np.full((48, 64), values[k - 1], np.float32))
        Image.fromarray(np.full((48, 64), 10 * k, np.uint8)).save(used_masks / f"m{i + 1:04d}.png")
    for depth_dir, mask_dir in ((whole_depth, whole_masks), (used_depth, used_masks)):
        assert read_depth(depth_dir, footage)[:, 0, 0].tolist() == [3.0, 4.0]
        assert (read_masks(mask_dir, footage, "occluder_masks")[:, 0, 0] * 255).round().tolist() == [30, 40]
    for k in (4, 5):  # 3 files: neither the 2 frames used nor up to frame 4 of the shot
        (whole_depth / f"d{k:04d}.npy").unlink()
        (whole_masks / f"m{k:04d}.png").unlink()
    with pytest.raises(FootageError, match=re.escape(
            "depth: whole_depth holds 3 frames, the job uses 2 frames (footage frames 3-4)")):
        read_depth(whole_depth, footage)
    with pytest.raises(FootageError, match=re.escape(
            "occluder_masks: whole_masks holds 3 masks, the job uses 2 frames (footage frames 3-4)")):
        read_masks(whole_masks, footage, "occluder_masks")
