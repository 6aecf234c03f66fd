"""Footage in: the frames of a shot (a video file or a folder of numbered images), its camera per
frame, its depth and mask folders, read and checked against each other before any work starts.

Everything here is client input (paths already confined to the server's input roots by the
contract's hook): sizes come from headers and are bounded before a frame is decoded
(:data:`FOOTAGE_MAX_FRAMES`, :data:`FOOTAGE_MAX_PIXELS`, :data:`FOOTAGE_MAX_SIDE`); a file that does
not decode, a camera path that does not cover the frames used, depth or masks of the wrong size
raise :class:`FootageError` naming the input, and nothing has been written.

Frame numbers are the footage's own, 1-based: frame ``n`` is the ``n``-th frame of the video, or
the ``n``-th image of the folder in the order of the number in its name (``0001.png``,
``frame_2.png``...). Video is decoded with imageio-ffmpeg (the ffmpeg binary it ships), images
with Pillow, EXR with OpenEXR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protocol.kinds_footage import (
    FOOTAGE_DEPTH_SUFFIXES,
    FOOTAGE_IMAGE_SUFFIXES,
    FOOTAGE_MAX_FRAMES,
    FOOTAGE_MAX_PIXELS,
    FOOTAGE_MAX_SIDE,
    FOOTAGE_VIDEO_SUFFIXES,
)

IMAGE_FOLDER_FPS = 25.0  # a folder of images carries no rate: Blender's default scene rate


class FootageError(ValueError):
    """Footage input that cannot be used; the message names the input and what is wrong."""


@dataclass(frozen=True)
class Footage:
    frames: np.ndarray  # (F, H, W, 3) uint8
    numbers: tuple[int, ...]  # the footage frame number of each, 1-based
    fps: float
    kind: str  # "video" | "images"

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class ShotCamera:
    """The camera of each frame used (world -> camera, OpenCV, pixels): arrays of F entries."""

    K: np.ndarray  # (F, 3, 3) float64
    R: np.ndarray  # (F, 3, 3) float64
    t: np.ndarray  # (F, 3) float64

    @property
    def static(self) -> bool:
        return bool(np.allclose(self.R, self.R[:1]) and np.allclose(self.t, self.t[:1])
                    and np.allclose(self.K, self.K[:1]))


# ----------------------------------------------------------------------------------- frames


def _check_range(total: int | None, frame_start: int, frames: int | None, what: str) -> range:
    last_wanted = None if frames is None else frame_start + frames - 1
    if total is not None:
        if frame_start > total:
            raise FootageError(f"{what}: frame_start {frame_start} is past its last frame ({total})")
        if last_wanted is not None and last_wanted > total:
            raise FootageError(f"{what}: frames {frame_start}-{last_wanted} asked, it has {total}")
        last = last_wanted if last_wanted is not None else total
    else:
        last = last_wanted if last_wanted is not None else frame_start + FOOTAGE_MAX_FRAMES - 1
    return range(frame_start, last + 1)


def _check_size(width: int, height: int, count: int, what: str) -> None:
    if not (0 < width <= FOOTAGE_MAX_SIDE and 0 < height <= FOOTAGE_MAX_SIDE):
        raise FootageError(f"{what}: {width}x{height} pixels, sides must be in [1, {FOOTAGE_MAX_SIDE}]")
    if count > FOOTAGE_MAX_FRAMES:
        raise FootageError(f"{what}: {count} frames asked, at most {FOOTAGE_MAX_FRAMES} per job")
    if width * height * count > FOOTAGE_MAX_PIXELS:
        raise FootageError(f"{what}: {count} frames of {width}x{height} exceed {FOOTAGE_MAX_PIXELS} pixels")


def numbered_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """The files of ``folder`` ending in ``suffixes`` that carry a number in their name, ordered by
    that number (the last run of digits of the stem)."""
    found: list[tuple[int, str, Path]] = []
    for path in folder.iterdir():
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        digits = re.findall(r"\d+", path.stem)
        if digits:
            found.append((int(digits[-1]), path.name, path))
    found.sort()
    return [p for _, _, p in found]


def _read_image(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.width > FOOTAGE_MAX_SIDE or img.height > FOOTAGE_MAX_SIDE:
                raise FootageError(f"{what}: {path.name} is {img.width}x{img.height}, too large")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FootageError:
        raise
    except Exception as exc:  # Pillow raises many types for broken files
        raise FootageError(f"{what}: {path.name} is not a readable image ({type(exc).__name__})") from None


def _read_image_folder(folder: Path, frame_start: int, frames: int | None, fps: float | None) -> Footage:
    files = numbered_files(folder, FOOTAGE_IMAGE_SUFFIXES)
    if not files:
        raise FootageError(
            f"video: {folder.name} holds no numbered {'/'.join(FOOTAGE_IMAGE_SUFFIXES)} images")
    used = _check_range(len(files), frame_start, frames, "video")
    first = _read_image(files[used[0] - 1], "video")
    _check_size(first.shape[1], first.shape[0], len(used), "video")
    out = np.empty((len(used), *first.shape), np.uint8)
    out[0] = first
    for i, n in enumerate(used[1:], start=1):
        img = _read_image(files[n - 1], "video")
        if img.shape != first.shape:
            raise FootageError(f"video: {files[n - 1].name} is {img.shape[1]}x{img.shape[0]}, "
                               f"the first frame {first.shape[1]}x{first.shape[0]}")
        out[i] = img
    return Footage(out, tuple(used), float(fps or IMAGE_FOLDER_FPS), "images")


def _read_video(path: Path, frame_start: int, frames: int | None, fps: float | None) -> Footage:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = reader.__next__()
    except Exception as exc:  # ffmpeg could not open it: imageio-ffmpeg raises OSError/RuntimeError
        raise FootageError(f"video: {path.name} is not a readable video ({type(exc).__name__})") from None
    try:
        width, height = (int(v) for v in meta["size"])
        rate = float(meta.get("fps") or 0.0)
        duration = float(meta.get("duration") or 0.0)
        # The header's estimate of the frame count: only to refuse early; decoding stops at the end.
        estimate = round(duration * rate) if rate > 0 and duration > 0 else None
        if estimate is not None and frame_start > estimate + 1:
            raise FootageError(f"video: frame_start {frame_start} is past its ~{estimate} frames")
        want = frames if frames is not None else FOOTAGE_MAX_FRAMES
        if estimate is not None and frames is None:
            want = min(want, max(estimate - frame_start + 1, 1))
        _check_size(width, height, want, "video")
        out: list[np.ndarray] = []
        n_bytes = width * height * 3
        for number, buffer in enumerate(reader, start=1):
            if number < frame_start:
                continue
            if len(buffer) != n_bytes:
                raise FootageError(f"video: frame {number} of {path.name} decoded to a wrong size")
            out.append(np.frombuffer(buffer, np.uint8).reshape(height, width, 3).copy())
            if len(out) == want:
                break
    finally:
        reader.close()
    if not out:
        raise FootageError(f"video: {path.name} has no frame {frame_start}")
    if frames is not None and len(out) < frames:
        raise FootageError(f"video: frames {frame_start}-{frame_start + frames - 1} asked, "
                           f"it ends at frame {frame_start + len(out) - 1}")
    used = tuple(range(frame_start, frame_start + len(out)))
    return Footage(np.stack(out), used, float(fps or rate or IMAGE_FOLDER_FPS), "video")


def read_footage(path: str | Path, frame_start: int = 1, frames: int | None = None,
                 fps: float | None = None) -> Footage:
    """The frames ``frame_start .. frame_start + frames - 1`` (to the end by default) of a video
    file or a folder of numbered images."""
    path = Path(path)
    if path.is_dir():
        return _read_image_folder(path, frame_start, frames, fps)
    if path.suffix.lower() not in FOOTAGE_VIDEO_SUFFIXES:
        raise FootageError(
            f"video: {path.name} is neither a folder nor a {'/'.join(FOOTAGE_VIDEO_SUFFIXES)} file")
    if not path.is_file():
        raise FootageError(f"video: {path.name} does not exist")
    return _read_video(path, frame_start, frames, fps)


# ----------------------------------------------------------------------------------- camera


def shot_camera(camera: Mapping[str, Any], footage: Footage) -> ShotCamera:
    """The camera of each frame used from a CameraPath payload: one entry (a static camera), or
    entries whose first is the footage frame ``camera["frame_start"]`` (default: the first frame
    used) covering every frame used. Its size must be the footage's."""
    K, R, t = (np.asarray(camera[k], np.float64) for k in ("K", "R", "t"))
    size = (int(camera["width"]), int(camera["height"]))
    if size != (footage.width, footage.height):
        raise FootageError(
            f"camera: sized {size[0]}x{size[1]}, the footage is {footage.width}x{footage.height}")
    n = len(footage)
    if len(K) == 1:
        return ShotCamera(np.repeat(K, n, 0), np.repeat(R, n, 0), np.repeat(t, n, 0))
    first = int(camera.get("frame_start") or footage.numbers[0])
    index = np.asarray(footage.numbers) - first
    if index[0] < 0 or index[-1] >= len(K):
        raise FootageError(
            f"camera: covers footage frames {first}-{first + len(K) - 1}, the job uses "
            f"{footage.numbers[0]}-{footage.numbers[-1]}")
    return ShotCamera(K[index], R[index], t[index])


# ----------------------------------------------------------------------------------- depth and masks


def _read_exr_depth(path: Path) -> np.ndarray:
    """The depth channel of an EXR: ``Z`` / ``*.Z`` / ``*.Depth.*`` (Blender's Z pass), else the
    only channel, else ``R``."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path)) as exr:
            channels = exr.channels()
            names = list(channels)
            pick = next((n for n in names if n == "Z" or n.endswith(".Z") or ".Depth." in n), None)
            if pick is None:
                pick = names[0] if len(names) == 1 else ("R" if "R" in names else None)
            if pick is None:
                raise FootageError(f"depth: {path.name} has no depth channel among {names[:8]}")
            pixels = np.asarray(channels[pick].pixels)
    except FootageError:
        raise
    except Exception as exc:
        raise FootageError(f"depth: {path.name} is not a readable EXR ({type(exc).__name__})") from None
    if pixels.ndim == 3:  # an RGB(A) channel group: the first component
        pixels = pixels[..., 0]
    return pixels.astype(np.float32)


def _read_depth_file(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".exr":
        return _read_exr_depth(path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")  # never unpickle client files
    except Exception as exc:
        raise FootageError(f"depth: {path.name} is not a readable .npy ({type(exc).__name__})") from None


def _pick_files(files: list[Path], footage: Footage, what: str, folder: Path, noun: str) -> list[Path]:
    """The per-frame files of a depth or mask folder for the frames used, in their order: the
    folder holds exactly those frames, or the whole shot (then picked by footage frame number)."""
    if len(files) == len(footage):
        return files
    if len(files) >= footage.numbers[-1]:
        return [files[k - 1] for k in footage.numbers]
    raise FootageError(f"{what}: {folder.name} holds {len(files)} {noun}, the job uses {len(footage)} "
                       f"frames (footage frames {footage.numbers[0]}-{footage.numbers[-1]})")


def read_depth(path: str | Path, footage: Footage) -> np.ndarray:
    """(F, H, W) float32 metres along the optical axis for the frames used: one .npy holding
    exactly those frames, or a folder of numbered per-frame .npy/.exr holding either exactly those
    frames or the whole shot (then picked by frame number). Non-finite or non-positive values
    (sky, no hit) become +inf: nothing there is in front of anything."""
    path = Path(path)
    n, hw = len(footage), (footage.height, footage.width)
    if path.is_dir():
        stack = []
        for f in _pick_files(numbered_files(path, FOOTAGE_DEPTH_SUFFIXES), footage, "depth", path, "frames"):
            d = np.asarray(_read_depth_file(f))
            if d.shape != hw:
                raise FootageError(f"depth: {f.name} is {d.shape}, the footage is {hw}")
            stack.append(d.astype(np.float32))
        depth = np.stack(stack)
    else:
        depth = _read_depth_file(path)
        if depth.shape != (n, *hw):
            raise FootageError(
                f"depth: {path.name} has shape {list(depth.shape)}, the job needs [{n}, {hw[0]}, {hw[1]}]")
        depth = np.asarray(depth, np.float32)
    if depth.dtype.kind != "f":
        raise FootageError("depth: must hold floating-point metres")
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.inf).astype(np.float32)


def read_masks(path: str | Path, footage: Footage, what: str) -> np.ndarray:
    """(F, H, W) float32 in [0, 1] from a folder of numbered PNG masks (grey, or the alpha of RGBA
    when the colour is constant), one per frame used or one per footage frame."""
    from PIL import Image

    folder = Path(path)
    chosen = _pick_files(numbered_files(folder, (".png",)), footage, what, folder, "masks")
    n, hw = len(footage), (footage.height, footage.width)
    out = np.empty((n, *hw), np.float32)
    for i, f in enumerate(chosen):
        try:
            with Image.open(f) as img:
                if (img.height, img.width) != hw:
                    raise FootageError(f"{what}: {f.name} is {img.width}x{img.height}, the footage "
                                       f"{hw[1]}x{hw[0]}")
                band = np.asarray(img.getchannel("A") if img.mode in ("RGBA", "LA") else img.convert("L"))
                if img.mode in ("RGBA", "LA") and band.min() == 255:  # opaque: the mask is the grey
                    band = np.asarray(img.convert("L"))
                out[i] = band.astype(np.float32) / 255.0
        except FootageError:
            raise
        except Exception as exc:
            raise FootageError(f"{what}: {f.name} is not a readable PNG ({type(exc).__name__})") from None
    return out
