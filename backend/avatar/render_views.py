"""Small helpers between the views format and the rasterizer (backend.render)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from backend.render.api import Raster
from backend.render.edges import DEFAULT_MAX_HOPS, edge_twins
from backend.render.ops import antialias
from protocol.cameras import CameraFrame


def camera_clip(vertices: torch.Tensor, cam: CameraFrame, scale: float = 1.0) -> torch.Tensor:
    """Clip positions (1,V,4) of world vertices for ``cam`` rendered at ``scale`` x its resolution."""
    from backend.render import world_to_clip

    K = cam.K.copy()
    K[:2] *= scale  # pixel coordinates scale with the image (the +0.5 centre convention is kept)
    w, h = round(cam.width * scale), round(cam.height * scale)
    return world_to_clip(
        vertices,
        torch.as_tensor(K, dtype=vertices.dtype),
        torch.as_tensor(cam.R, dtype=vertices.dtype),
        torch.as_tensor(cam.t, dtype=vertices.dtype),
        w,
        h,
        cam.near,
        cam.far,
    )


def scaled_size(cam: CameraFrame, scale: float) -> tuple[int, int]:
    """(H, W) of ``cam``'s image at ``scale``."""
    return round(cam.height * scale), round(cam.width * scale)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average (H,W,C) float image to (h,w) (used to bring views to the optimisation resolution)."""
    t = torch.as_tensor(np.ascontiguousarray(img), dtype=torch.float32).permute(2, 0, 1)[None]
    if t.shape[-2:] == size:
        return img.astype(np.float32)
    return F.interpolate(t, size=size, mode="area")[0].permute(1, 2, 0).numpy()


def silhouette_coverage(
    r: Raster,
    verts_clip: torch.Tensor,
    faces: torch.Tensor,
    twins: torch.Tensor | None = None,
    max_hops: int = DEFAULT_MAX_HOPS,
) -> torch.Tensor:
    """(H,W) antialiased coverage of a single-image raster, differentiable at silhouettes.

    :func:`backend.render.antialias` of the hard mask: it walks from a covered pixel's triangle to
    the true silhouette edge, so coverage stays unbiased with pixel-sized triangles (a grid-64
    sculpt rendered at 128-256 px). Pass ``twins`` (``backend.render.edges.edge_twins(faces)``) to
    share them between the views of one mesh.
    """
    clip = verts_clip if verts_clip.dim() == 3 else verts_clip.unsqueeze(0)
    covered = r.mask[:1].to(clip.dtype).unsqueeze(-1)
    return antialias(covered, r, clip[:1], faces, twins=twins, max_hops=max_hops)[0, ..., 0]


def mesh_coverages(vertices: np.ndarray, faces: np.ndarray, cameras: Iterable[CameraFrame],
                   scale: float = 1.0, rasterizer: str = "auto") -> Iterator[torch.Tensor]:
    """The mesh's antialiased silhouette coverage (H,W) in each camera at ``scale`` x its size,
    without gradients: what a measurement against the views' masks compares (the alignment's
    shifts, the outline error)."""
    from backend.render import get_rasterizer

    rast = get_rasterizer(rasterizer)
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int64)
    twins = edge_twins(f)
    with torch.no_grad():
        for cam in cameras:
            clip = camera_clip(v, cam, scale)
            r = rast.rasterize(clip, f.int(), resolution=scaled_size(cam, scale))
            yield silhouette_coverage(r, clip, f, twins)
