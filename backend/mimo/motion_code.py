"""Structured motion code: the body's vertices carry learned latent codes; rasterised through the
footage camera they become one (C, H, W) feature map per frame.

Visibility (which triangle covers a pixel) comes from the project's rasterizer once per clip; the
codes are then interpolated with the barycentrics in torch (``backend.render.ops.interpolate``), so
the loss's gradient reaches the per-vertex codes (``PoseGuider.vertex_codes``). Background pixels get
zeros, as MIMO's rendered condition is black outside the body.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.render.api import Raster, get_rasterizer
from backend.render.camera import world_to_clip
from backend.render.ops import interpolate

NEAR, FAR = 0.05, 100.0


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """K (F,3,3) for images of (H, W) ``from_size`` resized to ``to_size``: pixel corners stay at
    (0, 0), so x' = x * W'/W, y' = y * H'/H."""
    (h0, w0), (h1, w1) = from_size, to_size
    scale = np.diag([w1 / w0, h1 / h0, 1.0])
    return np.einsum("ij,fjk->fik", scale, np.asarray(K, dtype=np.float64))


def rasterize_body(
    posed_vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    size: tuple[int, int],
    rasterizer: str = "auto",
) -> Raster:
    """Per-pixel triangle ids and barycentrics (F frames) of the posed body at (H, W) ``size``."""
    height, width = size
    verts = torch.as_tensor(np.asarray(posed_vertices, dtype=np.float32))
    clip = world_to_clip(
        verts,
        np.asarray(K, np.float64),
        np.asarray(R, np.float64),
        np.asarray(t, np.float64),
        width,
        height,
        NEAR,
        FAR,
    ).float()
    tri = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    return get_rasterizer(rasterizer).rasterize(clip.contiguous(), tri, (height, width))


def code_maps(
    codes: torch.Tensor, raster: Raster, faces: torch.Tensor, frames: slice | None = None
) -> torch.Tensor:
    """(F, C, H, W) feature maps of per-vertex ``codes`` (V, C): differentiable w.r.t. the codes.

    ``frames`` selects a window of the raster's frames (interpolating only those)."""
    if frames is not None:
        raster = Raster(raster.tri_id[frames], raster.bary[frames], raster.depth[frames])
    maps = interpolate(codes, raster, faces)  # (F, H, W, C)
    return maps.permute(0, 3, 1, 2).contiguous()
