"""The files of ``footage.insert`` (contract: protocol/kinds_footage.py; docs/footage.md).

``insert/<layer>/%06d.png`` for each layer of :data:`FOOTAGE_INSERT_LAYERS`, numbered by the footage
frame (1-based), ``insert/composite.mp4`` (H.264 through imageio-ffmpeg, the clips' writer
:class:`backend.clips.video.VideoWriter`) and ``insert/footage.json``. PNGs use the clips' fast
encoder's scheme (one "Sub" filter, zlib RLE: :mod:`backend.clips.png`) extended to grey and RGBA,
and are written by a small thread pool (zlib releases the GIL) while the next frame renders.
The folder is created only when the first frame is ready: a job that fails on its inputs leaves
nothing behind.
"""

from __future__ import annotations

import json
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from backend.clips.png import SIGNATURE, _chunk, encode_png
from backend.clips.video import VideoWriter
from backend.footage.composite import Layers
from protocol.kinds_footage import FOOTAGE_INSERT_LAYERS

COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def encode_png_any(image: np.ndarray) -> bytes:
    """PNG bytes of a (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return encode_png(image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in COLOR_TYPES:
        raise ValueError(f"expected a grey, RGB or RGBA image, got shape {image.shape}")
    height, width = image.shape[:2]
    flat = image.reshape(height, width * channels)
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 1  # Sub
    rows[:, 1:1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=rows[:, 1 + channels:])
    packer = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    idat = packer.compress(rows.tobytes()) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, COLOR_TYPES[channels], 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def frame_name(layer: str, number: int) -> str:
    return f"{layer}/{number:06d}.png"


class InsertWriter:
    """Writes the layers of each frame as they come, in the background; :meth:`close` waits."""

    def __init__(self, folder: Path, width: int, height: int, fps: float, mp4: bool,
                 threads: int = 2) -> None:
        self.folder = Path(folder)
        self.size = (width, height)
        self.fps = fps
        self.mp4 = mp4
        self.files: dict[str, Path] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._video_pool: ThreadPoolExecutor | None = None
        self._video: VideoWriter | None = None
        self._pending: list[Future[Any]] = []
        self._threads = threads

    def _open(self) -> None:
        for layer in FOOTAGE_INSERT_LAYERS:
            (self.folder / layer).mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=self._threads)
        if self.mp4:
            self._video_pool = ThreadPoolExecutor(max_workers=1)
            self._video = VideoWriter(self.folder / "composite.mp4", *self.size, self.fps)
            self.files["composite.mp4"] = self.folder / "composite.mp4"

    def write(self, number: int, layers: Layers) -> None:
        if self._pool is None:
            self._open()
        assert self._pool is not None
        for layer in FOOTAGE_INSERT_LAYERS:
            name = frame_name(layer, number)
            path = self.folder / name
            self.files[name] = path
            self._pending.append(self._pool.submit(_write, path, getattr(layers, layer)))
        if self._video is not None and self._video_pool is not None:
            self._pending.append(self._video_pool.submit(self._video.send, layers.composite))
        # Keep the backlog short: memory stays bounded and errors surface near their frame.
        while len(self._pending) > 24:
            self._pending.pop(0).result()

    def write_json(self, summary: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "footage.json"
        path.write_text(json.dumps(summary, indent=1, default=_json_default), encoding="utf-8")
        self.files["footage.json"] = path

    def close(self) -> None:
        try:
            for job in self._pending:
                job.result()
        finally:
            self._pending.clear()
            if self._video_pool is not None:
                self._video_pool.shutdown(wait=True)
            if self._video is not None:
                self._video.close()
                self._video = None
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def _write(path: Path, image: np.ndarray) -> None:
    path.write_bytes(encode_png_any(image))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
