"""Camera-conditioned discriminators on RGB and on the silhouette, and the R1 penalty.

A small residual conv net down to 4x4, then a projection discriminator (Miyato & Koyama): the
score is ``linear(h) + <embed(c), h> / sqrt(d)`` with ``embed`` an MLP of the camera vector, so
a render must look right *for that camera* (EG3D conditions its discriminator on the camera the
same way, through a mapping network). The silhouette discriminator is the same network on the
1-channel mask (En3D's silhouette branch); the generator's mask is its volume opacity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from backend.threedgm.config import DiscriminatorConfig
from backend.threedgm.triplane import EqualLinear


class EqualConv(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 3, activation: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.activation, self.padding = activation, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activation else out


class DownBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = EqualConv(in_ch, in_ch), EqualConv(in_ch, out_ch)
        self.skip = EqualConv(in_ch, out_ch, kernel=1, activation=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(self.conv2(self.conv1(x)), 2)
        return (y + F.avg_pool2d(self.skip(x), 2)) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(self, in_channels: int, resolution: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"discriminator resolution must be a power of two >= 4, got {resolution}")
        ch = cfg.channels
        self.from_image = EqualConv(in_channels, ch, kernel=1)
        blocks, res = [], resolution
        while res > 4:
            nxt = min(ch * 2, cfg.max_channels)
            blocks.append(DownBlock(ch, nxt))
            ch, res = nxt, res // 2
        self.blocks = nn.Sequential(*blocks)
        self.conv = EqualConv(ch, ch)
        self.fc = EqualLinear(ch * 16, cfg.embed_dim, activation=True)
        self.out = EqualLinear(cfg.embed_dim, 1)
        self.embed = nn.Sequential(
            EqualLinear(cfg.cond_dim, cfg.embed_dim, activation=True),
            EqualLinear(cfg.embed_dim, cfg.embed_dim),
        )
        self.embed_dim = cfg.embed_dim

    def forward(self, image: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B,) scores; ``image`` (B,C,R,R) in [-1,1] (masks in [0,1] are mapped to [-1,1] by the caller)."""
        h = self.fc(self.conv(self.blocks(self.from_image(image))).flatten(1))
        return self.out(h)[:, 0] + (h * self.embed(c)).sum(1) / math.sqrt(self.embed_dim)


def r1_penalty(scores: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the batch of ``|∇_x D(x)|²`` on real inputs (Mescheder et al. 2018)."""
    grads = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return sum(g.square().flatten(1).sum(1) for g in grads).mean()
