"""Explicit texturing (ET): optimise the atlas texture from the views through the rasterizer.

The geometry is fixed, so each training view is rasterised once: every covered pixel gets its UV
(interpolated from the split-vertex mesh) and a confidence (the mask's interior, weighted by how
frontally the surface faces the camera). The texture starts from the confidence-weighted average
of the pixels splatted bilinearly onto the atlas (nearly the optimum already), then Adam minimises
the reconstruction error of ``texture(tex, uv)`` against the views plus a total-variation term.
Texels no view sees are filled by push-pull (a mip pyramid of the known texels, coarse levels
filling the holes of finer ones), so nothing is black, and charts get a filled margin that keeps
bilinear and mip-mapped sampling clean at their borders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from backend.avatar.io.views import View
from backend.avatar.progress import ProgressFn, no_progress
from backend.avatar.render_views import camera_clip
from backend.avatar.texture.colour import ColourConfig, fuse_colours
from backend.mesh.normals import vertex_normals


@dataclass
class TextureConfig:
    # Up to 2048; 0: matched to what the views resolve (``auto_texture_size``): a 1024 atlas from
    # 512 px views left most texels unseen, filled rather than observed (grain).
    texture_size: int = 0
    texels_per_pixel: float = 1.25  # auto size: texel edge = the views' finest pixel footprint / this
    iterations: int = 60
    lr: float = 0.005  # the splat-average start is near the optimum: small steps
    w_tv: float = 0.005
    pixels_per_iter: int = 200_000  # random subset of the observed pixels per step
    min_cosine: float = 0.15  # pixels seen more grazing than this are not used
    erode_pixels: int = 1  # shrink masks so silhouette pixels (mixed with background) are not used
    rasterizer: str = "auto"
    seed: int = 0
    # Per-view colour correction and robust (IRLS) fusion weights before the splat (texture/colour.py).
    colour: ColourConfig = field(default_factory=ColourConfig)


@dataclass
class TextureResult:
    texture: np.ndarray  # (S,S,3) float32 in [0,1], row 0 = top (v = 1)
    seen: np.ndarray  # (S,S) bool: texels constrained by some view
    seconds: float
    losses: list[float]
    view_gain: np.ndarray | None = None  # (V,3) per-view colour correction applied (colour.py)
    view_offset: np.ndarray | None = None
    view_weight: np.ndarray | None = None  # (V,) robust weight of each training view


def auto_texture_size(
    vertices: np.ndarray, faces: np.ndarray, views: list[View], texels_per_pixel: float = 1.25,
    utilisation: float = 0.6, lo: int = 128, hi: int = 2048,
) -> int:
    """Atlas side so that a texel is about a view pixel on the surface (a multiple of 64).

    The pixel footprint at the mesh is its centroid's depth over the focal length, in the finest
    view; the charts cover ``utilisation`` of the atlas (the packer reaches ~0.6).
    """
    tri = np.asarray(vertices)[np.asarray(faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    centre = np.asarray(vertices).mean(0)
    footprint = min(
        float((v.camera.R @ centre + v.camera.t)[2]) / float(v.camera.K[0, 0]) for v in views
    ) / max(texels_per_pixel, 1e-6)
    side = np.sqrt(area / max(footprint, 1e-6) ** 2 / utilisation)
    return int(np.clip(np.ceil(side / 64) * 64, lo, hi))


def _observations(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, views: list[View], config: TextureConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N,2) uv, (N,3) colour, (N,) weight and (N,) view index of every usable pixel of every view."""
    from backend.render import get_rasterizer, interpolate

    rast = get_rasterizer(config.rasterizer)
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int64)
    vn = vertex_normals(v, f)
    attrs = torch.cat([torch.as_tensor(uvs, dtype=torch.float32), vn, v], 1)
    all_uv, all_rgb, all_w, all_k = [], [], [], []
    for k, view in enumerate(views):
        cam = view.camera
        with torch.no_grad():
            clip = camera_clip(v, cam)
            r = rast.rasterize(clip, f.int(), resolution=(cam.height, cam.width))
            a = interpolate(attrs, r, f)[0]
        mask = r.mask[0].numpy() & (view.rgba[..., 3] > 0.99)
        if config.erode_pixels > 0:
            from scipy.ndimage import binary_erosion

            mask = binary_erosion(mask, iterations=config.erode_pixels)
        uv = a[..., :2].numpy()[mask]
        n = a[..., 2:5].numpy()[mask]
        p = a[..., 5:8].numpy()[mask]
        to_cam = cam.centre[None] - p
        cos = (n * to_cam).sum(1) / np.maximum(
            np.linalg.norm(n, axis=1) * np.linalg.norm(to_cam, axis=1), 1e-9
        )
        ok = cos > config.min_cosine
        all_uv.append(uv[ok])
        all_rgb.append(view.rgba[..., :3][mask][ok])
        all_w.append(cos[ok] ** 2)
        all_k.append(np.full(int(ok.sum()), k))
    return (
        torch.as_tensor(np.concatenate(all_uv), dtype=torch.float32),
        torch.as_tensor(np.concatenate(all_rgb), dtype=torch.float32),
        torch.as_tensor(np.concatenate(all_w), dtype=torch.float32),
        torch.as_tensor(np.concatenate(all_k), dtype=torch.int64),
    )


def _splat(
    uv: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear splat onto an (S,S) grid (row 0 = top): weighted sums (S,S,C) and weights (S,S)."""
    x = uv[:, 0] * size - 0.5
    y = (1 - uv[:, 1]) * size - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    acc = torch.zeros(size * size, values.shape[1])
    wacc = torch.zeros(size * size)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            w = (1 - (x - x0 - dx).abs()) * (1 - (y - y0 - dy).abs()) * weights
            ok = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            idx = yi[ok] * size + xi[ok]
            acc.index_add_(0, idx, values[ok] * w[ok, None])
            wacc.index_add_(0, idx, w[ok])
    return acc.view(size, size, -1), wacc.view(size, size)


def push_pull(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown texels of (S,S,C) from coarser averages of the known ones (pull-push)."""
    img = torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]
    w = torch.as_tensor(known, dtype=torch.float32)[None, None]
    levels = [(img * w, w)]
    while levels[-1][1].shape[-1] > 1:
        c, ww = levels[-1]
        levels.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(ww, 2, ceil_mode=True)))
    c, ww = levels[-1]
    filled = c / ww.clamp(min=1e-8)
    for c, ww in reversed(levels[:-1]):
        up = F.interpolate(filled, size=c.shape[-2:], mode="bilinear", align_corners=False)
        own = c / ww.clamp(min=1e-8)
        alpha = ww.clamp(max=1.0)
        filled = own * alpha + up * (1 - alpha)
    return filled[0].permute(1, 2, 0).numpy()


def optimise_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    views: list[View],
    config: TextureConfig,
    progress: ProgressFn = no_progress,
    view_prior: np.ndarray | None = None,
) -> TextureResult:
    """Texture for a split-vertex mesh (one UV per vertex) from the training views.

    ``view_prior``: (V,) the geometry stages' confidence in each view (``colour.fuse_colours``).
    """
    from backend.render import texture as sample

    if not 1 <= config.texture_size <= 4096:
        raise ValueError(f"texture_size must be in [1, 4096], got {config.texture_size}")
    t0 = time.perf_counter()
    size = config.texture_size
    uv, rgb, w, view_index = _observations(vertices, faces, uvs, views, config)
    if len(uv) == 0:
        # a mesh that covers no masked pixel of any view (collapsed, or off-camera): nothing to fit
        raise ValueError(f"no pixel of the {len(views)} training views sees the mesh "
                         f"({len(vertices)} vertices, {len(faces)} faces): it is empty, collapsed or "
                         "outside every camera")
    progress("texture", 0.05, f"{len(uv)} observed pixels from {len(views)} views")
    fusion = fuse_colours(uv, rgb, w, view_index, len(views), size, config.colour, view_prior)
    rgb, w = fusion.rgb, w * fusion.weight
    progress("texture", 0.08, "views' colours corrected; view weights "
             + " ".join(f"{x:.2f}" for x in fusion.view_weight))
    acc, wacc = _splat(uv, rgb, w, size)
    seen = (wacc > 1e-3).numpy()
    init = (acc / wacc.clamp(min=1e-8).unsqueeze(-1)).numpy()
    init = push_pull(init, seen)
    tex = torch.nn.Parameter(torch.as_tensor(init).clamp(0, 1))
    opt = torch.optim.Adam([tex], lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    for it in range(config.iterations):
        pick = torch.randint(0, len(uv), (min(config.pixels_per_iter, len(uv)),), generator=gen)
        pred = sample(tex, uv[pick].view(1, -1, 1, 2))[0, :, 0]
        rec = (w[pick, None] * (pred - rgb[pick]).abs()).sum() / w[pick].sum()
        tv = (tex[1:] - tex[:-1]).abs().mean() + (tex[:, 1:] - tex[:, :-1]).abs().mean()
        loss = rec + config.w_tv * tv
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            tex.clamp_(0, 1)
        losses.append(float(rec.item()))
        progress(
            "texture",
            0.1 + 0.85 * (it + 1) / max(config.iterations, 1),
            f"texture {it + 1}/{config.iterations}",
        )
    from backend.avatar.texture.fill import fill_unseen

    progress("texture", 0.97, "filling texels no view saw")
    final = fill_unseen(tex.detach().numpy(), seen, vertices, faces, uvs)
    return TextureResult(
        texture=np.clip(final, 0, 1).astype(np.float32),
        seen=seen,
        seconds=time.perf_counter() - t0,
        losses=losses,
        view_gain=fusion.gain,
        view_offset=fusion.offset,
        view_weight=fusion.view_weight,
    )


def render_textured(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    texture: np.ndarray,
    view: View,
    supersample: int = 2,
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    rasterizer: str = "auto",
) -> np.ndarray:
    """(H,W,4) RGBA render of the textured mesh in ``view``'s camera (supersampled like the GT)."""
    from backend.avatar.render_views import resize_image
    from backend.render import get_rasterizer, interpolate
    from backend.render import texture as sample

    cam = view.camera
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int64)
    with torch.no_grad():
        clip = camera_clip(v, cam, supersample)
        r = get_rasterizer(rasterizer).rasterize(
            clip, f.int(), resolution=(cam.height * supersample, cam.width * supersample)
        )
        uv = interpolate(torch.as_tensor(uvs, dtype=torch.float32), r, f)
        rgb = sample(torch.as_tensor(texture, dtype=torch.float32), uv)[0].numpy()
    mask = r.mask[0].numpy()[..., None].astype(np.float32)
    rgb = rgb * mask + np.asarray(background, np.float32) * (1 - mask)
    return resize_image(np.concatenate([rgb, mask], -1), (cam.height, cam.width))
