"""Robust colour fusion before texturing: per-view colour correction and outlier weights.

Generated views disagree in colour: each has its own white balance and exposure, and one may show
another shirt. Averaged as they are, the texture becomes a patchwork of per-view tints with the
odd view painted over the others. Here, on the texture's observations (every usable pixel of
every view, with its UV and confidence, see ``optimise._observations``):

1. a *leave-one-out consensus* per view: all other views' observations splatted onto a coarse
   atlas (a quarter of the texture's side, so 1-2 px registration errors of the views land in the
   same texel) and read back at the view's UVs;
2. a per-view, per-channel **affine colour correction** ``c' = a c + b`` fitted by weighted least
   squares to that consensus (ridge towards the identity, so a view that overlaps little with the
   others keeps its colours); the corrections are then normalised so that on average they are the
   identity (the fused colours stay in the views' average colour space rather than drifting);
3. **IRLS weights**: a pixel whose corrected colour is far from the consensus (Cauchy weight on the
   residual, scale from the median residual) counts less, and so does a whole view whose pixels
   disagree more than the others' (its mean pixel weight relative to the best view, squared).

Steps 1-3 are repeated a few times. The result multiplies the observations' weights, and the
corrected colours replace the raw ones, before the texture is splatted and optimised.

A view's weight also carries what the geometry learnt of it (``view_prior``: the sculpt's and the
surface stage's confidence in its silhouette; a view whose outline is warped puts its colours on
the wrong texels too). A view whose final weight is under ``exclude_below`` is used only where no
other view sees the surface: a mean, even a weighted one, still paints it wherever it sees the
surface frontally and the others only at grazing angles (measured on the perturbed bench: the
inconsistent view's recoloured shirt left a stripe on the back at weight 0.42).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class ColourConfig:
    correct: bool = True  # per-view affine colour correction
    robust: bool = True  # IRLS pixel and view weights
    rounds: int = 3
    consensus_divisor: int = 4  # consensus atlas side = texture size / this
    ridge: float = 0.05  # pull of each affine fit towards the identity (relative to its weight)
    min_scale: float = 0.03  # floor of the Cauchy scale (colour units in [0,1])
    scale_factor: float = 2.0  # Cauchy scale = this x 1.4826 x median residual
    view_power: float = 2.0  # view weight = (mean pixel weight / best view's) ** this
    exclude_below: float = 0.3  # views weighted less are used only where no other view sees


@dataclass
class ColourFusion:
    rgb: torch.Tensor  # (N,3) corrected colours
    weight: torch.Tensor  # (N,) multiplier of the observations' weights (pixel x view)
    gain: np.ndarray  # (V,3) per-view gains applied
    offset: np.ndarray  # (V,3) per-view offsets applied
    view_weight: np.ndarray  # (V,)
    pixel_weight: torch.Tensor = field(repr=False, default_factory=lambda: torch.ones(0))


def _splat_nearest(uv: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, size: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sums (S*S,C) and weights (S*S,) of nearest-texel splats (row 0 = top)."""
    idx = _texel(uv, size)
    acc = torch.zeros(size * size, values.shape[1], dtype=values.dtype)
    wacc = torch.zeros(size * size, dtype=values.dtype)
    acc.index_add_(0, idx, values * weights[:, None])
    wacc.index_add_(0, idx, weights)
    return acc, wacc


def _texel(uv: torch.Tensor, size: int) -> torch.Tensor:
    x = (uv[:, 0] * size).long().clamp(0, size - 1)
    y = ((1 - uv[:, 1]) * size).long().clamp(0, size - 1)
    return y * size + x


def fuse_colours(
    uv: torch.Tensor, rgb: torch.Tensor, weight: torch.Tensor, view: torch.Tensor, n_views: int,
    texture_size: int, config: ColourConfig | None = None, view_prior: np.ndarray | None = None,
) -> ColourFusion:
    """Per-view colour corrections and robust weights for the observations (module docstring).

    ``view_prior``: (V,) confidences in [0, 1] from the geometry stages, multiplied into the views'
    weights (None: all 1).
    """
    cfg = config or ColourConfig()
    prior = np.ones(n_views) if view_prior is None else np.clip(np.asarray(view_prior, float), 0, 1)
    size = max(8, texture_size // max(cfg.consensus_divisor, 1))
    rgb = rgb.double()
    base_w = weight.double()
    gain = np.ones((n_views, 3))
    offset = np.zeros((n_views, 3))
    rho = torch.ones_like(base_w)
    view_w = prior.copy()
    texel = _texel(uv, size)
    corrected = rgb.clone()
    if len(rgb) == 0 or n_views < 2 or not (cfg.correct or cfg.robust):
        return ColourFusion(corrected.float(), torch.as_tensor(prior, dtype=weight.dtype)[view], gain, offset,
                            view_w, rho.float())
    for _ in range(max(cfg.rounds, 1)):
        g_t = torch.as_tensor(gain)[view]
        o_t = torch.as_tensor(offset)[view]
        corrected = (rgb * g_t + o_t).clamp(0, 1)
        w_all = base_w * rho * torch.as_tensor(view_w)[view]
        acc, wacc = _splat_nearest(uv, corrected, w_all, size)
        # Leave-one-out consensus at each observation: the texel's sums minus its own view's.
        loo = torch.zeros_like(corrected)
        has = torch.zeros(len(rgb), dtype=torch.bool)
        for k in range(n_views):
            sel = view == k
            if not sel.any():
                continue
            acc_k, wacc_k = _splat_nearest(uv[sel], corrected[sel], w_all[sel], size)
            t = texel[sel]
            rest_w = wacc[t] - wacc_k[t]
            ok = rest_w > 1e-3 * float(wacc.max().clamp(min=1e-9))
            loo[sel] = (acc[t] - acc_k[t]) / rest_w.clamp(min=1e-12)[:, None]
            has[sel] = ok
        if cfg.correct:
            for k in range(n_views):
                sel = (view == k) & has
                if int(sel.sum()) < 50:
                    continue
                x = rgb[sel].numpy()
                y = loo[sel].numpy()
                w = (base_w * rho)[sel].numpy()
                lam = cfg.ridge * w.sum()
                for c in range(3):
                    a_mat = np.stack([x[:, c], np.ones(len(x))], 1)
                    ata = (a_mat * w[:, None]).T @ a_mat + lam * np.eye(2)
                    aty = (a_mat * w[:, None]).T @ y[:, c] + lam * np.array([1.0, 0.0])
                    gain[k, c], offset[k, c] = np.linalg.solve(ata, aty)
            # Normalise: the view-weighted mean correction is the identity (c' = G c + O undone).
            vw = view_w / view_w.sum()
            g_mean = (gain * vw[:, None]).sum(0)
            o_mean = (offset * vw[:, None]).sum(0)
            gain = gain / g_mean
            offset = (offset - o_mean) / g_mean
            corrected = (rgb * torch.as_tensor(gain)[view] + torch.as_tensor(offset)[view]).clamp(0, 1)
        if cfg.robust:
            resid = (corrected - loo).norm(dim=1)
            valid = has
            if int(valid.sum()) > 0:
                med = float(resid[valid].median())
                scale = max(cfg.min_scale, cfg.scale_factor * 1.4826 * med)
                rho = torch.where(valid, 1.0 / (1.0 + (resid / scale) ** 2), torch.ones_like(resid))
                means = np.array([
                    float((rho[(view == k) & valid] * base_w[(view == k) & valid]).sum()
                          / base_w[(view == k) & valid].sum().clamp(min=1e-12))
                    if bool(((view == k) & valid).any()) else 1.0
                    for k in range(n_views)
                ])
                view_w = prior * (means / max(means.max(), 1e-12)) ** cfg.view_power
    if cfg.robust:
        w_out = rho * torch.as_tensor(view_w)[view]
        view_w = view_w / max(float(view_w.max()), 1e-12)
        distrusted = torch.as_tensor(view_w < cfg.exclude_below)[view] & has
        w_out = torch.where(distrusted, torch.zeros_like(w_out), w_out)
    else:
        w_out = torch.as_tensor(prior)[view]
    return ColourFusion(corrected.float(), w_out.float(), gain, offset, view_w, rho.float())
