"""The 3DGM generator: z + camera -> w -> triplane; rays of the item's camera, warped from its
posed body to the canonical body (inverse LBS), decoded from the triplane, volume-rendered at low
resolution; a super-resolution head to the output size; body-part patches composed in.

Everything is driven by tensors the dataset gives (K, R, t at the output size, the posed body), so
the same generator renders any camera and any pose of the avatar a ``z`` draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backend.threedgm.config import GeneratorConfig
from backend.threedgm.patches import compose, part_boxes
from backend.threedgm.triplane import (
    Decoder,
    MappingNetwork,
    ModulatedConv,
    SynthesisNetwork,
    sample_triplane,
)
from backend.threedgm.volume import composite, importance_depths, ray_grid, ray_weights, sample_depths
from backend.threedgm.warp import inverse_lbs

DENSITY_SCALE = 10.0  # softplus output (~1 at init) -> 1/m: a shell of 0.2 m starts semi-opaque


@dataclass
class BodyBatch:
    verts: torch.Tensor  # (B,Nv,3) posed subset, world
    transforms: torch.Tensor  # (B,55,3,4) rest -> posed
    root: torch.Tensor  # (B,3)


@dataclass
class Rendering:
    features: torch.Tensor  # (B,F,r,r) volume-rendered features (first 3: raw RGB in [0,1])
    alpha: torch.Tensor  # (B,1,r,r) opacity
    depth: torch.Tensor  # (B,1,r,r) expected depth (m) of the opaque part


class SuperResolution(nn.Module):
    """Feature image (r) -> RGB (out): per x2 stage, bilinear upsample + two modulated convs, and a
    StyleGAN2 skip: the raw volume RGB upsampled plus a learned residual per stage."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        stages = round(math.log2(cfg.out_res / cfg.volume_res))
        if cfg.volume_res * 2**stages != cfg.out_res:
            raise ValueError(f"out_res {cfg.out_res} must be volume_res {cfg.volume_res} times a power of 2")
        ch = cfg.synthesis_channels
        self.stages = nn.ModuleList()
        in_ch = cfg.feature_dim
        for _ in range(stages):
            self.stages.append(
                nn.ModuleList(
                    [
                        ModulatedConv(in_ch, ch, cfg.w_dim),
                        ModulatedConv(ch, ch, cfg.w_dim),
                        ModulatedConv(ch, 3, cfg.w_dim, kernel=1, demodulate=False, activation=False),
                    ]
                )
            )
            in_ch = ch

    def forward(self, features: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        rgb = features[:, :3] * 2 - 1
        x = features
        for conv_a, conv_b, to_rgb in self.stages:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            x = conv_b(conv_a(x, w), w)
            rgb = rgb + to_rgb(x, w)
        return rgb


class Generator(nn.Module):
    def __init__(
        self,
        cfg: GeneratorConfig,
        skin_weights: torch.Tensor,
        part_labels: torch.Tensor,
        part_names: tuple[str, ...],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.cond_dim, cfg.w_dim, cfg.mapping_layers)
        self.synthesis = SynthesisNetwork(
            cfg.w_dim, cfg.synthesis_channels, cfg.plane_res, cfg.plane_channels
        )
        self.decoder = Decoder(cfg.plane_channels, cfg.decoder_hidden, cfg.feature_dim)
        self.superres = SuperResolution(cfg)
        self.register_buffer("skin_weights", skin_weights.float().clone())
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        for name, _ in cfg.patches:
            if name not in part_names:
                raise ValueError(f"patch part {name!r} is not a body part ({', '.join(part_names)})")
        self.register_buffer(
            "patch_masks",
            torch.stack([part_labels == part_names.index(name) for name, _ in cfg.patches])
            if cfg.patches
            else torch.zeros(0, len(part_labels), dtype=torch.bool),
        )
        self.register_buffer("centre", torch.tensor(cfg.canonical_center, dtype=torch.float32))

    # ---- pieces --------------------------------------------------------------------------------
    def map(self, z: torch.Tensor, c: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.mapping(z, c)
        return self.w_avg + truncation * (w - self.w_avg) if truncation != 1.0 else w

    def field(
        self,
        planes: torch.Tensor,
        points: torch.Tensor,
        body: BodyBatch,
        differentiable_distance: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (B,N) and features (B,N,F) at world points (B,N,3) of the posed body
        (``differentiable_distance``: the shell fade carries a gradient to the points; normals)."""
        canon, dist = inverse_lbs(
            points, body.verts, self.skin_weights, body.transforms, differentiable_distance
        )
        coords = (canon - self.centre) / self.cfg.canonical_half
        raw, feats = self.decoder(sample_triplane(planes, coords))
        shell = torch.sigmoid((self.cfg.shell - dist) / (0.25 * self.cfg.shell))
        return F.softplus(raw) * DENSITY_SCALE * shell, feats

    def _samples(
        self,
        planes: torch.Tensor,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        depths: torch.Tensor,
        body: BodyBatch,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, M, S = depths.shape
        points = origins[:, :, None] + dirs[:, :, None] * depths[..., None]
        sigma, feats = self.field(planes, points.reshape(B, M * S, 3), body)
        return sigma.reshape(B, M, S), feats.reshape(B, M, S, -1)

    def march(
        self,
        planes: torch.Tensor,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        body: BodyBatch,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (B,M,F), opacity (B,M), expected depth (B,M) of rays (B,M,3): ``samples``
        stratified depths, then (``samples_importance`` > 0) as many again drawn from their weights,
        merged in depth order and composited once (EG3D's two passes)."""
        depths = sample_depths(origins, body.root, self.cfg.ray_half_depth, self.cfg.samples, generator)
        sigma, feats = self._samples(planes, origins, dirs, depths, body)
        if self.cfg.samples_importance > 0:
            fine = importance_depths(
                depths, ray_weights(sigma.detach().float(), depths), self.cfg.samples_importance, generator
            )
            sigma_f, feats_f = self._samples(planes, origins, dirs, fine, body)
            depths, order = torch.sort(torch.cat([depths, fine], -1), -1)
            sigma = torch.gather(torch.cat([sigma, sigma_f], -1), -1, order)
            feats = torch.cat([feats, feats_f], -2)
            feats = torch.gather(feats, -2, order[..., None].expand(-1, -1, -1, feats.shape[-1]))
        return composite(sigma, feats, depths)

    def render(
        self,
        planes: torch.Tensor,
        K: torch.Tensor,
        R: torch.Tensor,
        t: torch.Tensor,
        body: BodyBatch,
        box: torch.Tensor,
        res: int,
        generator: torch.Generator | None = None,
    ) -> Rendering:
        origins, dirs = ray_grid(K, R, t, box, res)
        B = origins.shape[0]
        out, acc, depth = self.march(planes, origins, dirs, body, generator)
        # the colour over the dataset's flat background (EG3D's white_back): an empty ray is background
        out = torch.cat(
            [out[..., :3] + (1 - acc[..., None]) * (self.cfg.background + 1) / 2, out[..., 3:]], -1
        )

        def image(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(B, res, res, -1).permute(0, 3, 1, 2)

        return Rendering(image(out), image(acc[..., None]), image(depth[..., None]))

    # ---- the whole generator ---------------------------------------------------------------------
    def synthesize(
        self,
        w: torch.Tensor,
        K: torch.Tensor,
        R: torch.Tensor,
        t: torch.Tensor,
        body: BodyBatch,
        generator: torch.Generator | None = None,
        patches: bool = True,
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        planes = self.synthesis(w)
        size = cfg.out_res
        full_box = torch.tensor([0.0, 0.0, size, size], dtype=K.dtype, device=K.device).expand(K.shape[0], 4)
        low = self.render(planes, K, R, t, body, full_box, cfg.volume_res, generator)
        image = self.superres(low.features, w)
        mask = F.interpolate(low.alpha, size=(size, size), mode="bilinear", align_corners=False)
        boxes = []
        if patches:
            for (_, res), part in zip(cfg.patches, self.patch_masks, strict=True):
                box = part_boxes(body.verts[:, part], K, R, t, size)
                pr = self.render(planes, K, R, t, body, box, res, generator)
                patch_rgb = self.superres(pr.features, w)
                patch_mask = F.interpolate(
                    pr.alpha, scale_factor=size / cfg.volume_res, mode="bilinear", align_corners=False
                )
                image = compose(image, patch_rgb, box)
                mask = compose(mask, patch_mask, box)
                boxes.append(box)
        # outside the silhouette is the dataset's flat background, exactly as in the real crops: the
        # super-resolution head cannot tint it, and the RGB discriminator's gradient reaches the opacity
        image = image * mask + cfg.background * (1 - mask)
        return {
            "image": image,
            "mask": mask,
            "raw": low.features[:, :3] * 2 - 1,
            "alpha": low.alpha,
            "depth": low.depth,
            "planes": planes,
            "boxes": torch.stack(boxes, 1) if boxes else torch.zeros(K.shape[0], 0, 4),
        }

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor,
        K: torch.Tensor,
        R: torch.Tensor,
        t: torch.Tensor,
        body: BodyBatch,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
        patches: bool = True,
    ) -> dict[str, torch.Tensor]:
        w = self.map(z, c, truncation)
        out = self.synthesize(w, K, R, t, body, generator, patches)
        out["w"] = w
        return out
