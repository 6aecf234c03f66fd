"""Writing render passes to disk: 8/16-bit PNG sequences and H.264 mp4 (imageio + imageio-ffmpeg)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def normals_to_uint8(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit normals (H,W,3) -> RGB = (n + 1) / 2, background black."""
    rgb = to_uint8(0.5 * (np.asarray(normals) + 1.0))
    rgb[~np.asarray(mask, dtype=bool)] = 0
    return rgb


def depth_to_uint16(depth: np.ndarray, depth_range: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, tuple[float, float]]:
    """Metric depth (H,W) (inf = background) -> 16-bit PNG values and the (near, far) they span.

    Background is 0; foreground maps linearly from ``near`` -> 1 to ``far`` -> 65535, so
    ``depth = near + (value - 1) / 65534 * (far - near)`` decodes it (resolution ~ range / 65534).
    Without ``depth_range`` the foreground's own min/max are used.
    """
    depth = np.asarray(depth, dtype=np.float64)
    fg = np.isfinite(depth)
    if depth_range is None:
        depth_range = (float(depth[fg].min()), float(depth[fg].max())) if fg.any() else (0.0, 1.0)
    lo, hi = depth_range
    span = hi - lo if hi > lo else 1.0
    values = np.zeros(depth.shape, dtype=np.uint16)
    scaled = 1.0 + np.clip((depth[fg] - lo) / span, 0.0, 1.0) * 65534.0
    values[fg] = np.round(scaled).astype(np.uint16)
    return values, (lo, hi)


def decode_depth_uint16(values: np.ndarray, depth_range: tuple[float, float]) -> np.ndarray:
    """Inverse of :func:`depth_to_uint16` (background -> inf)."""
    lo, hi = depth_range
    values = np.asarray(values, dtype=np.float64)
    span = hi - lo if hi > lo else 1.0
    return np.where(values > 0, lo + (values - 1.0) / 65534.0 * span, np.inf)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write uint8 (H,W), (H,W,3), (H,W,4) or uint16 (H,W) as PNG; creates parent folders."""
    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG frames must be uint8 or uint16, got {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image, extension=".png")
    return path


def frame_name(index: int, start: int = 1, digits: int = 4) -> str:
    """``0001.png`` style names (Blender's and ffmpeg's image-sequence convention)."""
    return f"{start + index:0{digits}d}.png"


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float, *, quality: int = 23) -> Path:
    """H.264 (yuv420p, plays everywhere) from uint8 RGB frames; odd sizes are padded to even.

    ``quality`` is the x264 CRF (lower = better). imageio-ffmpeg ships its own ffmpeg binary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"mp4 frames must be uint8 (H,W,3), got {frame.dtype} {frame.shape}")
            # yuv420p needs even width and height.
            pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            if writer is None:
                writer = imageio_ffmpeg.write_frames(
                    str(path), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264",
                    pix_fmt_out="yuv420p", macro_block_size=1, output_params=["-crf", str(quality)],
                )
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise ValueError("no frames to write")
    return path


def read_mp4_frame_count(path: Path) -> int:
    """Number of frames in a video (reads it; for tests and checks)."""
    return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
