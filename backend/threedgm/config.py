"""Typed configs of the 3DGM: ``tiny`` (tests, CPU) and ``base`` (En3D's scale, for GPUs).

``base`` follows En3D / EG3D's published scale (512² output through a 128² neural rendering,
256² triplanes of 32 channels, w 512, 48 + 48 samples per ray in EG3D, R1 γ≈1-10, batch 32 over 8
GPUs); it is a documented configuration only: nothing here has trained it (docs/threedgm.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2
    cond_dim: int = 16  # camera conditioning vector (dataset.camera_vector)
    plane_res: int = 32  # triplane side
    plane_channels: int = 8  # feature channels per plane
    synthesis_channels: int = 32  # channels of the modulated convs that make the planes
    decoder_hidden: int = 32
    feature_dim: int = 8  # features rendered per ray (the first 3 are the raw RGB)
    volume_res: int = 16  # rays per side of the full-body volume rendering
    samples: int = 12  # samples per ray (stratified)
    # importance samples per ray drawn from the stratified pass's weights (EG3D: 48 + 48); 0 = one
    # stratified pass only (the tiny config: its runs and checkpoints stay as they were)
    samples_importance: int = 0
    ray_half_depth: float = 1.1  # rays span body root distance ± this (m): the posed body's sphere
    warp_vertices: int = 512  # body vertices the inverse-LBS warp searches (farthest-point subset)
    shell: float = 0.1  # density fades out beyond this distance (m) from the body surface
    background: float = (
        1.0  # the data's background in [-1,1] (the dataset composites onto it): empty rays show it
    )
    out_res: int = 32  # output image side (the super-resolution head upsamples volume_res to it)
    # patch-composed rendering: (part group name, rays per side) rendered in their own boxes
    patches: tuple[tuple[str, int], ...] = (("head", 8),)
    canonical_center: tuple[float, float, float] = (0.0, -0.35, 0.0)  # of the triplane box (m)
    canonical_half: float = 1.0  # half side of the triplane box (m), covers the rest body


# generator fields added later, with the value that keeps the earlier behaviour (see to_json)
ADDED_GENERATOR_FIELDS: dict[str, Any] = {"samples_importance": 0}


@dataclass(frozen=True)
class DiscriminatorConfig:
    channels: int = 32
    max_channels: int = 64
    cond_dim: int = 16
    embed_dim: int = 32


@dataclass(frozen=True)
class TrainConfig:
    name: str = "tiny"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    batch: int = 4
    lr_g: float = 1e-3
    lr_d: float = 5e-4
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 4.0
    r1_interval: int = 4  # lazy R1: every N steps, scaled by N
    ema_beta: float = 0.99
    silhouette_weight: float = 1.0  # weight of the silhouette discriminator's loss for G
    amp: bool = True  # mixed precision, used only on CUDA
    checkpoint_every: int = 50
    log_every: int = 1
    eval_every: int = 0  # steps between FID/KID evaluations of the EMA generator (0: never)
    eval_images: int = 64  # renders (and dataset images) per evaluation
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # fields added after runs were written are left out while off: a run folder's config.json
        # (which a rerun must match) and its checkpoint stay what they were before the field existed
        for name, off in ADDED_GENERATOR_FIELDS.items():
            if data["generator"][name] == off:
                del data["generator"][name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        def build(kind: type, value: dict[str, Any]) -> Any:
            kwargs = {}
            for f in fields(kind):
                if f.name not in value:
                    continue
                v = value[f.name]
                if f.name == "generator":
                    v = build(GeneratorConfig, v)
                elif f.name == "discriminator":
                    v = build(DiscriminatorConfig, v)
                elif isinstance(v, list):
                    v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
                kwargs[f.name] = v
            return kind(**kwargs)

        return build(cls, data)


TINY = TrainConfig()

BASE = TrainConfig(
    name="base",
    generator=GeneratorConfig(
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        plane_res=256,
        plane_channels=32,
        synthesis_channels=256,
        decoder_hidden=64,
        feature_dim=32,
        volume_res=128,
        samples=48,
        samples_importance=48,
        warp_vertices=10475,
        shell=0.2,
        out_res=512,
        patches=(("head", 64), ("hand_l", 32), ("hand_r", 32), ("foot_l", 32), ("foot_r", 32)),
    ),
    discriminator=DiscriminatorConfig(channels=64, max_channels=512, embed_dim=512),
    batch=32,
    lr_g=2.5e-3,
    lr_d=2e-3,
    r1_gamma=4.0,
    r1_interval=16,
    ema_beta=0.999,
    checkpoint_every=2000,
    log_every=20,
)

CONFIGS: dict[str, TrainConfig] = {"tiny": TINY, "base": BASE}


def get_config(name: str, **overrides: Any) -> TrainConfig:
    if name not in CONFIGS:
        raise KeyError(f"unknown 3dgm config {name!r}; known: {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)
