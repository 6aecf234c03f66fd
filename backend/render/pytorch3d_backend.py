"""pytorch3d visibility (selected only when CUDA and ``pytorch3d`` are importable).

Written against pytorch3d's documented ``pytorch3d.renderer.mesh.rasterize_meshes``, since
pytorch3d cannot be installed here. It expects vertices already in its NDC: +X left, +Y up, the
shorter image side spanning [-1, 1], z = view depth (used for its z-buffer). ``pix_to_face``
indexes the packed faces of the batch (offset per mesh). As for every backend, only the ids are
used; barycentrics and depth are recomputed in torch. Triangles with a vertex behind the camera
are dropped (pytorch3d rasterises projected vertices, which are meaningless at w <= 0); clip
against the near plane before using this backend on such geometry.
"""

from __future__ import annotations

import torch
from torch import Tensor

from backend.render.api import Raster, check_resolution, normalize_inputs
from backend.render.barycentric import barycentrics_at_pixels


class Pytorch3dRasterizer:
    name = "pytorch3d"

    def __init__(self, bin_size: int | None = None) -> None:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes

        self._rasterize_meshes = rasterize_meshes
        self._meshes = Meshes
        self.bin_size = bin_size

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster:
        verts_clip, faces = normalize_inputs(verts_clip, faces)
        height, width = check_resolution(resolution)
        device = verts_clip.device
        clip = verts_clip.detach().to(device="cuda", dtype=torch.float32)
        w = clip[..., 3:4]
        front = (clip[..., 3] > 1e-8)
        ndc = clip[..., :2] / torch.where(w > 1e-8, w, torch.ones_like(w))
        scale_x = width / min(width, height)
        scale_y = height / min(width, height)
        verts = torch.stack((-ndc[..., 0] * scale_x, ndc[..., 1] * scale_y, clip[..., 3]), dim=-1)
        faces_cuda = faces.to("cuda")
        batch = verts.shape[0]
        keep = front[:, faces_cuda].all(-1)  # (B,F)
        faces_list = [faces_cuda[keep[b]] for b in range(batch)]
        kept_ids = [torch.nonzero(keep[b]).squeeze(1) for b in range(batch)]
        meshes = self._meshes(verts=list(verts), faces=faces_list)
        with torch.no_grad():
            pix_to_face, _, _, _ = self._rasterize_meshes(
                meshes, image_size=(height, width), blur_radius=0.0, faces_per_pixel=1,
                bin_size=self.bin_size, perspective_correct=False, cull_backfaces=False,
            )
        packed = pix_to_face[..., 0]
        first = meshes.mesh_to_faces_packed_first_idx()
        tri_id = torch.full_like(packed, -1)
        for b in range(batch):
            local = packed[b] - first[b]
            hit = packed[b] >= 0
            tri_id[b][hit] = kept_ids[b][local[hit]]
        tri_id = tri_id.to(device=device, dtype=torch.int64)
        # pytorch3d has no near/far planes: drop pixels whose clip z falls outside [-w, w] (unlike
        # the other backends, a surface behind such a pixel is not revealed).
        with torch.no_grad():
            bary, depth = barycentrics_at_pixels(verts_clip.detach(), faces, tri_id)
            lam = torch.cat([1.0 - bary.sum(-1, keepdim=True), bary], dim=-1)
            corners = faces[tri_id.clamp(min=0)]  # (B,H,W,3)
            z = torch.gather(verts_clip.detach()[..., 2], 1, corners.reshape(batch, -1)).reshape(lam.shape)
            z_clip = (lam * z).sum(-1)
            tri_id = torch.where((z_clip.abs() <= depth) | (tri_id < 0), tri_id, -1)
        bary, depth = barycentrics_at_pixels(verts_clip, faces, tri_id)
        return Raster(tri_id=tri_id, bary=bary, depth=depth)
