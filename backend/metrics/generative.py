"""Distribution metrics of generated images: FID and KID between two folders, IS-360 over a ring
of renders, and CLIP identity consistency across views.

All three Inception metrics go through one pass of the ``inception`` role's extractor
(torch-fidelity's InceptionV3, :func:`backend.models.load.load_inception`): the 2048-d pool
features for FID/KID (formulas: :mod:`backend.threedgm.metrics`, torch-fidelity's own) and the
``logits_unbiased`` for the Inception Score, computed by torch-fidelity's ``isc_features_to_metric``
(splits, shuffle seed 2020 as its ``calculate_metrics`` does). IS-360 is En3D's name for the IS of
360-degree renders: the images of one folder of ring renders (every avatar seen from all around),
so the score measures how diverse and recognisable the views are across the whole turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.metrics.images import EvalInputError, list_files, read_rgb_u8
from backend.threedgm.metrics import fid_from_features, identity_consistency, kid_from_features


@dataclass
class InceptionOutputs:
    pool: torch.Tensor  # (N,2048) float64
    logits: torch.Tensor  # (N,1008) float64, torch-fidelity's logits_unbiased


@torch.no_grad()
def inception_outputs(extractor: Any, images: list[np.ndarray], batch: int = 32) -> InceptionOutputs:
    """Pool features and unbiased logits of (H,W,3) uint8 images; consecutive images of one size
    are batched (the extractor resizes each batch to 299²)."""
    device = next(extractor.parameters()).device
    pools, logits = [], []
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < batch and images[j].shape == images[i].shape:
            j += 1
        x = torch.from_numpy(np.stack(images[i:j])).permute(0, 3, 1, 2).contiguous().to(device)
        out = extractor(x)
        pools.append(out[0].double().cpu())
        logits.append(out[1].double().cpu())
        i = j
    return InceptionOutputs(torch.cat(pools), torch.cat(logits))


def folder_outputs(extractor: Any, folder: Path) -> InceptionOutputs:
    return inception_outputs(extractor, [read_rgb_u8(p) for p in list_files(folder).values()])


def inception_score(logits: torch.Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of exp(E KL(p(y|x) || p(y))) over ``splits`` shuffled splits (torch-fidelity's)."""
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    if not 1 <= splits <= len(logits):
        raise EvalInputError(f"IS needs 1 <= splits <= images ({len(logits)}), got {splits}")
    out = isc_features_to_metric(logits.double().cpu(), splits=splits, shuffle=True, rng_seed=seed)
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD])


def fid_kid_folders(
    extractor: Any, real: Path, fake: Path, kid_subsets: int = 100, kid_subset_size: int | None = None
) -> dict[str, float | int]:
    a, b = folder_outputs(extractor, real).pool, folder_outputs(extractor, fake).pool
    if min(len(a), len(b)) < 2:
        raise EvalInputError("FID/KID need at least two images in each folder")
    kid_mean, kid_std = kid_from_features(a, b, subsets=kid_subsets, subset_size=kid_subset_size)
    return {"fid": fid_from_features(a, b), "kid_mean": kid_mean, "kid_std": kid_std,
            "real": len(a), "fake": len(b)}


def is360_folder(extractor: Any, folder: Path, splits: int = 10) -> dict[str, float | int]:
    logits = folder_outputs(extractor, folder).logits
    mean, std = inception_score(logits, min(splits, len(logits)))
    return {"is_mean": mean, "is_std": std, "images": len(logits), "splits": min(splits, len(logits))}


def identity_folder(clip_model: Any, folder: Path) -> dict[str, float | int]:
    """CLIP identity consistency of the views in ``folder``: its images are one avatar's views, or
    its sub-folders one avatar each (then the mean over avatars)."""
    from PIL import Image

    files = list_files(folder)
    groups: dict[str, list[Path]] = {}
    for name, path in files.items():
        groups.setdefault(name.rsplit("/", 1)[0] if "/" in name else "", []).append(path)
    if len(groups) > 1 and "" in groups:
        raise EvalInputError(f"{folder}: images both at the top and in sub-folders; use one layout")
    views = []
    for paths in groups.values():
        if len(paths) < 2:
            raise EvalInputError(f"{folder}: identity consistency needs two views or more per avatar")
        views.append([Image.fromarray(read_rgb_u8(p)) for p in paths])
    return {"identity": identity_consistency(clip_model, views), "avatars": len(views),
            "views": sum(len(v) for v in views)}
