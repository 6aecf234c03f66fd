"""Evaluation during and after training: renders of the EMA generator for dataset cameras and
bodies, their FID / KID against the dataset's images, and a sample sheet (seeds x views).

Every draw here comes from its own seeded generator and the renders use the strata centres (no
jitter), so evaluating never changes what training does next (resume stays bit-identical) and the
same checkpoint always gives the same numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.threedgm.dataset import ClipsDataset, collate
from backend.threedgm.generator import BodyBatch, Generator
from backend.threedgm.metrics import fid_from_features, inception_features, kid_from_features, to_uint8


def spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [int(i) for i in np.linspace(0, total - 1, count).round()]


@torch.no_grad()
def render_views(
    G: Generator, data: ClipsDataset, indices: list[int], z: torch.Tensor, batch: int = 8
) -> torch.Tensor:
    """(N,3,S,S) renders in [-1,1]: avatar ``z[i]`` seen by item ``indices[i]``'s camera and body."""
    device = next(G.parameters()).device
    out = []
    for s in range(0, len(indices), batch):
        items = collate([data[i] for i in indices[s : s + batch]])
        items = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in items.items()}
        body = BodyBatch(items["verts"], items["transforms"], items["root"])
        res = G(z[s : s + batch].to(device), items["cond"], items["K"], items["R"], items["t"], body)
        out.append(res["image"].float().cpu())
    return torch.cat(out)


def fid_kid(extractor: Any, G: Generator, data: ClipsDataset, count: int, seed: int = 0) -> dict[str, float]:
    """FID and KID of ``count`` renders (one random avatar per dataset view) against those views' images."""
    indices = spread(count, len(data))
    z = torch.randn((len(indices), G.cfg.z_dim), generator=torch.Generator().manual_seed(seed))
    fakes = render_views(G, data, indices, z)
    reals = torch.stack([data[i]["image"] for i in indices])
    f_fake, f_real = inception_features(extractor, fakes), inception_features(extractor, reals)
    kid_mean, kid_std = kid_from_features(f_real, f_fake, subsets=50, subset_size=min(len(indices), 1000))
    return {
        "fid": fid_from_features(f_real, f_fake),
        "kid": kid_mean,
        "kid_std": kid_std,
        "images": len(indices),
    }


def sample_sheet(G: Generator, data: ClipsDataset, path: str | Path, seeds: int = 4, views: int = 4) -> Path:
    """A PNG grid: one row per avatar (seeds 0..seeds-1), one column per dataset view (spread over
    the dataset's cameras and poses), plus a last column of the real image of each view's first row."""
    indices = spread(views, len(data))
    rows = []
    for s in range(seeds):
        z = torch.randn((1, G.cfg.z_dim), generator=torch.Generator().manual_seed(s)).expand(len(indices), -1)
        rows.append(render_views(G, data, indices, z))
    reals = torch.stack([data[i]["image"] for i in indices])
    grid = torch.cat([*rows, reals])  # (rows*views, 3, S, S)
    S = grid.shape[-1]
    tiles = to_uint8(grid).permute(0, 2, 3, 1).numpy().reshape(seeds + 1, len(indices), S, S, 3)
    sheet = tiles.transpose(0, 2, 1, 3, 4).reshape((seeds + 1) * S, len(indices) * S, 3)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(np.ascontiguousarray(sheet)).save(tmp)
    tmp.replace(path)
    return path
