"""PSNR / SSIM / LPIPS between paired image folders (prediction vs ground truth), masks optional.

Each score is computed per image pair and averaged over the pairs (as MIMO and most video papers
report them). With a mask: PSNR over the masked pixels, SSIM and LPIPS as the mean of their spatial
maps inside the mask (the maps are computed on the whole image, so the context around the region
counts as the windows / receptive fields see it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from backend.avatar.eval.metrics import psnr
from backend.metrics.images import list_files, pair, read_mask, read_rgb, same_size


def ssim_map(pred: np.ndarray, target: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """(H,W) SSIM map, channel-averaged: the formula of :func:`backend.avatar.eval.metrics.ssim`
    (Wang et al. 2004, Gaussian window sigma 1.5, K1 0.01, K2 0.03), kept as a map so a mask can
    select the region (that function returns only the mean)."""
    x = np.asarray(pred, np.float64)
    y = np.asarray(target, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = 0.01**2, 0.03**2

    def f(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, sigma, truncate=3.5)  # 11x11 window as in the paper

    maps = []
    for c in range(x.shape[-1]):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = f(a), f(b)
        va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
        maps.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    return np.mean(maps, axis=0)


def ssim(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    s = ssim_map(pred, target)
    return float(s.mean() if mask is None else s[np.asarray(mask, bool)].mean())


@dataclass
class PairedScores:
    psnr: float  # dB, mean over pairs (inf when every pair is identical)
    ssim: float
    lpips: float | None  # None: not computed (no LPIPS model given)
    pairs: int
    masked: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_scores(
    pred_dir: Path, gt_dir: Path, mask_dir: Path | None = None, lpips: Any = None
) -> PairedScores:
    """Scores of every image of ``pred_dir`` against its namesake in ``gt_dir``; ``lpips`` is the
    ``lpips`` role's model (:func:`backend.models.load_metrics.load_lpips`) or None to skip it."""
    pairs = pair(list_files(pred_dir), list_files(gt_dir), "paired images")
    masks = list_files(mask_dir) if mask_dir is not None else None
    if masks is not None:
        pair(dict.fromkeys(n for n, _, _ in pairs), masks, f"masks in {mask_dir}")  # every pair has one
    ps, ss, ls = [], [], []
    for name, p_path, g_path in pairs:
        p, g = read_rgb(p_path), read_rgb(g_path)
        mask = read_mask(masks[name]) if masks is not None else None
        same_size(name, p, g, *([mask] if mask is not None else []))
        if mask is not None and not mask.any():
            continue  # an empty region scores nothing (the character off screen in that frame)
        ps.append(psnr(p, g, mask))
        ss.append(ssim(p, g, mask))
        if lpips is not None:
            ls.append(float(lpips.distance(p, g, mask=mask)[0]))
    if not ps:
        raise ValueError("every mask is empty: nothing to score")
    return PairedScores(
        float(np.mean(ps)), float(np.mean(ss)), float(np.mean(ls)) if ls else None, len(ps), masks is not None
    )
