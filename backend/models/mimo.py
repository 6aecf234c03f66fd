"""The weights of the neural insertion route (MIMO, ``backend/mimo/``): networks, tiny versions, loaders.

Five roles (``backend/models/registry.py``), each a folder in diffusers' ``save_pretrained`` layout:

- ``mimo-denoising-unet``: ``UNet2DConditionModel`` (its spatial layers; 13 input channels: noisy
  latents 4 + scene latents 4 + occlusion latents 4 + occlusion alpha 1). Made temporal at load time
  with the motion module (``UNetMotionModel.from_unet2d``).
- ``mimo-motion-module``: diffusers' ``MotionAdapter`` (AnimateDiff's temporal layers).
- ``mimo-reference-unet``: ``UNet2DConditionModel`` whose self-attention inputs are injected into the
  denoising UNet (reference attention).
- ``mimo-pose-guider``: :class:`PoseGuider` (ours, a diffusers ``ModelMixin``): the learned per-vertex
  latent codes of the structured motion code plus MIMO's pose guider convolutions.
- ``mimo-image-encoder``: an open_clip checkpoint folder (CLIP ViT-L/14: 768-d image embeddings, the
  cross-attention width of SD 1.5's UNets), loaded like the ``clip`` role.

MIMO's released files (``denoising_unet.pth``, ``reference_unet.pth``, ``pose_guider.pth``,
``motion_module.pth`` in one ``pretrained_weights`` folder, plus its ``stable-diffusion-v1-5/unet``
config) are recognised in a role's folder and mapped onto these classes (:func:`mimo_state_dicts`):
key names follow Moore-AnimateAnyone's UNet3D (spatial keys are diffusers' own; motion-module keys
are renamed as diffusers' ``convert_animatediff_motion_module_to_diffusers.py`` does), and the
conv_in of MIMO's 8-channel denoising UNet (noise + scene) is zero-padded to our 13 channels (the
occlusion channels start at "no effect"; MIMO composites occlusion in pixel space, which we also do).
``.pth`` files are read with ``torch.load(weights_only=True)``: tensors only, no code runs.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Channel layout of the denoising UNet's input (backend/mimo/pipeline.py builds it in this order).
LATENT_CHANNELS = 4
DENOISING_IN_CHANNELS = LATENT_CHANNELS * 3 + 1  # noisy latents, scene, occlusion rgb, occlusion alpha
MIMO_IN_CHANNELS = LATENT_CHANNELS * 2  # MIMO's release: noisy latents + scene ("bk") latents

# MIMO's sampler (configs/inference/inference_v2.yaml of their code): DDIM, zero-SNR, v-prediction.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "set_alpha_to_one": True,
}

MIMO_FILES = {
    "mimo-denoising-unet": "denoising_unet.pth",
    "mimo-reference-unet": "reference_unet.pth",
    "mimo-pose-guider": "pose_guider.pth",
    "mimo-motion-module": "motion_module.pth",
}


def _model_mixin() -> tuple[type, type, Any]:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin

    return ModelMixin, ConfigMixin, register_to_config


_ModelMixin, _ConfigMixin, _register_to_config = _model_mixin()


class PoseGuider(_ModelMixin, _ConfigMixin):  # type: ignore[misc, valid-type]
    """Structured motion code: learned codes on the body's vertices and the conv encoder to latent size.

    ``vertex_codes`` (V, C) are what MIMO's paper attaches to the SMPL-X vertices; rasterised through
    the camera they give a (C, H, W) feature map per frame (backend/mimo/motion_code.py), which the
    convolutions (``conv_in``, ``blocks``, ``conv_out``: the key names of MIMO's ``PoseGuider``)
    bring to latent resolution (H/8, W/8) and to the width of the denoising UNet's first block, where
    it is added after ``conv_in`` (as MIMO's ``pose_cond_fea``).
    """

    @_register_to_config
    def __init__(
        self,
        num_vertices: int = 10475,
        code_channels: int = 3,
        embedding_channels: int = 320,
        block_out_channels: tuple[int, ...] = (16, 32, 96, 256),
    ) -> None:
        super().__init__()
        self.vertex_codes = nn.Parameter(torch.randn(num_vertices, code_channels) * 0.5)
        self.conv_in = nn.Conv2d(code_channels, block_out_channels[0], kernel_size=3, padding=1)
        blocks = []
        for c_in, c_out in itertools.pairwise(block_out_channels):
            blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        # Zero at start (a new condition must not disturb a pretrained UNet): MIMO's initialisation.
        self.conv_out = nn.Conv2d(block_out_channels[-1], embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) rasterised code maps -> (N, embedding_channels, H/8, W/8)."""
        x = F.silu(self.conv_in(features))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


# ---------------------------------------------------------------------------------------------
# MIMO's released checkpoint layout -> ours


def mimo_folder(location: Path, role: str) -> Path | None:
    """``location`` when it holds MIMO's released file for ``role`` (and no diffusers config)."""
    name = MIMO_FILES.get(role)
    if (
        name
        and location.is_dir()
        and (location / name).is_file()
        and not (location / "config.json").is_file()
    ):
        return location
    return None


def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """A ``.pth`` state dict, tensors only (``weights_only=True``: no pickled code is run)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def rename_motion_key(key: str) -> str | None:
    """AnimateDiff/Moore-AnimateAnyone motion-module key -> diffusers ``MotionAdapter`` key (the
    renames of diffusers' conversion script); None for the sinusoidal position table (recomputed)."""
    if "pos_encoder" in key:
        return None
    return (
        key.replace(".norms.0", ".norm1")
        .replace(".norms.1", ".norm2")
        .replace(".ff_norm", ".norm3")
        .replace(".attention_blocks.0", ".attn1")
        .replace(".attention_blocks.1", ".attn2")
        .replace(".temporal_transformer", "")
    )


def split_denoising_state(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """MIMO's UNet3D state dict -> (spatial UNet2DConditionModel keys, MotionAdapter keys)."""
    spatial: dict[str, torch.Tensor] = {}
    motion: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".motion_modules." in key:
            new = rename_motion_key(key)
            if new is not None:
                motion[new] = value
        elif "attn_temp" in key or "norm_temp" in key:
            continue  # AnimateAnyone's unused per-block temporal attention (disabled in MIMO's config)
        else:
            spatial[key] = value
    return spatial, motion


def pad_conv_in(state: dict[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """Zero-pad ``conv_in.weight`` to ``in_channels`` inputs (new channels contribute nothing)."""
    weight = state.get("conv_in.weight")
    if weight is None or weight.shape[1] >= in_channels:
        return state
    pad = weight.new_zeros(weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:])
    return {**state, "conv_in.weight": torch.cat([weight, pad], dim=1)}


def _unet_config_for_mimo(folder: Path, base_location: Path | None) -> dict[str, Any]:
    """SD 1.5's UNet config: MIMO's own ``stable-diffusion-v1-5/unet`` copy, else the base role's."""
    for candidate in (
        folder / "stable-diffusion-v1-5" / "unet",
        base_location / "unet" if base_location else None,
    ):
        if candidate is not None and (candidate / "config.json").is_file():
            return json.loads((candidate / "config.json").read_text(encoding="utf-8"))
    raise FileNotFoundError(
        f"{folder} holds MIMO's .pth files but no stable-diffusion-v1-5/unet/config.json, and the "
        "base-diffusion role is not present to give the UNet's configuration"
    )


@dataclass
class MimoState:
    """What :func:`mimo_state_dicts` reads from a MIMO ``pretrained_weights`` folder."""

    unet_config: dict[str, Any]
    denoising: dict[str, torch.Tensor]  # spatial, conv_in padded to DENOISING_IN_CHANNELS
    motion: dict[str, torch.Tensor]  # MotionAdapter keys (denoising_unet.pth's, else motion_module.pth's)
    reference: dict[str, torch.Tensor]
    pose_guider: dict[str, torch.Tensor]


def mimo_state_dicts(folder: Path, base_location: Path | None = None) -> MimoState:
    config = _unet_config_for_mimo(folder, base_location)
    spatial, motion = split_denoising_state(read_pth(folder / MIMO_FILES["mimo-denoising-unet"]))
    if not motion and (folder / MIMO_FILES["mimo-motion-module"]).is_file():
        motion = {
            k2: v
            for k, v in read_pth(folder / MIMO_FILES["mimo-motion-module"]).items()
            if (k2 := rename_motion_key(k)) is not None
        }
    return MimoState(
        config,
        pad_conv_in(spatial, DENOISING_IN_CHANNELS),
        motion,
        read_pth(folder / MIMO_FILES["mimo-reference-unet"]),
        read_pth(folder / MIMO_FILES["mimo-pose-guider"]),
    )


def unet_from_mimo(state: MimoState, which: str) -> Any:
    """A ``UNet2DConditionModel`` with MIMO's weights (``which``: "denoising" or "reference")."""
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in state.unet_config.items() if not k.startswith("_")}
    if which == "denoising":
        config["in_channels"] = DENOISING_IN_CHANNELS
    unet = UNet2DConditionModel.from_config(config)
    weights = state.denoising if which == "denoising" else state.reference
    missing, unexpected = unet.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "conv_in" not in k]:
        raise KeyError(
            f"MIMO {which} UNet: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    return unet


def motion_adapter_from_mimo(state: MimoState, unet_config: dict[str, Any]) -> Any:
    from diffusers import MotionAdapter

    adapter = MotionAdapter(
        block_out_channels=tuple(unet_config["block_out_channels"]),
        motion_layers_per_block=unet_config.get("layers_per_block", 2),
        motion_num_attention_heads=8,  # MIMO's inference_v2.yaml
        motion_norm_num_groups=unet_config.get("norm_num_groups", 32),
        motion_max_seq_length=32,
        use_motion_mid_block=any(k.startswith("mid_block.") for k in state.motion),
    )
    missing, unexpected = adapter.load_state_dict(state.motion, strict=False)
    missing = [k for k in missing if "pos_embed" not in k]
    if unexpected or missing:
        raise KeyError(
            f"MIMO motion module: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    return adapter


def pose_guider_from_mimo(state: MimoState, num_vertices: int = 10475) -> PoseGuider:
    """MIMO's pose guider convolutions (3 input channels); the vertex codes are not in their release
    (their code renders a 3-channel image of the body instead): seeded random, to be fine-tuned."""
    weights = state.pose_guider
    conv_in = weights["conv_in.weight"]
    blocks = sorted({int(k.split(".")[1]) for k in weights if k.startswith("blocks.")})
    widths = [conv_in.shape[0]] + [weights[f"blocks.{i}.weight"].shape[0] for i in blocks if i % 2 == 1]
    torch.manual_seed(0)
    guider = PoseGuider(num_vertices, conv_in.shape[1], weights["conv_out.weight"].shape[0], tuple(widths))
    missing, unexpected = guider.load_state_dict(weights, strict=False)
    if unexpected or set(missing) - {"vertex_codes"}:
        raise KeyError(f"MIMO pose guider: missing {missing}, unexpected {unexpected[:3]}")
    return guider


# ---------------------------------------------------------------------------------------------
# Tiny random versions (backend/models/tiny.py writes them with the other tiny models)

TINY_CROSS_DIM = 32
TINY_CHANNELS = (16, 32)
TINY_CODE_CHANNELS = 4
STANDIN_VERTICES = 10475  # SMPL-X's vertex count, which the generated stand-in body shares


def tiny_mimo_unet(in_channels: int, seed: int) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=LATENT_CHANNELS,
        block_out_channels=TINY_CHANNELS,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_CROSS_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_motion_adapter(seed: int = 42) -> Any:
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    return MotionAdapter(
        block_out_channels=TINY_CHANNELS,
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=32,
        use_motion_mid_block=True,
    )


def tiny_pose_guider(seed: int = 43) -> PoseGuider:
    torch.manual_seed(seed)
    guider = PoseGuider(STANDIN_VERTICES, TINY_CODE_CHANNELS, TINY_CHANNELS[0], (8, 8, 8, 16))
    with torch.no_grad():
        # He-initialised convs (torch's default shrinks the signal ~3x per layer: after 7 layers the
        # output would be its bias alone) and a random, not zero, conv_out: a tiny model must show
        # that the motion code matters, as a trained one does.
        for conv in [guider.conv_in, *guider.blocks, guider.conv_out]:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
    return guider


def save_tiny_mimo_denoising_unet(folder: Path) -> Path:
    tiny_mimo_unet(DENOISING_IN_CHANNELS, 40).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_mimo_reference_unet(folder: Path) -> Path:
    tiny_mimo_unet(LATENT_CHANNELS, 41).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_motion_adapter(folder: Path) -> Path:
    adapter = tiny_motion_adapter()
    with torch.no_grad():  # AnimateDiff zero-initialises proj_out; random here so time matters
        for name, p in adapter.named_parameters():
            if name.endswith("proj_out.weight"):
                p.normal_(0.0, 0.05)
    adapter.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_pose_guider(folder: Path) -> Path:
    tiny_pose_guider().save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_mimo_image_encoder(folder: Path) -> Path:
    """The ``clip`` role's tiny open_clip, its embedding as wide as the tiny UNets' cross-attention."""
    import open_clip

    from backend.models.tiny import tiny_open_clip_config, write_open_clip_folder

    config = tiny_open_clip_config(TINY_CROSS_DIM)
    torch.manual_seed(44)
    return write_open_clip_folder(folder, config, open_clip.model.CLIP(**config["model_cfg"]).eval())


TINY_MIMO_WRITERS: dict[str, tuple[str, Any]] = {
    "mimo-denoising-unet": ("mimo-denoising-unet", save_tiny_mimo_denoising_unet),
    "mimo-reference-unet": ("mimo-reference-unet", save_tiny_mimo_reference_unet),
    "mimo-motion-module": ("mimo-motion-module", save_tiny_motion_adapter),
    "mimo-pose-guider": ("mimo-pose-guider", save_tiny_pose_guider),
    "mimo-image-encoder": ("mimo-image-encoder", save_tiny_mimo_image_encoder),
}


def write_tiny_route_models(root: Path) -> Path:
    """Tiny versions of the neural route's roles and the VAE under ``root`` (the writers
    ``make-tiny`` uses) and a ``models.toml`` naming them; returns that file. For tests that run
    the route without every other tiny model."""
    from backend.models.tiny import save_tiny_vae

    lines = []
    for role, (sub, write) in {**TINY_MIMO_WRITERS, "vae": ("vae", save_tiny_vae)}.items():
        write(root / sub)
        lines += [f"[models.{role}]", f'path = "{sub}"', ""]
    (root / "models.toml").write_text("\n".join(lines), encoding="utf-8")
    return root / "models.toml"
