"""Differentiable per-pixel operations on a :class:`Raster`: interpolate, texture, antialias.

All of them are plain torch, evaluated only at covered pixels (``Raster.covered_pixels``), so
autograd gives gradients w.r.t. attributes, textures and (through the recomputed barycentrics and
the antialiasing edge positions) w.r.t. vertex positions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.api import Raster


def _batched(x: Tensor, batch: int, expected_dim: int) -> Tensor:
    if x.dim() == expected_dim - 1:
        x = x.unsqueeze(0)
    if x.shape[0] == 1 and batch > 1:
        x = x.expand(batch, *x.shape[1:])
    if x.shape[0] != batch:
        raise ValueError(f"batch mismatch: {x.shape[0]} vs raster batch {batch}")
    return x


def interpolate(attr: Tensor, r: Raster, faces: Tensor) -> Tensor:
    """Perspective-correct interpolation of per-vertex ``attr`` (B,V,C)|(V,C) -> (B,H,W,C); 0 outside.

    ``faces`` indexes ``attr``: pass the mesh faces for per-vertex attributes, or separate
    attribute faces (e.g. UV faces with seams) for face-varying ones, as in nvdiffrast.
    """
    return scatter_pixels(interpolate_packed(attr, r, faces), r, 0.0)


def interpolate_packed(attr: Tensor, r: Raster, faces: Tensor) -> Tensor:
    """:func:`interpolate` at the covered pixels only: (N,C) in ``r.covered_pixels()`` order.

    Working on packed pixels skips the background (typically 60-80% of a body frame); combine with
    :func:`scatter_pixels` once at the end.
    """
    batch, height, width = r.tri_id.shape
    attr = _batched(attr, batch, 3)
    n_verts, channels = attr.shape[1], attr.shape[2]
    faces = faces.to(device=attr.device, dtype=torch.int64)
    pix = r.covered_pixels()
    if pix.numel() == 0:
        return attr.new_zeros(0, channels)
    vert_index = r.pixel_corners(faces)
    if batch > 1:
        b = torch.div(pix, height * width, rounding_mode="floor")
        vert_index = vert_index + (b * n_verts).unsqueeze(1)
    corner = attr.reshape(-1, channels)[vert_index]  # (N,3,C)
    b12 = r.bary.reshape(-1, 2)[pix].to(attr.dtype)
    b1, b2 = b12[:, 0:1], b12[:, 1:2]
    return corner[:, 0] + b1 * (corner[:, 1] - corner[:, 0]) + b2 * (corner[:, 2] - corner[:, 0])


def scatter_pixels(values: Tensor, r: Raster, fill: float | Tensor = 0.0) -> Tensor:
    """Packed per-pixel values (N,C) back to images (B,H,W,C) with ``fill`` on background."""
    batch, height, width = r.tri_id.shape
    channels = values.shape[-1]
    shape = (batch * height * width, channels)
    if isinstance(fill, Tensor):
        out = torch.empty(shape, dtype=values.dtype, device=values.device)
        out[:] = fill.to(values)
    else:
        out = torch.full(shape, float(fill), dtype=values.dtype, device=values.device)
    return out.index_copy(0, r.covered_pixels(), values).reshape(batch, height, width, channels)


def texture(tex: Tensor, uv: Tensor, filter: Literal["bilinear", "nearest"] = "bilinear") -> Tensor:
    """Sample ``tex`` (B,Ht,Wt,C)|(Ht,Wt,C) at ``uv`` (B,H,W,2) -> (B,H,W,C).

    uv in [0, 1] with v up (glTF/Blender): v = 0 is the bottom row of the texture image, whose row 0
    is its top. Texel centres sit at (i + 0.5) / size; outside [0, 1] clamps to the border texel.
    Built on ``grid_sample`` (differentiable w.r.t. both the texture and uv).
    """
    if uv.dim() != 4 or uv.shape[-1] != 2:
        raise ValueError(f"uv must be (B,H,W,2), got {tuple(uv.shape)}")
    if filter not in ("bilinear", "nearest"):
        raise ValueError(f"filter must be 'bilinear' or 'nearest', got {filter!r}")
    tex = _batched(tex, uv.shape[0], 4)
    image = tex.permute(0, 3, 1, 2).to(uv.dtype) if tex.dtype != uv.dtype else tex.permute(0, 3, 1, 2)
    grid = torch.stack((uv[..., 0] * 2.0 - 1.0, 1.0 - uv[..., 1] * 2.0), dim=-1)
    sampled = F.grid_sample(image, grid, mode=filter, padding_mode="border", align_corners=False)
    return sampled.permute(0, 2, 3, 1)


def _screen_xy(verts_clip: Tensor, height: int, width: int) -> Tensor:
    """Pixel coordinates (OpenCV frame, row 0 top) of clip positions; w must be > 0."""
    w = verts_clip[..., 3:4]
    ndc = verts_clip[..., :2] / w
    return torch.stack(((ndc[..., 0] + 1.0) * (0.5 * width), (1.0 - ndc[..., 1]) * (0.5 * height)), dim=-1)


def antialias(color: Tensor, r: Raster, verts_clip: Tensor, faces: Tensor) -> Tensor:
    """Blend colours across silhouette edges by their analytic coverage (nvdiffrast-style).

    For each pair of horizontally or vertically adjacent pixels with different triangle ids, the
    nearer one's triangle is the occluder. The first of its edges that the segment between the two
    pixel centres crosses gives the crossing point t in [0, 1]; if that edge is not shared with the
    triangle seen in the other pixel (a silhouette, not an interior mesh edge), the pixel on the far
    side of the crossing receives coverage |t - 0.5| of the other colour. t is a differentiable
    function of the edge's vertex positions, which is what gives gradients to silhouettes.
    """
    batch, height, width = r.tri_id.shape
    if verts_clip.dim() == 2:
        verts_clip = verts_clip.unsqueeze(0)
    verts_clip = _batched(verts_clip, batch, 3)
    faces = faces.to(device=color.device, dtype=torch.int64)
    channels = color.shape[-1]
    flat_color = color.reshape(-1, channels)
    delta = torch.zeros_like(flat_color)
    screen = _screen_xy(verts_clip.to(color.dtype), height, width).reshape(-1, 2)
    in_front = (verts_clip[..., 3] > 0).reshape(-1)
    n_verts = verts_clip.shape[1]
    flat_tri = r.tri_id.reshape(-1)
    flat_depth = r.depth.detach().reshape(-1)
    tri = r.tri_id
    for axis, step in ((2, 1), (1, width)):
        # Only pixel pairs whose ids differ matter (a few percent of the image): find them on the
        # id image directly, then work on that short list.
        size = tri.shape[axis] - 1
        differs = tri.narrow(axis, 0, size) != tri.narrow(axis, 1, size)
        where = torch.nonzero(differs)  # (M,3): b, y, x of the first pixel of each pair
        if where.numel() == 0:
            continue
        first = (where[:, 0] * height + where[:, 1]) * width + where[:, 2]
        second = first + step
        first_is_front = flat_depth[first] <= flat_depth[second]
        front = torch.where(first_is_front, first, second)
        back = torch.where(first_is_front, second, first)
        front_tri = flat_tri[front]
        keep = front_tri >= 0
        front, back, front_tri = front[keep], back[keep], front_tri[keep]
        b = torch.div(front, height * width, rounding_mode="floor")
        corners = faces[front_tri] + (b * n_verts).unsqueeze(1)  # (N,3)
        usable = in_front[corners].all(1)
        front, back, corners = front[usable], back[usable], corners[usable]
        if front.numel() == 0:
            continue
        t, edge = _edge_crossing(screen[corners], _pixel_centre(front, height, width),
                                 _pixel_centre(back, height, width))
        back_tri = flat_tri[back]
        silhouette = ~_triangle_has_edge(faces, back_tri, corners - (b * n_verts).unsqueeze(1), edge)
        valid = silhouette & (t >= 0) & (t <= 1)
        front, back, t = front[valid], back[valid], t[valid]
        color_front, color_back = flat_color[front], flat_color[back]
        # Past the midpoint the occluder covers part of the back pixel; before it, the front pixel is
        # only partly covered by its own triangle.
        into_back = (t - 0.5).clamp(min=0).unsqueeze(1)
        into_front = (0.5 - t).clamp(min=0).unsqueeze(1)
        delta = delta.index_add(0, back, into_back * (color_front - color_back))
        delta = delta.index_add(0, front, into_front * (color_back - color_front))
    return (flat_color + delta).reshape(color.shape)


def _pixel_centre(flat: Tensor, height: int, width: int) -> Tensor:
    rem = flat % (height * width)
    row = torch.div(rem, width, rounding_mode="floor")
    col = rem - row * width
    return torch.stack((col, row), dim=-1).to(torch.float32) + 0.5


_EDGES = ((1, 2), (2, 0), (0, 1))  # edge k is opposite vertex k


def _edge_crossing(tri_xy: Tensor, inside: Tensor, outside: Tensor) -> tuple[Tensor, Tensor]:
    """Where the segment inside->outside leaves the triangle: t (N,) and the edge index (N,)."""
    inside = inside.to(tri_xy.dtype)
    outside = outside.to(tri_xy.dtype)
    area = ((tri_xy[:, 1, 0] - tri_xy[:, 0, 0]) * (tri_xy[:, 2, 1] - tri_xy[:, 0, 1])
            - (tri_xy[:, 1, 1] - tri_xy[:, 0, 1]) * (tri_xy[:, 2, 0] - tri_xy[:, 0, 0]))
    orient = torch.sign(area).detach()
    ts = []
    for j, k in _EDGES:
        a, c = tri_xy[:, j], tri_xy[:, k]
        d = c - a

        def edge_fn(p: Tensor, a: Tensor = a, d: Tensor = d) -> Tensor:
            return orient * (d[:, 0] * (p[:, 1] - a[:, 1]) - d[:, 1] * (p[:, 0] - a[:, 0]))

        e_in, e_out = edge_fn(inside), edge_fn(outside)
        crosses = (e_out < 0) & (e_in >= 0)
        denom = torch.where(crosses, e_in - e_out, torch.ones_like(e_in))
        ts.append(torch.where(crosses, e_in / denom, torch.full_like(e_in, 2.0)))
    stacked = torch.stack(ts, dim=1)
    t, edge = stacked.min(dim=1)
    return t, edge


def _triangle_has_edge(faces: Tensor, other_tri: Tensor, corners: Tensor, edge: Tensor) -> Tensor:
    """Whether triangle ``other_tri`` (-1 = none) contains the edge ``edge`` of triangle ``corners``."""
    pairs = torch.tensor(_EDGES, device=corners.device)[edge]  # (N,2)
    ends = torch.gather(corners, 1, pairs)  # (N,2) vertex ids
    other = faces[other_tri.clamp(min=0)]  # (N,3)
    has = (other.unsqueeze(1) == ends.unsqueeze(2)).any(2).all(1)
    return has & (other_tri >= 0)
