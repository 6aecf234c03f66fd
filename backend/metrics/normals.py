"""Normal accuracy against ground truth: the angle between predicted and true unit normals per
pixel, inside the mask, summarised as the surface-normal literature does (mean and median angle in
degrees, % of pixels within 11.25 / 22.5 / 30 degrees; Fouhey et al., Eigen & Fergus).

Normal maps in: ``.npy`` (H,W,3) or (F,H,W,3) float, unit vectors, 0 = background (our clips'
``normal.npy``, camera axes), or 8-bit RGB PNGs with rgb = (n + 1) / 2 (the views format's
``normal/<name>.png``; an alpha channel is the mask). Both maps must be in one frame (both camera
or both world): the angle is frame-independent only when they agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backend.metrics.images import EvalInputError, list_files, open_image, pair, read_mask, same_size

THRESHOLDS = (11.25, 22.5, 30.0)
NORMAL_SUFFIXES = (".npy", ".png")
MAX_VALUES = 3 * 256_000_000  # one .npy file: e.g. 1000 frames of 512 x 512 normals


@dataclass
class NormalAccuracy:
    mean_deg: float
    median_deg: float
    within_11_25: float  # % of the masked pixels
    within_22_5: float
    within_30: float
    pixels: int
    images: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def angular_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Degrees between the (…,3) normals of ``pred`` and ``gt`` at the valid pixels: inside ``mask``
    and where both are non-zero (0 = background). Vectors are normalised first."""
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    if p.shape != g.shape or p.shape[-1] != 3:
        raise EvalInputError(f"normal maps must be (...,3) of one shape, got {p.shape} and {g.shape}")
    pn, gn = np.linalg.norm(p, axis=-1), np.linalg.norm(g, axis=-1)
    valid = (pn > 1e-6) & (gn > 1e-6)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    cos = (p[valid] * g[valid]).sum(-1) / (pn[valid] * gn[valid])
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def summarise(errors: np.ndarray, images: int) -> NormalAccuracy:
    if errors.size == 0:
        raise EvalInputError("no pixel has a normal in both maps (inside the masks)")
    within = [float((errors < t).mean() * 100.0) for t in THRESHOLDS]
    return NormalAccuracy(float(errors.mean()), float(np.median(errors)), *within, int(errors.size), images)


def read_normals(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """((F,H,W,3) float32 normals, (F,H,W) bool mask or None) of one file."""
    if path.suffix.lower() == ".npy":
        try:
            n = np.load(path, allow_pickle=False, mmap_mode="r")  # header first: the size is checked
        except (OSError, ValueError) as exc:
            raise EvalInputError(f"{path} is not a readable .npy ({exc})") from exc
        if n.size > MAX_VALUES or n.dtype.kind != "f":
            raise EvalInputError(
                f"{path}: float normals of at most {MAX_VALUES} values, got {n.dtype} {n.shape}"
            )
        if n.ndim == 3:
            n = n[None]
        if n.ndim != 4 or n.shape[-1] != 3:
            raise EvalInputError(f"{path}: normals must be (H,W,3) or (F,H,W,3), got {n.shape}")
        return np.asarray(n, np.float32), None
    image = open_image(path)
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0 * 2.0 - 1.0
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mask = read_mask(path)[None] if has_alpha else None
    return rgb[None], mask


def normal_accuracy_folders(pred_dir: Path, gt_dir: Path, mask_dir: Path | None = None) -> NormalAccuracy:
    """:class:`NormalAccuracy` over every normal file of ``pred_dir`` and its namesake in ``gt_dir``
    (masks by name in ``mask_dir``, ANDed with the maps' own alpha / non-zero pixels)."""
    pairs = pair(list_files(pred_dir, NORMAL_SUFFIXES), list_files(gt_dir, NORMAL_SUFFIXES), "normals")
    masks = list_files(mask_dir) if mask_dir is not None else None
    errors, count = [], 0
    for name, p_path, g_path in pairs:
        p, pm = read_normals(p_path)
        g, gm = read_normals(g_path)
        if p.shape != g.shape:
            raise EvalInputError(f"{name}: normal maps of shapes {p.shape} and {g.shape}")
        mask = np.ones(p.shape[:3], bool)
        for m in (pm, gm):
            if m is not None:
                mask &= m
        if masks is not None:
            if name not in masks:
                raise EvalInputError(f"normals: no mask for {name} in {mask_dir}")
            m = read_mask(masks[name])
            same_size(name, m, p[0])
            mask &= m[None]
        errors.append(angular_error(p, g, mask))
        count += p.shape[0]
    return summarise(np.concatenate(errors), count)
