"""nvdiffrast visibility on CUDA (selected only when CUDA and ``nvdiffrast`` are importable).

nvdiffrast is not on PyPI and cannot be installed here, so this backend is written against its
documented API (``nvdiffrast.torch.RasterizeCudaContext`` / ``rasterize``) and exercised by the
shared backend test-suite wherever it is importable. Only the triangle ids are taken from it:
barycentrics and depth are recomputed by :mod:`backend.render.barycentric` like every backend, so
gradients are identical across backends.

Conventions: nvdiffrast's output row 0 is clip y = -1 (OpenGL's bottom); ours is the top (clip
y = +1), so y is negated on the way in (nvdiffrast does not cull either winding, so the flip is
harmless). Its ``triangle_id`` channel is offset by one (0 = empty).
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.barycentric import barycentrics_at_pixels


class NvdiffrastRasterizer:
    name = "nvdiffrast"

    def __init__(self) -> None:
        import nvdiffrast.torch as dr  # optional dependency, CUDA only

        self._dr = dr
        self._ctx = dr.RasterizeCudaContext()

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        device = verts_clip.device
        pos = verts_clip.detach().to(device="cuda", dtype=torch.float32)
        pos = pos * torch.tensor([1.0, -1.0, 1.0, 1.0], device=pos.device)
        tri = faces.to(device="cuda", dtype=torch.int32).contiguous()
        with torch.no_grad():
            rast, _ = self._dr.rasterize(self._ctx, pos.contiguous(), tri, resolution=[height, width])
        tri_id = rast[..., 3].round().to(torch.int64) - 1
        tri_id = tri_id.to(device)
        bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        return Raster(tri_id=tri_id, bary=bary, depth=depth)
