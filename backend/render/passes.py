"""Render passes of a mesh seen by a batch of cameras: RGB, alpha, depth, normals, UV, ids, joints.

Two implementations of the same passes: torch (differentiable) and, without gradients on CPU,
the fused numba path of :mod:`backend.render.cpu_passes` (chosen automatically).

One rasterisation per camera serves every pass; per-vertex attributes are interpolated in a single
gather. Conventions: images are (B,H,W,C) float32, row 0 at the top; depth is camera z in metres
(+inf on background); normals are unit vectors, camera normals in OpenCV axes (x right, y down,
z forward, so a surface facing the camera has n_z < 0), world normals in the protocol's Y-up world;
uv is (u, v) with v up; ids are -1 on background.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from backend.mesh.normals import vertex_normals
from backend.render.api import Raster, Rasterizer, get_rasterizer
from backend.render.camera import CameraBatch
from backend.render.ops import antialias, interpolate_packed, scatter_pixels, texture

ALL_PASSES = ("rgb", "alpha", "depth", "normal_cam", "normal_world", "uv", "face_id", "part", "joints")


@dataclass
class Mesh:
    """A triangle mesh in world space (protocol convention) with optional appearance.

    ``verts`` (V,3) or (B,V,3) world positions; ``faces`` (F,3). UVs are per vertex (``uv`` (V,2))
    or face-varying (``uv`` (Vt,2) indexed by ``uv_faces`` (F,3), as after a UV unwrap with seams).
    ``texture`` (Ht,Wt,3) in [0, 1], row 0 = top (v = 1). ``vertex_colors`` (V,3) in [0, 1].
    ``part_labels`` (V,) int64 body-part index per vertex.
    """

    verts: Tensor
    faces: Tensor
    uv: Tensor | None = None
    uv_faces: Tensor | None = None
    texture: Tensor | None = None
    vertex_colors: Tensor | None = None
    part_labels: Tensor | None = None


@dataclass
class Passes:
    """Outputs of :func:`render_passes`; passes not requested are None."""

    raster: Raster
    rgb: Tensor | None = None  # (B,H,W,3) composited over the background
    alpha: Tensor | None = None  # (B,H,W)
    depth: Tensor | None = None  # (B,H,W) camera z, inf background
    normal_cam: Tensor | None = None  # (B,H,W,3), 0 background
    normal_world: Tensor | None = None  # (B,H,W,3), 0 background
    uv: Tensor | None = None  # (B,H,W,2), 0 background
    face_id: Tensor | None = None  # (B,H,W) int64, -1 background
    part: Tensor | None = None  # (B,H,W) int64, -1 background
    joints_2d: Tensor | None = None  # (B,J,2) pixel coordinates (centre of pixel (0,0) at 0.5)
    joints_depth: Tensor | None = None  # (B,J) camera z
    joints_visible: Tensor | None = None  # (B,J) bool: in the image and not behind the surface


def lambert(albedo: Tensor, normal_cam: Tensor, light_dir_cam: Tensor, ambient: float) -> Tensor:
    """Diffuse shading with a directional light given in camera axes (direction *towards* the light)."""
    light = F.normalize(light_dir_cam.to(normal_cam), dim=-1)
    diffuse = (normal_cam * light).sum(-1, keepdim=True).clamp(min=0.0)
    return albedo * (ambient + (1.0 - ambient) * diffuse)


# Headlight slightly above and left of the camera: in OpenCV camera axes "towards the camera" is -z.
DEFAULT_LIGHT_CAM = (-0.3, -0.4, -1.0)


def render_passes(
    mesh: Mesh,
    cameras: CameraBatch,
    *,
    passes: Iterable[str] = ALL_PASSES,
    joints: Tensor | None = None,
    rasterizer: Rasterizer | None = None,
    shading: str = "lambert",
    base_color: tuple[float, float, float] = (0.7, 0.7, 0.7),
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    light_dir_cam: tuple[float, float, float] = DEFAULT_LIGHT_CAM,
    ambient: float = 0.35,
    smooth_edges: bool = False,
    visibility_tolerance: float = 0.15,
    fused: bool | None = None,
    threads: int | None = None,
) -> Passes:
    """Rasterise ``mesh`` once per camera and compute the requested passes.

    RGB albedo is the texture if the mesh has one (and UVs), else the vertex colours, else
    ``base_color``; ``shading`` is ``"lambert"`` (headlight) or ``"none"`` (flat albedo).
    ``smooth_edges`` antialiases RGB and alpha (differentiable silhouettes). ``joints`` (J,3) or
    (B,J,3) world points give 2D joints; one is visible if it is inside the image and no more than
    ``visibility_tolerance`` metres behind the surface seen at its pixel (joints lie inside the
    body, so the tolerance is about a limb's thickness). ``fused``: None picks the numba path when
    possible (CPU, no gradients, no smooth_edges); True/False forces it (True raises if impossible).
    ``threads``: CPU threads of the fused path (default :func:`backend.render.bands.default_threads`).
    """
    wanted = set(passes)
    unknown = wanted - set(ALL_PASSES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)}; known: {', '.join(ALL_PASSES)}")
    if shading not in ("lambert", "none"):
        raise ValueError(f"shading must be 'lambert' or 'none', got {shading!r}")
    rasterizer = rasterizer or get_rasterizer("auto")
    batch = len(cameras)
    device = cameras.K.device
    faces = mesh.faces.to(device=device, dtype=torch.int64)
    verts = mesh.verts.to(device=device, dtype=torch.float32)
    verts = verts.unsqueeze(0) if verts.dim() == 2 else verts
    verts = verts.expand(batch, -1, -1) if verts.shape[0] == 1 and batch > 1 else verts
    clip = cameras.clip(verts)
    can_fuse = (device.type == "cpu" and not smooth_edges
                and (mesh.texture is None or mesh.texture.dim() == 3 or mesh.texture.shape[0] == 1)
                and not (torch.is_grad_enabled() and any(
                    t is not None and t.requires_grad
                    for t in (clip, mesh.verts, mesh.uv, mesh.texture, mesh.vertex_colors))))
    if fused if fused is not None else can_fuse:
        if not can_fuse:
            raise ValueError("the fused CPU path needs CPU tensors, no gradients and no smooth_edges")
        from backend.render.cpu_passes import render_images, resolve_shading

        look = resolve_shading(mesh, faces, shading, base_color, background, light_dir_cam, ambient)
        r, images = render_images(verts, faces, clip, cameras, rasterizer, wanted, look, threads)
        return _raster_passes(Passes(raster=r, **images), wanted, joints, cameras, visibility_tolerance)
    r = rasterizer.rasterize(clip, faces, cameras.resolution)
    out = Passes(raster=r)
    mask = r.mask
    pix = r.covered_pixels()
    n_pix = pix.numel()

    has_texture = mesh.texture is not None and mesh.uv is not None
    need_uv = "uv" in wanted or ("rgb" in wanted and has_texture)
    need_normals = bool({"normal_cam", "normal_world"} & wanted) or ("rgb" in wanted and shading == "lambert")

    # Everything below works on the N covered pixels ("packed") and is scattered to images once:
    # the background is most of a frame. One gather serves all per-vertex attributes.
    columns: list[Tensor] = []
    names: list[tuple[str, int]] = []
    if need_normals:
        columns.append(vertex_normals(verts, faces))
        names.append(("normal", 3))
    if "rgb" in wanted and not has_texture and mesh.vertex_colors is not None:
        columns.append(mesh.vertex_colors.to(device=device, dtype=torch.float32).expand(batch, -1, -1))
        names.append(("color", 3))
    if need_uv and mesh.uv is not None and mesh.uv_faces is None:
        columns.append(mesh.uv.to(device=device, dtype=torch.float32).expand(batch, -1, -1))
        names.append(("uv", 2))
    attrs: dict[str, Tensor] = {}
    if columns:
        packed = interpolate_packed(torch.cat(columns, dim=-1), r, faces)
        start = 0
        for name, width in names:
            attrs[name] = packed[:, start:start + width]
            start += width
    if need_uv and mesh.uv is not None and mesh.uv_faces is not None:
        attrs["uv"] = interpolate_packed(mesh.uv.to(device=device, dtype=torch.float32), r,
                                         mesh.uv_faces.to(device=device, dtype=torch.int64))

    normal_cam = None
    if need_normals:
        normal_world = F.normalize(attrs["normal"], dim=-1, eps=1e-12)
        pixel_batch = torch.div(pix, mask.shape[1] * mask.shape[2], rounding_mode="floor")
        rot = cameras.R[0] if batch == 1 else cameras.R[pixel_batch]
        normal_cam = normal_world @ rot.T if batch == 1 else torch.einsum("nij,nj->ni", rot, normal_world)
        if "normal_world" in wanted:
            out.normal_world = scatter_pixels(normal_world, r)
        if "normal_cam" in wanted:
            out.normal_cam = scatter_pixels(normal_cam, r)
    if "uv" in wanted:
        no_uv = torch.zeros(*mask.shape, 2, device=device)
        out.uv = scatter_pixels(attrs["uv"], r) if "uv" in attrs else no_uv

    if "rgb" in wanted or "alpha" in wanted:
        alpha = mask.to(torch.float32).unsqueeze(-1)
        if smooth_edges:
            alpha = antialias(alpha, r, clip, faces)
        if "rgb" in wanted:
            if has_texture:
                assert mesh.texture is not None
                tex = mesh.texture.to(device=device, dtype=torch.float32)
                if tex.dim() == 3 or tex.shape[0] == 1:
                    albedo = texture(tex, attrs["uv"].reshape(1, 1, n_pix, 2)).reshape(n_pix, -1)
                else:  # a different texture per image: sample full images
                    full = texture(tex, scatter_pixels(attrs["uv"], r))
                    albedo = full.reshape(-1, full.shape[-1])[pix]
            elif "color" in attrs:
                albedo = attrs["color"]
            else:
                albedo = torch.tensor(base_color, device=device).expand(n_pix, 3)
            color = albedo
            if shading == "lambert":
                assert normal_cam is not None
                color = lambert(albedo, normal_cam, torch.tensor(light_dir_cam, device=device), ambient)
            color_image = scatter_pixels(color, r, 0.0)
            if smooth_edges:
                color_image = antialias(color_image, r, clip, faces)
            bg = torch.tensor(background, device=device, dtype=torch.float32)
            # Colour is premultiplied by coverage (0 on background); composite "over" the background.
            out.rgb = color_image + (1.0 - alpha) * bg if bool(bg.any()) else color_image
        if "alpha" in wanted:
            out.alpha = alpha.squeeze(-1)

    if "part" in wanted:
        out.part = part_image(r, faces, mesh.part_labels)
    return _raster_passes(out, wanted, joints, cameras, visibility_tolerance)


def _raster_passes(out: Passes, wanted: set[str], joints: Tensor | None, cameras: CameraBatch,
                   visibility_tolerance: float) -> Passes:
    """The passes both paths take from the raster as it is: depth, face id, projected joints."""
    r = out.raster
    if "depth" in wanted:
        out.depth = r.depth
    if "face_id" in wanted:
        out.face_id = r.tri_id
    if "joints" in wanted and joints is not None:
        out.joints_2d, out.joints_depth, out.joints_visible = project_joints(
            joints.to(device=r.depth.device, dtype=torch.float32), cameras, r.depth, visibility_tolerance)
    return out


def part_image(r: Raster, faces: Tensor, part_labels: Tensor | None) -> Tensor:
    """Part label per pixel: the label of the covering triangle's corner nearest the pixel centre."""
    result = torch.full_like(r.tri_id, -1)
    if part_labels is None:
        return result
    pix = r.covered_pixels()
    b12 = r.bary.detach().reshape(-1, 2)[pix]
    b1, b2 = b12[:, 0], b12[:, 1]
    b0 = 1.0 - b1 - b2
    corner = torch.where((b1 > b0) & (b1 >= b2), 1, torch.where(b2 > b0, 2, 0)).unsqueeze(1)
    vertex = torch.gather(r.pixel_corners(faces), 1, corner).squeeze(1)
    labels = part_labels.to(device=result.device, dtype=torch.int64)[vertex]
    return result.reshape(-1).index_copy(0, pix, labels).reshape(r.tri_id.shape)


def project_joints(joints: Tensor, cameras: CameraBatch, depth: Tensor,
                   tolerance: float) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel positions (B,J,2), camera depth (B,J) and visibility (B,J) of world joints.

    Visible = in front of the camera, inside the image, and not occluded: the depth pass at the
    joint's pixel is background or at most ``tolerance`` in front of the joint. Not differentiable
    (ground truth for datasets and pose images): one numba loop on the CPU, where a hundred joints
    cost microseconds instead of the ~20 small torch ops' quarter millisecond.
    """
    from backend.render.cpu_shade import project_joints_into

    batch = len(cameras)
    points = joints.detach().cpu().numpy().astype(np.float32)
    points = points[None] if points.ndim == 2 else points
    if points.shape[0] not in (1, batch):  # the kernel indexes without bounds checks
        raise ValueError(f"joints for {points.shape[0]} images, cameras for {batch}")
    n_joints = points.shape[1]
    xy = np.empty((batch, n_joints, 2), dtype=np.float32)
    z = np.empty((batch, n_joints), dtype=np.float32)
    visible = np.empty((batch, n_joints), dtype=np.bool_)
    K, R, t = (np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
               for x in (cameras.K, cameras.R, cameras.t))
    project_joints_into(np.ascontiguousarray(points), K, R, t,
                        np.ascontiguousarray(depth.detach().cpu().numpy(), dtype=np.float32),
                        float(cameras.near), float(tolerance), xy, z, visible)
    return tuple(torch.from_numpy(a).to(joints.device) for a in (xy, z, visible))  # type: ignore[return-value]
