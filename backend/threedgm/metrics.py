"""Metrics of generated avatars: FID and KID (torch-fidelity's InceptionV3 features and formulas,
weights from the ``inception`` model role), PSNR / SSIM (:mod:`backend.avatar.eval.metrics`), and
identity consistency across views (CLIP image cosine, the ``clip`` role).

FID = |μ1 - μ2|² + tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½) on the 2048-d pool features; KID = the unbiased
MMD² with the cubic polynomial kernel over random subsets (Bińkowski et al.), both computed by
torch-fidelity's own functions, so the numbers are torch-fidelity's (and TF FID's, with the real
weights). Images go in as uint8 (N,3,H,W) or float in [-1,1]; the extractor resizes to 299².
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from backend.avatar.eval.metrics import psnr, ssim

__all__ = [
    "fid",
    "fid_from_features",
    "identity_consistency",
    "inception_features",
    "kid",
    "kid_from_features",
    "psnr",
    "ssim",
    "to_uint8",
]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) float in [-1,1] -> uint8; uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)


@torch.no_grad()
def inception_features(extractor: Any, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """(N,2048) float64 pool features of ``images`` through the ``inception`` role's extractor."""
    device = next(extractor.parameters()).device
    out = []
    for s in range(0, len(images), batch):
        feats = extractor(to_uint8(images[s : s + batch]).to(device))
        out.append(feats[0].double().cpu())
    return torch.cat(out)


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets (N,D), torch-fidelity's statistics and formula (float64)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(x.double().cpu()) for x in (a, b)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID])


def kid_from_features(
    a: torch.Tensor, b: torch.Tensor, subsets: int = 100, subset_size: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets (default size: the smaller set, at most 1000)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = subset_size or min(len(a), len(b), 1000)
    out = kid_features_to_metric(
        a.double().cpu(),
        b.double().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=seed,
        verbose=False,
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def fid(extractor: Any, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    return fid_from_features(inception_features(extractor, images_a), inception_features(extractor, images_b))


def kid(extractor: Any, images_a: torch.Tensor, images_b: torch.Tensor, **kwargs: Any) -> tuple[float, float]:
    return kid_from_features(
        inception_features(extractor, images_a), inception_features(extractor, images_b), **kwargs
    )


def identity_consistency(clip_model: Any, views: Sequence[Sequence[Any]]) -> float:
    """Mean CLIP image cosine between the views of one avatar, averaged over avatars.

    ``views[i]`` are PIL images of avatar i from different cameras; ``clip_model`` is what
    :func:`backend.models.load.load_clip` returns. 1 = every view embeds the same.
    """
    scores = []
    for avatar in views:
        if len(avatar) < 2:
            raise ValueError("identity consistency needs at least two views per avatar")
        f = clip_model.image_features(list(avatar)).double()
        sim = f @ f.T
        n = len(avatar)
        scores.append(float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))))
    return float(np.mean(scores))
