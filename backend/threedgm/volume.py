"""Rays from OpenCV cameras (K, R, t: ``X_cam = R X_world + t``; docs/clips.md) and volume rendering.

A ray grid covers a pixel box of the image (the whole image, or a part's patch): ray (i, j) of a
``res``-side grid goes through the image point ``x0 + (i + 0.5) * w / res`` (pixel centres at +0.5),
so the grid is exactly the image downsampled by ``w / res``. Samples are stratified in depth over
the body's bounding sphere around its root (no sample is wasted on empty space far from the body);
an optional importance pass (:func:`importance_depths`) adds depths drawn from the coarse weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ray_grid(
    K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, box: torch.Tensor, res: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins (B,res*res,3) and unit directions (B,res*res,3), world frame, row-major (y then x).

    ``box`` (B,4) is x0, y0, w, h in pixels of the image K belongs to.
    """
    B = K.shape[0]
    steps = (torch.arange(res, dtype=K.dtype, device=K.device) + 0.5) / res
    gy, gx = torch.meshgrid(steps, steps, indexing="ij")
    u = box[:, None, 0] + gx.reshape(1, -1) * box[:, None, 2]
    v = box[:, None, 1] + gy.reshape(1, -1) * box[:, None, 3]
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (B,M,3)
    cam = torch.linalg.solve(K, pix.transpose(1, 2)).transpose(1, 2)
    dirs = cam @ R  # R^T applied to row vectors
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origin = -(R.transpose(1, 2) @ t[..., None])[..., 0]
    return origin[:, None].expand(B, res * res, 3), dirs


def sample_depths(
    origins: torch.Tensor,
    centre: torch.Tensor,
    half_depth: float,
    samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B,M,S) depths: ``samples`` strata over ``|origin - centre| ± half_depth``; jittered when a
    generator is given (training), at the strata centres otherwise (evaluation: deterministic)."""
    B, M = origins.shape[:2]
    dist = (origins[:, 0] - centre).norm(dim=-1)  # (B,)
    near = (dist - half_depth).clamp(min=0.05)
    far = dist + half_depth
    if generator is None:
        u = torch.full((B, M, samples), 0.5, dtype=origins.dtype, device=origins.device)
    else:
        u = torch.rand((B, M, samples), generator=generator, dtype=origins.dtype, device="cpu").to(
            origins.device
        )
    strata = (torch.arange(samples, dtype=origins.dtype, device=origins.device) + u) / samples
    return near[:, None, None] + strata * (far - near)[:, None, None]


def composite(
    sigma: torch.Tensor, feats: torch.Tensor, depths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Alpha compositing front to back: features (B,M,F), opacity (B,M), expected depth (B,M).

    sigma (B,M,S) >= 0, feats (B,M,S,F), depths (B,M,S) increasing; the last sample's interval is
    the mean spacing.
    """
    weights = ray_weights(sigma, depths)
    acc = weights.sum(-1)
    return (weights[..., None] * feats).sum(-2), acc, (weights * depths).sum(-1)


def ray_weights(sigma: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """(B,M,S) compositing weights ``alpha_i * T_i`` of samples at ``depths`` (the last interval:
    the mean spacing)."""
    deltas = depths[..., 1:] - depths[..., :-1]
    deltas = torch.cat([deltas, deltas.mean(dim=-1, keepdim=True)], dim=-1)
    alpha = 1 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-10], -1), -1)
    return alpha * trans


def importance_depths(
    depths: torch.Tensor,
    weights: torch.Tensor,
    samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B,M,samples) depths drawn from the coarse pass's compositing weights by inverse CDF (EG3D /
    NeRF's hierarchical sampling), sorted, no gradient.

    The pdf is piecewise constant over the bins between the coarse samples' midpoints, with EG3D's
    smoothing of the weights (a max-pool then an average-pool over neighbours, + 0.01: a thin surface
    seen by one coarse sample still spreads to its neighbours, and an empty ray samples uniformly).
    ``generator`` given: uniform draws from it (training; deterministic for its seed); else the
    quantiles ``(i + 0.5) / samples`` (evaluation: deterministic).
    """
    depths, weights = depths.detach(), weights.detach()
    B, M, S = depths.shape
    if S < 3:
        raise ValueError(f"importance sampling needs >= 3 coarse samples per ray, got {S}")
    w = weights.reshape(B * M, 1, S)
    w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1).reshape(B, M, S) + 0.01
    w = w[..., 1:-1]  # the S - 2 bins between the S - 1 midpoints
    edges = 0.5 * (depths[..., 1:] + depths[..., :-1])  # (B,M,S-1)
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)  # (B,M,S-1)
    if generator is None:
        u = ((torch.arange(samples, dtype=depths.dtype, device=depths.device) + 0.5) / samples).expand(
            B, M, samples
        )
    else:
        u = torch.rand((B, M, samples), generator=generator, dtype=depths.dtype, device="cpu")
        u = u.to(depths.device)
    u = u.contiguous()
    hi = torch.searchsorted(cdf, u, right=True).clamp(1, S - 2)
    lo = hi - 1
    c0, c1 = torch.gather(cdf, -1, lo), torch.gather(cdf, -1, hi)
    e0, e1 = torch.gather(edges, -1, lo), torch.gather(edges, -1, hi)
    frac = (u - c0) / torch.where(c1 - c0 < 1e-8, torch.ones_like(c1), c1 - c0)
    return torch.sort(e0 + frac.clamp(0, 1) * (e1 - e0), -1).values
