"""``rgb.mp4`` per camera: the RGB frames encoded with imageio-ffmpeg (H.264, yuv420p).

Frames are fed in order from one thread while the PNGs are written by others. yuv420p needs even
sides: an odd width or height is padded by repeating the last column / row (the video is then one
pixel larger than the PNGs). The encoder runs single-threaded with bit-exact muxing (no encoder
version or creation time in the container) so the same frames give the same file.
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np


class VideoWriter:
    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        import imageio_ffmpeg

        self.pad = (height % 2, width % 2)
        self._gen: Generator[None, Any, None] = imageio_ffmpeg.write_frames(
            str(path), (width + self.pad[1], height + self.pad[0]), fps=fps, codec="libx264", quality=8,
            macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-threads", "1", "-fflags", "+bitexact", "-map_metadata", "-1"])
        self._gen.send(None)  # start ffmpeg

    def send(self, rgb: np.ndarray) -> None:
        if any(self.pad):
            rgb = np.pad(rgb, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(rgb, dtype=np.uint8))

    def close(self) -> None:
        self._gen.close()


def open_video(path: Path, width: int, height: int, fps: float) -> VideoWriter:
    return VideoWriter(path, width, height, fps)


def send_frame(video: VideoWriter, ready: Future[Any], rgb: np.ndarray) -> None:
    """Wait until the frame is shaded, then encode it (runs on the one video thread, in order)."""
    ready.result()
    video.send(rgb)
