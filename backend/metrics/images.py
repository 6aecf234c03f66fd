"""Image folders in: the files a metric reads, paired by name, decoded to arrays.

A folder's images are its files with an image suffix, searched recursively and named by their path
relative to the folder without the suffix (``a/0001.png`` -> ``a/0001``), so ``pred/0001.png`` pairs
with ``gt/0001.jpg``. A ``.npy`` normal file of shape (F,H,W,3) (a clips camera's ``normal.npy``)
counts as F items named ``<name>/<f>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 64_000_000  # one decoded image at most (PIL's bomb check is a warning only)


class EvalInputError(ValueError):
    """A folder that is not there, empty, unpaired, or an unreadable / mismatched image."""


def list_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """name -> file of ``folder``'s files with one of ``suffixes`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalInputError(f"{folder} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in suffixes:
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in found:
                raise EvalInputError(f"{folder}: {found[name].name} and {path.name} have one name")
            found[name] = path
    if not found:
        raise EvalInputError(f"{folder} holds no {'/'.join(s.lstrip('.') for s in suffixes)} file")
    return found


def pair(a: dict[str, Path], b: dict[str, Path], what: str) -> list[tuple[str, Path, Path]]:
    """(name, a, b) for every name of ``a``; a name missing from ``b`` is an error (names only in
    ``b`` are ignored: a ground-truth folder may hold more)."""
    missing = [n for n in a if n not in b]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise EvalInputError(f"{what}: no match for {', '.join(missing[:3])}{more}")
    return [(n, a[n], b[n]) for n in a]


def open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        if image.width * image.height > MAX_PIXELS:
            raise EvalInputError(f"{path}: {image.width}x{image.height} is over {MAX_PIXELS} pixels")
        image.load()
        return image
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise EvalInputError(f"{path} is not a readable image ({exc})") from exc


def read_rgb(path: Path) -> np.ndarray:
    """(H,W,3) float32 in [0,1]; alpha is dropped (compose on a background first to score it)."""
    return np.asarray(open_image(path).convert("RGB"), np.float32) / 255.0


def read_rgb_u8(path: Path) -> np.ndarray:
    return np.asarray(open_image(path).convert("RGB"), np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """(H,W) bool: the alpha channel when the image has one, else gray > 127."""
    image = open_image(path)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"), np.uint8)[..., 3] > 127
    return np.asarray(image.convert("L"), np.uint8) > 127


def same_size(name: str, *arrays: np.ndarray) -> None:
    shapes = {a.shape[:2] for a in arrays}
    if len(shapes) > 1:
        raise EvalInputError(f"{name}: sizes differ {sorted(shapes)}")
