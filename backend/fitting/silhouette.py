"""Silhouette terms: cheap point terms against distance transforms, then the rendered soft mask.

Coarse to fine. The *point terms* need no rasterisation: the posed vertices are projected into
every view and compared with the mask's signed distance transform (SDF, pixels, > 0 outside) at a
chosen scale (a quarter, half, full resolution):

- ``inside``: mean of ``relu(sdf(p))^2`` over the projected vertices: every vertex must fall in
  every silhouette (the visual hull), with a gradient from anywhere in the image;
- ``cover``: mean squared distance from each mask *boundary* pixel to the nearest projected vertex
  (one-sided chamfer): the silhouette must be filled out to its outline.

Together their minimum is the body whose outline is the mask's, to about a pixel of the chosen
scale; a low scale first gives broad basins, the full one precision. The *raster term* then
compares the differentiable antialiased alpha of ``backend.render`` (``smooth_edges=True``) with
the mask at full resolution (mean squared difference), which resolves the outline below a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import cKDTree

from backend.render.camera import CameraBatch
from backend.render.passes import Mesh, render_passes


@dataclass
class ScaledMasks:
    """The masks at one scale, ready for the point terms (coordinates in full-resolution pixels)."""

    scale: float
    sdf: torch.Tensor  # (B,1,h,w) signed distance in full-resolution pixels, > 0 outside the mask
    boundary: list[torch.Tensor]  # per view (Nb,2) boundary pixel centres, full-resolution pixels
    size: tuple[int, int]  # (H, W) at full resolution


def downsample(mask: np.ndarray, scale: float) -> np.ndarray:
    """A (H,W) soft mask at ``scale`` (area average) -> bool at the new size."""
    if scale == 1.0:
        return mask > 0.5
    t = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    h, w = max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale))
    return F.interpolate(t, size=(h, w), mode="area")[0, 0].numpy() > 0.5


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """(h,w) pixels: distance to the mask outside it, minus the distance to the outside inside it.

    Each pixel's distance is between centres, so the outline (between a mask pixel and its outside
    neighbour) reads ~0 once interpolated; an empty mask has no inside (everything is outside: the
    caller refuses empty masks first).
    """
    outside = ndimage.distance_transform_edt(~mask)
    inside = ndimage.distance_transform_edt(mask)
    return (outside - inside).astype(np.float32)


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """(N,2) x, y pixel centres of mask pixels with a 4-neighbour outside (or at the image edge)."""
    padded = np.pad(mask, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(2, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(mask & ~eroded)
    return np.stack([xs + 0.5, ys + 0.5], axis=1).astype(np.float32)


def scaled_masks(masks: list[np.ndarray], scale: float, device: torch.device) -> ScaledMasks:
    sdfs, bounds = [], []
    for m in masks:
        small = downsample(m, scale)
        sdfs.append(signed_distance(small) / scale)
        bounds.append(torch.as_tensor(boundary_pixels(small) / scale, device=device))
    sdf = torch.as_tensor(np.stack(sdfs), device=device)[:, None]
    return ScaledMasks(scale, sdf, bounds, masks[0].shape[:2])


def project(points: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B,N,2) OpenCV pixel coordinates of world points (N,3) in B cameras (depth clamped > 1 cm)."""
    cam = points[None] @ R.transpose(1, 2) + t[:, None]
    cam = torch.cat([cam[..., :2], cam[..., 2:].clamp(min=0.01)], dim=-1)
    homog = cam @ K.transpose(1, 2)
    return homog[..., :2] / homog[..., 2:]


def sample_sdf(sdf: torch.Tensor, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,N) bilinear SDF values at full-resolution pixel coordinates; outside the image the
    border value (positive: the person is inside the frame)."""
    h, w = size
    grid = torch.stack([pixels[..., 0] / w * 2 - 1, pixels[..., 1] / h * 2 - 1], dim=-1)[:, :, None]
    return F.grid_sample(sdf, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0, :, 0]


def point_terms(pixels: torch.Tensor, masks: ScaledMasks) -> tuple[torch.Tensor, torch.Tensor]:
    """(inside, cover) in full-resolution pixels^2 for projected vertices (B,N,2)."""
    inside = F.relu(sample_sdf(masks.sdf, pixels, masks.size)).pow(2).mean()
    covers = []
    for b, boundary in enumerate(masks.boundary):
        # The nearest vertex is found without gradients (a k-d tree: ~30x quicker than cdist over
        # 10k vertices); the distance to it carries the gradient.
        tree = cKDTree(pixels[b].detach().cpu().numpy(), balanced_tree=False, compact_nodes=False)
        nearest = torch.as_tensor(tree.query(boundary.cpu().numpy())[1], device=pixels.device)
        covers.append(((pixels[b, nearest] - boundary) ** 2).sum(-1).mean())
    return inside, torch.stack(covers).mean()


def raster_term(vertices: torch.Tensor, faces: torch.Tensor, cameras: CameraBatch,
                target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the antialiased silhouette (B,H,W) and the soft masks ``target``."""
    alpha = render_passes(Mesh(verts=vertices, faces=faces), cameras, passes=("alpha",),
                          smooth_edges=True).alpha
    assert alpha is not None
    return ((alpha - target) ** 2).mean()


def silhouette_iou(vertices: torch.Tensor, faces: torch.Tensor, cameras: CameraBatch,
                   masks: np.ndarray) -> list[float]:
    """Per-view IoU of the rendered body and the masks (> 0.5)."""
    with torch.no_grad():
        alpha = render_passes(Mesh(verts=vertices.detach(), faces=faces), cameras, passes=("alpha",)).alpha
    assert alpha is not None
    rendered = alpha.cpu().numpy() > 0.5
    given = masks > 0.5
    inter = (rendered & given).sum(axis=(1, 2))
    union = (rendered | given).sum(axis=(1, 2))
    return [float(i / u) if u else 1.0 for i, u in zip(inter, union, strict=True)]
