"""Small helpers between the views format and the rasterizer (backend.render)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.avatar.views import Camera
from backend.render.api import Raster


def camera_clip(vertices: torch.Tensor, cam: Camera, scale: float = 1.0) -> torch.Tensor:
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


def scaled_size(cam: Camera, scale: float) -> tuple[int, int]:
    """(H, W) of ``cam``'s image at ``scale``."""
    return round(cam.height * scale), round(cam.width * scale)


def vertex_normals_torch(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, differentiable."""
    tri = vertices[faces]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return F.normalize(vn, dim=1, eps=1e-12)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average (H,W,C) float image to (h,w) (used to bring views to the optimisation resolution)."""
    t = torch.as_tensor(np.ascontiguousarray(img), dtype=torch.float32).permute(2, 0, 1)[None]
    if t.shape[-2:] == size:
        return img.astype(np.float32)
    return F.interpolate(t, size=size, mode="area")[0].permute(1, 2, 0).numpy()


def edge_twins(faces: torch.Tensor) -> torch.Tensor:
    """(F,3) index of the face across edge k (opposite corner k) of each face; -1 on open edges.

    Edges used by more than two faces (non-manifold) also get -1, i.e. count as open.
    """
    n = faces.shape[0]
    ends = torch.stack([faces[:, [1, 2]], faces[:, [2, 0]], faces[:, [0, 1]]], 1).reshape(-1, 2)
    lo, hi = ends.min(1).values, ends.max(1).values
    key = lo * (int(faces.max()) + 1 if n else 1) + hi
    order = torch.argsort(key)
    k = key[order]
    twins = torch.full((3 * n,), -1, dtype=torch.int64)
    if n == 0:
        return twins.view(0, 3)
    same = k[1:] == k[:-1]
    # a pair (i, i+1) is a clean manifold edge when exactly these two half-edges share the key
    prev_same = torch.cat([torch.zeros(1, dtype=torch.bool), same[:-1]])
    next_same = torch.cat([same[1:], torch.zeros(1, dtype=torch.bool)])
    pair = same & ~prev_same & ~next_same
    a, b = order[:-1][pair], order[1:][pair]
    twins[a] = torch.div(b, 3, rounding_mode="floor")
    twins[b] = torch.div(a, 3, rounding_mode="floor")
    return twins.view(n, 3)


def silhouette_coverage(
    r: Raster, verts_clip: torch.Tensor, faces: torch.Tensor, twins: torch.Tensor | None = None
) -> torch.Tensor:
    """(H,W) antialiased coverage of a single-image raster, differentiable at silhouettes.

    Like ``backend.render.antialias`` on a constant colour, but a pixel pair across the mask
    boundary only gets fractional coverage when the segment between the two pixel centres leaves the
    covering triangle through a *silhouette* edge (its neighbour faces away from the camera, or
    there is none). ``antialias`` takes the first edge the segment crosses and only checks that the
    other pixel's triangle does not share it, so with triangles about a pixel in size (a grid-64
    sculpt rendered at 128 px) it often picks an interior edge short of the silhouette and removes
    coverage that is really there: the GT character's coverage came out ~10 % low at 128 px, and
    the sculpt dilated itself by ~1 px at 512 to compensate. Pairs without a silhouette exit keep
    their hard (pixel-centre) coverage, which is unbiased.
    """
    from backend.render.ops import _edge_crossing, _pixel_centre, _screen_xy

    tri = r.tri_id[0]
    height, width = tri.shape
    clip = verts_clip[0] if verts_clip.dim() == 3 else verts_clip
    faces = faces.to(torch.int64)
    if twins is None:
        twins = edge_twins(faces)
    covered = (tri >= 0).to(clip.dtype)
    screen = _screen_xy(clip, height, width)
    tri_xy = screen[faces]
    area = (tri_xy[:, 1, 0] - tri_xy[:, 0, 0]) * (tri_xy[:, 2, 1] - tri_xy[:, 0, 1]) - (
        tri_xy[:, 1, 1] - tri_xy[:, 0, 1]
    ) * (tri_xy[:, 2, 0] - tri_xy[:, 0, 0])
    facing = torch.sign(area.detach())
    in_front = clip[:, 3] > 0
    flat_tri = tri.reshape(-1)
    delta = torch.zeros_like(covered).reshape(-1)
    for axis, step in ((1, 1), (0, width)):
        size = tri.shape[axis] - 1
        a_in = tri.narrow(axis, 0, size) >= 0
        b_in = tri.narrow(axis, 1, size) >= 0
        where = torch.nonzero(a_in != b_in)
        if where.numel() == 0:
            continue
        first = where[:, 0] * width + where[:, 1]
        second = first + step
        first_in = flat_tri[first] >= 0
        inside = torch.where(first_in, first, second)
        outside = torch.where(first_in, second, first)
        ftri = flat_tri[inside]
        corners = faces[ftri]
        ok = in_front[corners].all(1)
        inside, outside, ftri, corners = inside[ok], outside[ok], ftri[ok], corners[ok]
        if inside.numel() == 0:
            continue
        t, edge = _edge_crossing(
            screen[corners], _pixel_centre(inside, height, width), _pixel_centre(outside, height, width)
        )
        twin = twins[ftri, edge]
        silhouette = (twin < 0) | (facing[twin.clamp(min=0)] != facing[ftri])
        valid = silhouette & (t >= 0) & (t <= 1)
        inside, outside, t = inside[valid], outside[valid], t[valid]
        # Past the midpoint the surface covers part of the outside pixel; before it, the inside
        # pixel is only partly covered.
        delta = delta.index_add(0, outside, (t - 0.5).clamp(min=0))
        delta = delta.index_add(0, inside, -(0.5 - t).clamp(min=0))
    return covered + delta.view(height, width)
