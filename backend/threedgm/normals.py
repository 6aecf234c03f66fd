"""Normal maps of the generator: the direction in which its density falls fastest, at each ray's
expected surface depth.

A ray is marched as when rendering (the stratified and, when configured, importance samples), its
opacity ``acc`` and expected depth ``d = Σ w_i d_i / acc`` (the depth of the opaque part, not pulled
towards the camera by the transparent rest) give one surface point ``o + d v``; the normal there is
``-∇σ / |∇σ|`` by autograd through the whole field: the inverse-LBS warp (the gathered transform of
the nearest body vertex; the search itself is piecewise constant), the triplane, the decoder and the
shell fade (its distance made differentiable). The normals are world-space unit vectors, outward
(density is higher inside), posed: the frame the views format stores (``normal_space = "world"``,
rgb = (n + 1) / 2; backend/avatar/io/views.py). :func:`to_camera` turns them into OpenCV camera axes
(the clips' ``normal.npy``: a surface facing the camera has n_z < 0).

Rays whose opacity is below ``min_opacity`` get the zero vector (background, as the clips write it).
Only points carry a gradient here: the generator's parameters are untouched (and may be frozen).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.threedgm.generator import BodyBatch, Generator
from backend.threedgm.volume import composite, ray_grid, sample_depths

Density = Callable[[torch.Tensor], torch.Tensor]  # world points (B,N,3) -> density (B,N)
March = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class NormalMap:
    normals: torch.Tensor  # (B,3,r,r) world unit vectors, 0 where the ray is (mostly) empty
    alpha: torch.Tensor  # (B,1,r,r) opacity of the ray
    depth: torch.Tensor  # (B,1,r,r) expected depth of the opaque part (m), 0 where empty


def density_normals(density: Density, points: torch.Tensor) -> torch.Tensor:
    """(B,N,3) unit ``-∇σ`` at world points (B,N,3); zero where the gradient vanishes."""
    with torch.enable_grad():
        p = points.detach().float().requires_grad_(True)
        sigma = density(p)
        (grad,) = torch.autograd.grad(sigma.sum(), p)
    norm = grad.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-12, -grad / norm.clamp(min=1e-12), torch.zeros_like(grad))


def march_normals(
    march: March,
    density: Density,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    min_opacity: float = 0.5,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normals (B,M,3), opacity (B,M) and surface depth (B,M) of rays (B,M,3), ``chunk`` rays per
    batch item at a time (the autograd graph of one chunk is all that is held)."""
    normals, alphas, depths = [], [], []
    for s in range(0, origins.shape[1], chunk):
        o, v = origins[:, s : s + chunk], dirs[:, s : s + chunk]
        with torch.no_grad():
            _, acc, depth = march(o, v)
        acc, depth = acc.float(), depth.float()
        hit = acc >= min_opacity
        surface = torch.where(hit, depth / acc.clamp(min=1e-6), torch.zeros_like(depth))
        n = density_normals(density, o + v * surface[..., None])
        normals.append(torch.where(hit[..., None], n, torch.zeros_like(n)))
        alphas.append(acc)
        depths.append(surface)
    return torch.cat(normals, 1), torch.cat(alphas, 1), torch.cat(depths, 1)


def _image(x: torch.Tensor, res: int) -> torch.Tensor:
    return x.reshape(x.shape[0], res, res, -1).permute(0, 3, 1, 2)


def field_normals(
    density: Density,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    centre: torch.Tensor,
    half_depth: float,
    samples: int,
    size: int,
    res: int,
    min_opacity: float = 0.5,
) -> NormalMap:
    """The normal map of any density (no generator): ``samples`` strata over ``|o - centre| ±
    half_depth`` per ray, a ``res``-side grid over the whole ``size``-pixel image K belongs to."""
    box = torch.tensor([0.0, 0.0, size, size], dtype=K.dtype).expand(K.shape[0], 4)
    origins, dirs = ray_grid(K, R, t, box, res)

    def march(o: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = sample_depths(o, centre, half_depth, samples)
        sigma = density((o[:, :, None] + v[:, :, None] * d[..., None]).reshape(o.shape[0], -1, 3))
        return composite(sigma.reshape(d.shape), torch.zeros(*d.shape, 1, dtype=d.dtype), d)

    n, acc, depth = march_normals(march, density, origins, dirs, min_opacity)
    return NormalMap(_image(n, res), _image(acc[..., None], res), _image(depth[..., None], res))


def generator_normals(
    G: Generator,
    planes: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    body: BodyBatch,
    res: int,
    box: torch.Tensor | None = None,
    min_opacity: float = 0.5,
    chunk: int = 4096,
) -> NormalMap:
    """The generator's normal map of ``planes`` (its triplane of one w per item) seen by cameras K,
    R, t (at ``out_res`` pixels) over ``box`` (default: the whole image) with ``res`` rays a side.
    The rays are marched as :meth:`Generator.render` marches them in evaluation (strata centres)."""
    if box is None:
        size = G.cfg.out_res
        box = torch.tensor([0.0, 0.0, size, size], dtype=K.dtype, device=K.device).expand(K.shape[0], 4)
    origins, dirs = ray_grid(K, R, t, box, res)

    def march(o: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return G.march(planes, o, v, body)

    def density(p: torch.Tensor) -> torch.Tensor:
        return G.field(planes, p, body, differentiable_distance=True)[0].float()

    n, acc, depth = march_normals(march, density, origins, dirs, min_opacity, chunk)
    return NormalMap(_image(n, res), _image(acc[..., None], res), _image(depth[..., None], res))


def to_camera(normals: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) world normals -> OpenCV camera axes (``n_cam = R n_world``); zeros stay zero."""
    return torch.einsum("bij,bjhw->bihw", R.to(normals), normals)


def fill_normals(normals: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B,3,H,W) with the zero (background) pixels within ``pixels`` of the surface set to the mean
    direction of their non-zero 3x3 neighbours, one ring per step; the rest unchanged."""
    out = normals
    for _ in range(pixels):
        mean = F.avg_pool2d(out, 3, 1, padding=1)
        norm = mean.norm(dim=1, keepdim=True)
        empty = out.norm(dim=1, keepdim=True) < 1e-6
        grown = torch.where(norm > 1e-6, mean / norm.clamp(min=1e-6), torch.zeros_like(mean))
        out = torch.where(empty, grown, out)
    return out


def resize_normals(normals: torch.Tensor, size: int) -> torch.Tensor:
    """(B,3,r,r) -> (B,3,size,size): bilinear, renormalised; a pixel that mixes in background (0)
    keeps the direction of its surface neighbours, one that is all background stays 0."""
    if normals.shape[-1] == size:
        return normals
    up = F.interpolate(normals, size=(size, size), mode="bilinear", align_corners=False)
    norm = up.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-3, up / norm.clamp(min=1e-6), torch.zeros_like(up))
