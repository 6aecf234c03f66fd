"""A texture array -> a packed Blender image, in steps.

Filling ``Image.pixels`` with floats and ``pack()``-ing a generated image (which encodes a PNG
inside Blender) is one 200+ ms call for a 1024² texture, and even ``images.load`` of a PNG
decodes it at once (~150 ms). Instead the PNG is encoded here, a band of rows per step (zlib's
streaming compressor), and handed to a 1x1 image as its packed file with ``source = 'FILE'``:
a few ms, and Blender decodes the pixels only when something first needs them.
"""

from __future__ import annotations

import struct
import zlib

import bpy
import numpy as np

from .arrays import ResultFormatError
from .steps import Steps, run

BYTES_PER_STEP = 96 << 10  # raw bytes compressed per step (~2 ms at level 1, incompressible noise)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_steps(texture: np.ndarray) -> Steps[bytes]:
    """Encode an (H, W, 3|4) texture (uint8, or float in [0, 1]) whose row 0 is the top as PNG."""
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] not in (3, 4):
        raise ResultFormatError(f"texture must be (H, W, 3|4), got {texture.shape}")
    height, width, channels = texture.shape
    rows_per_step = max(1, BYTES_PER_STEP // max(1, width * channels))
    compressor = zlib.compressobj(1)
    color_type = 6 if channels == 4 else 2
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    out += _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    for start in range(0, height, rows_per_step):
        band = texture[start : start + rows_per_step]
        if band.dtype != np.uint8:
            band = (np.clip(band.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        raw = np.zeros((band.shape[0], 1 + width * channels), dtype=np.uint8)  # filter byte 0: none
        raw[:, 1:] = band.reshape(band.shape[0], -1)
        data = compressor.compress(raw.tobytes())
        if data:
            out += _chunk(b"IDAT", data)
        yield f"texture (rows {min(start + rows_per_step, height)}/{height})"
    out += _chunk(b"IDAT", compressor.flush())
    out += _chunk(b"IEND", b"")
    return bytes(out)


def texture_image_steps(texture: np.ndarray, name: str) -> Steps[bpy.types.Image]:
    """A packed Blender image from an (H, W, 3|4) array whose row 0 is the top."""
    png = yield from png_steps(texture)
    image = bpy.data.images.new(name, 1, 1)  # its size comes from the packed PNG
    image.filepath_raw = f"//{bpy.path.clean_name(name)}.png"  # where "unpack" would write it
    image.file_format = "PNG"
    image.pack(data=png, data_len=len(png))  # saved inside the .blend: no path to a download folder
    image.source = "FILE"
    yield "texture (packed)"
    return image


def texture_image(texture: np.ndarray, name: str) -> bpy.types.Image:
    return run(texture_image_steps(texture, name))


def warm_image_decoding() -> None:
    """Decode a 1x1 PNG once. The first file image a Blender process decodes sets up colour
    management (0.2-0.5 s); a GUI session has done that long before, a background one (scripts,
    tests) would otherwise do it inside the first pump that imports an image strip."""
    png = run(png_steps(np.zeros((1, 1, 3), dtype=np.uint8)))
    image = bpy.data.images.new("AVS warm-up", 1, 1)
    try:
        image.pack(data=png, data_len=len(png))
        image.source = "FILE"
        image.pixels[0]  # the read is the point: it decodes
    finally:
        bpy.data.images.remove(image)
