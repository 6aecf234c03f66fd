"""Person masks of generated views, from the control silhouette refined by colour.

A generated view shows a clothed person roughly where the conditioning body is: the body's own
silhouette is a good seed but misses hair, loose clothes and the generator's small drifts. So:

1. the *band*: the body's silhouette dilated by ``dilate_px`` (where the person may extend);
2. the *background colour*: the median colour of the pixels outside the band (the prompt asks
   for a plain background, see ``multiview.PROMPT_TEMPLATE``);
3. inside the band, a pixel belongs to the person if its colour differs from the background by
   more than ``threshold`` (Euclidean distance of RGB in [0, 1]); the body's silhouette eroded by
   ``core_px`` always does (a body-coloured shirt on a white background still stays in);
4. holes filled, and only the components touching that core kept (a stray blob in the band
   that is not connected to the person is background).

A segmentation model (the ``person-segmentation`` role) can replace this later; the function
signature is what it will have to fill.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DILATE_PX = 0.04  # band half-width as a fraction of the image's larger side
CORE_PX = 2
THRESHOLD = 0.12


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def background_colour(image: np.ndarray, band: np.ndarray) -> np.ndarray:
    """(3,) median colour outside ``band``; the image border if the band covers everything."""
    outside = ~band
    if outside.sum() < 16:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        return np.median(border, axis=0)
    return np.median(image[outside], axis=0)


def refine_mask(image: np.ndarray, silhouette: np.ndarray, *, dilate_px: int | None = None,
                core_px: int = CORE_PX, threshold: float = THRESHOLD) -> np.ndarray:
    """(H,W) bool person mask of a generated ``image`` ((H,W,3) float in [0, 1] or uint8) whose
    conditioning body covers ``silhouette`` (H,W) bool."""
    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    img = img[..., :3]
    sil = np.asarray(silhouette, dtype=bool)
    if img.shape[:2] != sil.shape:
        raise ValueError(f"image {img.shape[:2]} and silhouette {sil.shape} differ in size")
    if not sil.any():
        return np.zeros_like(sil)
    if dilate_px is None:
        dilate_px = max(2, round(DILATE_PX * max(sil.shape)))
    band = ndimage.binary_dilation(sil, structure=_disk(dilate_px))
    bg = background_colour(img, band)
    differs = np.linalg.norm(img - bg, axis=-1) > threshold
    core = ndimage.binary_erosion(sil, structure=_disk(core_px)) if core_px > 0 else sil
    if not core.any():
        core = sil
    person = band & (differs | core)
    person = ndimage.binary_fill_holes(person)
    labels, count = ndimage.label(person)
    if count > 1:
        keep = np.unique(labels[core & person])
        person = np.isin(labels, keep[keep > 0])
    return person


def refine_masks(images: np.ndarray, silhouettes: np.ndarray, **options: float) -> np.ndarray:
    """(K,H,W) bool masks for K images and their silhouettes (:func:`refine_mask` each)."""
    return np.stack([refine_mask(i, s, **options) for i, s in zip(images, silhouettes, strict=True)])
