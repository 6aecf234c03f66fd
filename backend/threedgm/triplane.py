"""The triplane: mapping network, a small StyleGAN2-like synthesis network that draws three
feature planes, bilinear sampling of the planes and the decoder MLP.

StyleGAN2 pieces kept: equalised learning rate (weights scaled at run time by 1/sqrt(fan_in)),
weight modulation by a per-layer affine of w and demodulation, a learned constant input,
per-pixel noise is left out (a triplane should be a function of w alone: resampling noise would
change the 3D shape between two renders of one avatar). Upsampling is bilinear + conv (no FIR
filter): simplified.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activation else out


class MappingNetwork(nn.Module):
    """z (+ conditioning c, embedded) -> w, as EG3D: the camera conditions the mapping."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, layers: int) -> None:
        super().__init__()
        self.embed = EqualLinear(c_dim, w_dim) if c_dim else None
        dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * layers
        self.net = nn.Sequential(
            *[EqualLinear(a, b, lr_mul=0.01, activation=True) for a, b in itertools.pairwise(dims)]
        )

    @staticmethod
    def _norm(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self._norm(z)
        if self.embed is not None and c is not None:
            x = torch.cat([x, self._norm(self.embed(c))], dim=1)
        return self.net(x)


class ModulatedConv(nn.Module):
    """3x3 (or 1x1) conv whose weights are scaled per sample by an affine of w, then demodulated."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        w_dim: int,
        kernel: int = 3,
        demodulate: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate, self.activation, self.padding = demodulate, activation, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        style = self.affine(w)  # (B, in)
        weight = self.weight[None] * self.scale * style[:, None, :, None, None]  # (B,out,in,k,k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        out = F.conv2d(
            x.reshape(1, B * C, H, W),
            weight.reshape(-1, C, *weight.shape[3:]),
            padding=self.padding,
            groups=B,
        )
        out = out.reshape(B, -1, H, W) + self.bias[None, :, None, None]
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activation else out


class SynthesisNetwork(nn.Module):
    """w -> (B, 3, C, R, R) planes: a constant 4x4, then (upsample, 2 modulated convs) blocks."""

    def __init__(self, w_dim: int, channels: int, plane_res: int, plane_channels: int) -> None:
        super().__init__()
        if plane_res < 4 or plane_res & (plane_res - 1):
            raise ValueError(f"plane_res must be a power of two >= 4, got {plane_res}")
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))
        self.blocks = nn.ModuleList()
        res = 4
        self.first = ModulatedConv(channels, channels, w_dim)
        while res < plane_res:
            self.blocks.append(
                nn.ModuleList(
                    [ModulatedConv(channels, channels, w_dim), ModulatedConv(channels, channels, w_dim)]
                )
            )
            res *= 2
        self.to_planes = ModulatedConv(
            channels, 3 * plane_channels, w_dim, kernel=1, demodulate=False, activation=False
        )
        self.plane_channels = plane_channels

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.first(self.const.expand(w.shape[0], -1, -1, -1), w)
        for conv_a, conv_b in self.blocks:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = conv_b(conv_a(x, w), w)
        planes = self.to_planes(x, w)
        return planes.reshape(w.shape[0], 3, self.plane_channels, *planes.shape[-2:])


def sample_triplane(planes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Mean of the bilinear samples of the xy, xz, zy planes at ``coords`` (B,N,3) in [-1,1]^3.

    Returns (B,N,C). Points outside the box read zeros (padding), so empty space stays empty.
    """
    B, _, C = planes.shape[:3]
    pairs = (coords[..., [0, 1]], coords[..., [0, 2]], coords[..., [2, 1]])
    grid = torch.stack(pairs, dim=1).reshape(B * 3, 1, -1, 2)
    feats = F.grid_sample(
        planes.reshape(B * 3, C, *planes.shape[-2:]),
        grid.to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return feats.reshape(B, 3, C, -1).mean(dim=1).permute(0, 2, 1)


class Decoder(nn.Module):
    """Plane features -> (raw density, features): the first 3 features are the raw colour."""

    def __init__(self, in_dim: int, hidden: int, feature_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            EqualLinear(in_dim, hidden), nn.Softplus(), EqualLinear(hidden, 1 + feature_dim)
        )

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(feats)
        # EG3D's output activation for features: sigmoid * (1 + 2 eps) - eps, so colour can reach 0/1.
        return out[..., 0], torch.sigmoid(out[..., 1:]) * 1.002 - 0.001
