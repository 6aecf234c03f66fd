"""Pivotal tuning inversion (PTI, Roich et al. 2022) of the 3DGM generator on one image.

1. **Latent optimisation**: ``w`` starts at the mean ``w`` of the target's camera
   (:func:`backend.threedgm.sample.mean_w`) and is optimised (Adam) so that the generator's render
   through the target's camera and body matches the image: the pivot.
2. **Pivotal tuning**: with ``w`` fixed at the pivot, a copy of the generator is tuned (Adam, small
   learning rate) on the same loss, so the avatar reproduces the image while ``w`` stays in the
   region the generator was trained on (the other views stay plausible).

The loss is LPIPS-free: ``L2(image) + ssim_weight * (1 - SSIM(image)) + mask_weight * L2(silhouette)``.
LPIPS needs VGG/AlexNet weights this project does not ship; SSIM (a Gaussian-window structural
term, differentiable) is the perceptual proxy: it weighs local contrast and structure, which L2
alone blurs. The silhouette term uses the target's mask (what En3D's silhouette discriminator
sees). Rendering uses the strata centres (no jitter): the result is deterministic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from backend.threedgm.generator import BodyBatch, Generator


@dataclass
class Target:
    image: torch.Tensor  # (1,3,S,S) in [-1,1], the flat background outside the person
    mask: torch.Tensor  # (1,1,S,S) in [0,1]
    K: torch.Tensor  # (1,3,3) at S
    R: torch.Tensor  # (1,3,3)
    t: torch.Tensor  # (1,3)
    cond: torch.Tensor  # (1,16) camera vector (dataset.camera_vector)
    body: BodyBatch


@dataclass
class InversionConfig:
    w_steps: int = 200
    tune_steps: int = 200
    lr_w: float = 0.02
    lr_g: float = 1e-3
    ssim_weight: float = 0.5
    mask_weight: float = 1.0


@dataclass
class Inversion:
    G: Generator  # the tuned copy (eval, no grad)
    w: torch.Tensor  # (1, w_dim) the pivot
    psnr_pivot: float  # dB on the target after the latent optimisation
    psnr: float  # dB after the pivotal tuning (whole image, background included)
    psnr_person: float  # dB after the tuning on the target's mask only (the person's pixels)
    losses: list[float] = field(default_factory=list)


def _gaussian(sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (B,C,H,W) images in [0,1] (Gaussian window, Wang et al. constants), differentiable."""
    C = a.shape[1]
    g = _gaussian(sigma).to(a)
    k = min(11, a.shape[-1] // 2 * 2 - 1)
    g = g[(11 - k) // 2 : (11 - k) // 2 + k]
    g = g / g.sum()
    wx = g.view(1, 1, 1, -1).expand(C, 1, 1, k)
    wy = g.view(1, 1, -1, 1).expand(C, 1, k, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, wx, groups=C), wy, groups=C)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def psnr(image: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR (dB) of two [-1,1] images mapped to [0,1], over the whole image or where ``mask`` > 0.5."""
    err = ((image - target) / 2) ** 2
    if mask is not None:
        keep = (mask > 0.5).expand_as(err)
        err = err[keep] if keep.any() else err
    mse = err.mean().clamp(min=1e-12)
    return float(-10 * torch.log10(mse))


def render(G: Generator, w: torch.Tensor, target: Target) -> dict[str, torch.Tensor]:
    return G.synthesize(w, target.K, target.R, target.t, target.body)


def loss_fn(out: dict[str, torch.Tensor], target: Target, cfg: InversionConfig) -> torch.Tensor:
    img, ref = out["image"], target.image
    loss = F.mse_loss(img, ref)
    if cfg.ssim_weight:
        loss = loss + cfg.ssim_weight * (1 - ssim((img + 1) / 2, (ref + 1) / 2))
    if cfg.mask_weight:
        loss = loss + cfg.mask_weight * F.mse_loss(out["mask"], target.mask)
    return loss


def invert(G: Generator, target: Target, cfg: InversionConfig | None = None,
           check: object = None) -> Inversion:
    """PTI of ``target`` with ``G`` (left unchanged); ``check()`` is called every step (cancel)."""
    from backend.threedgm.sample import mean_w

    cfg = cfg or InversionConfig()
    G0 = G.eval().requires_grad_(False)
    w = mean_w(G0, target.cond[0])[None].clone().requires_grad_(True)
    losses: list[float] = []
    opt = torch.optim.Adam([w], lr=cfg.lr_w, betas=(0.9, 0.999))
    for _ in range(cfg.w_steps):
        if callable(check):
            check()
        loss = loss_fn(render(G0, w, target), target, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    w = w.detach()
    with torch.no_grad():
        psnr_pivot = psnr(render(G0, w, target)["image"], target.image)

    tuned = copy.deepcopy(G0).train().requires_grad_(True)
    opt_g = torch.optim.Adam(tuned.parameters(), lr=cfg.lr_g, betas=(0.9, 0.999))
    for _ in range(cfg.tune_steps):
        if callable(check):
            check()
        loss = loss_fn(render(tuned, w, target), target, cfg)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        losses.append(float(loss.detach()))
    tuned = tuned.eval().requires_grad_(False)
    with torch.no_grad():
        image = render(tuned, w, target)["image"]
        final, person = psnr(image, target.image), psnr(image, target.image, target.mask)
    return Inversion(tuned, w, psnr_pivot, final, person, losses)
