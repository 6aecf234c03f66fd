"""The DMTet field: an MLP over a positional encoding predicting an SDF value and a vertex offset.

Two encodings: ``grid`` (multi-resolution dense feature grids sampled trilinearly, a hash grid without
the hashing: at the grid sizes a CPU can afford the tables fit, so collisions buy nothing) and
``fourier`` (sin/cos of the coordinates at octave frequencies, NeRF-style). Inputs are points in the
normalised box [-1, 1]^3 of the tet grid; the offset is bounded by ``tanh`` to a fraction of a tet
cell so that tets cannot invert.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SDFNetConfig:
    encoding: str = "grid"  # "grid" | "fourier"
    grid_levels: tuple[int, ...] = (8, 16, 32, 64)
    grid_features: int = 4
    fourier_octaves: int = 6
    hidden: int = 64
    layers: int = 3
    max_offset_cells: float = 0.45  # |offset| < this * cell size along each axis
    extra: dict[str, float] = field(default_factory=dict)


class DenseGridEncoding(nn.Module):
    """Features at several resolutions of a dense grid, trilinearly interpolated and concatenated."""

    def __init__(self, levels: tuple[int, ...], features: int) -> None:
        super().__init__()
        self.grids = nn.ParameterList(
            [nn.Parameter(1e-4 * torch.randn(1, features, r, r, r)) for r in levels]
        )
        self.out_dim = features * len(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # grid_sample takes (x, y, z) in [-1, 1] indexing (W, H, D): matches a (D, H, W) = (z, y, x) grid.
        pts = x.view(1, -1, 1, 1, 3)
        feats = [
            F.grid_sample(g, pts, mode="bilinear", padding_mode="border", align_corners=True).view(
                g.shape[1], -1
            )
            for g in self.grids
        ]
        return torch.cat(feats, 0).t()


class FourierEncoding(nn.Module):
    def __init__(self, octaves: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(octaves, dtype=torch.float32))
        self.out_dim = 3 + 6 * octaves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arg = x[:, :, None] * self.freqs  # (N,3,O)
        return torch.cat([x, torch.sin(arg).flatten(1), torch.cos(arg).flatten(1)], 1)


class SDFNet(nn.Module):
    """x in [-1,1]^3 -> (sdf in metres, offset in metres)."""

    def __init__(self, config: SDFNetConfig, cell_size: float) -> None:
        super().__init__()
        self.config = config
        self.cell_size = cell_size
        if config.encoding == "grid":
            self.encoding: nn.Module = DenseGridEncoding(config.grid_levels, config.grid_features)
        elif config.encoding == "fourier":
            self.encoding = FourierEncoding(config.fourier_octaves)
        else:
            raise ValueError(f"unknown encoding {config.encoding!r} (expected 'grid' or 'fourier')")
        dims = [self.encoding.out_dim + 3] + [config.hidden] * config.layers
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            mods += [nn.Linear(a, b), nn.Softplus(beta=100)]
        self.trunk = nn.Sequential(*mods)
        self.head = nn.Linear(dims[-1], 4)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(torch.cat([x, self.encoding(x)], 1)))
        sdf = out[:, 0] * 0.1  # the head works in decimetres: better-scaled gradients for Adam
        offset = torch.tanh(out[:, 1:]) * (self.config.max_offset_cells * self.cell_size)
        return sdf, offset
