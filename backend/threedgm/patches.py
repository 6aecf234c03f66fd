"""Patch-composed rendering (En3D): small body parts get their own ray grid.

A full-body volume rendering spends few rays on the head and hands. Each configured part (a body
part name) is rendered again in its own square box around the projection of its posed vertices,
at its own ray resolution, through the same triplane, warp and super-resolution head; the patch
is then pasted into the full image over its box with feathered edges. Our simplification of En3D:
the boxes come from the posed body (not learned), the patch shares the super-resolution head, and
there is no patch discriminator (the composed image is what the discriminators see).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def project(points: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Pixels (B,N,2) of world points (B,N,3)."""
    cam = points @ R.transpose(1, 2) + t[:, None]
    pix = cam @ K.transpose(1, 2)
    return pix[..., :2] / pix[..., 2:].clamp(min=1e-6)


def part_boxes(
    points: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    size: int,
    margin: float = 0.25,
    min_side: float = 4.0,
) -> torch.Tensor:
    """(B,4) square boxes x0, y0, side, side around the projected ``points`` (B,N,3), grown by
    ``margin`` of their side on each side, at least ``min_side`` pixels, clamped into the image."""
    pix = project(points, K, R, t)
    lo, hi = pix.min(dim=1).values, pix.max(dim=1).values
    centre = (lo + hi) / 2
    side = ((hi - lo).max(dim=1).values * (1 + 2 * margin)).clamp(min=min_side, max=float(size))
    x0 = (centre[:, 0] - side / 2).clamp(min=0.0)
    y0 = (centre[:, 1] - side / 2).clamp(min=0.0)
    x0 = torch.minimum(x0, size - side)
    y0 = torch.minimum(y0, size - side)
    return torch.stack([x0, y0, side, side], dim=1)


def compose(
    full: torch.Tensor, patch: torch.Tensor, box: torch.Tensor, feather: float = 0.15
) -> torch.Tensor:
    """``full`` (B,C,S,S) with ``patch`` (B,C,P,P) resampled into ``box`` (B,4, pixels of full).

    Inside the box the patch wins, with a linear ramp over ``feather`` of the box side at its edges
    (no visible seam); outside it ``full`` is unchanged. Differentiable in both images.
    """
    B, _, S, _ = full.shape
    coords = torch.arange(S, dtype=full.dtype, device=full.device) + 0.5
    # position of each full-image pixel centre inside the box, 0..1
    u = (coords[None, :] - box[:, 0:1]) / box[:, 2:3]  # (B,S) along x
    v = (coords[None, :] - box[:, 1:2]) / box[:, 3:4]  # (B,S) along y
    grid = torch.stack([u[:, None, :].expand(B, S, S), v[:, :, None].expand(B, S, S)], dim=-1) * 2 - 1
    sampled = F.grid_sample(patch, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def ramp(x: torch.Tensor) -> torch.Tensor:
        return (torch.minimum(x, 1 - x) / feather).clamp(0.0, 1.0)

    weight = (ramp(v)[:, :, None] * ramp(u)[:, None, :])[:, None]  # (B,1,S,S)
    return full * (1 - weight) + sampled * weight
