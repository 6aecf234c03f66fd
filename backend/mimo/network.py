"""The composed decoder: denoising UNet with temporal layers, reference UNet, structured motion code,
identity encoder, VAE, scheduler; loaded by role from the model registry (docs/mimo.md).

``MimoNet`` holds the trained parts (what the training loop optimises and checkpoints); ``MimoModels``
adds the frozen ones (VAE, CLIP image encoder) and the scheduler configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.mimo import reference
from backend.models import load
from backend.models.mimo import DENOISING_IN_CHANNELS, SCHEDULER_CONFIG, PoseGuider
from backend.models.registry import ModelRegistry


class MimoNet(nn.Module):
    """Denoising ``UNetMotionModel`` + reference ``UNet2DConditionModel`` + :class:`PoseGuider`.

    The pose guider's output is added to the denoising UNet's ``conv_in`` output (a forward hook:
    diffusers' UNet has no such input; MIMO's fork adds ``pose_cond_fea`` at the same place).
    """

    def __init__(self, denoising: Any, reference_unet: Any, pose_guider: PoseGuider) -> None:
        super().__init__()
        if denoising.config.in_channels != DENOISING_IN_CHANNELS:
            raise ValueError(
                f"the denoising UNet takes {denoising.config.in_channels} channels, "
                f"the route feeds {DENOISING_IN_CHANNELS}"
            )
        if pose_guider.config.embedding_channels != denoising.config.block_out_channels[0]:
            raise ValueError("the pose guider's output width must equal the denoising UNet's first block")
        self.denoising = denoising
        self.reference_unet = reference_unet
        self.pose_guider = pose_guider
        self.bank: reference.Bank = {}
        self._pose: torch.Tensor | None = None
        reference.install(self.reference_unet, self.bank, "write")
        names = reference.install(self.denoising, self.bank, "read")
        if not names:
            raise ValueError("the denoising UNet has no spatial self-attention for reference attention")
        self.denoising.conv_in.register_forward_hook(self._add_pose)

    def _add_pose(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._pose is None:
            return output
        if self._pose.shape != output.shape:
            raise ValueError(
                f"pose features {tuple(self._pose.shape)} do not match conv_in's {tuple(output.shape)}"
            )
        return output + self._pose.to(output.dtype)

    def write_reference(self, ref_latents: torch.Tensor, image_embeds: torch.Tensor) -> None:
        """Run the reference UNet at t = 0 (as MIMO) on (B, 4, h, w) latents; fills the bank."""
        self.bank.clear()
        zero_t = torch.zeros((), device=ref_latents.device, dtype=torch.long)
        self.reference_unet(ref_latents, zero_t, encoder_hidden_states=image_embeds, return_dict=False)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        image_embeds: torch.Tensor,
        code_maps: torch.Tensor,
    ) -> torch.Tensor:
        """``sample`` (B, 13, F, h, w): noisy latents + conditions; ``image_embeds`` (B, 1, D);
        ``code_maps`` (B*F, C, 8h, 8w) rasterised motion codes. Returns the UNet's (B, 4, F, h, w)
        prediction. :meth:`write_reference` must have run for this batch's references."""
        frames = sample.shape[2]
        self._pose = self.pose_guider(code_maps)
        try:
            embeds = image_embeds.repeat_interleave(frames, dim=0)  # diffusers wants (B*F, L, D)
            return self.denoising(sample, timestep, encoder_hidden_states=embeds, return_dict=False)[0]
        finally:
            self._pose = None


@dataclass
class MimoModels:
    """Everything the route runs: the trained net, the frozen VAE and image encoder, the scheduler."""

    net: MimoNet
    vae: Any
    image_encoder: load.ClipModel
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    unet2d_config: dict[str, Any] = field(default_factory=dict)  # the denoising UNet's 2D config (export)

    @property
    def vertex_count(self) -> int:
        return int(self.net.pose_guider.config.num_vertices)

    def make_scheduler(self, kind: str) -> Any:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler_config)
        # DPM++ 2M; a zero-SNR schedule ends at sigma = inf, so its last step goes to sigma 0 exactly
        return DPMSolverMultistepScheduler.from_config(
            self.scheduler_config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
        )

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, 4, H/8, W/8) scaled latents (the mean: deterministic)."""
        out = []
        for i in range(0, images.shape[0], chunk):
            batch = images[i : i + chunk].to(self.device, self.vae.dtype)
            out.append(self.vae.encode(batch).latent_dist.mean * self.vae.config.scaling_factor)
        return torch.cat(out).to(self.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """(N, 4, h, w) -> (N, 3, 8h, 8w) in [-1, 1]."""
        out = []
        for i in range(0, latents.shape[0], chunk):
            batch = latents[i : i + chunk].to(self.device, self.vae.dtype) / self.vae.config.scaling_factor
            out.append(self.vae.decode(batch).sample.clamp(-1, 1))
        return torch.cat(out).float()

    @torch.no_grad()
    def embed_identity(self, image: np.ndarray) -> torch.Tensor:
        """(1, 1, D) CLIP image embedding of an (h, w, 3) uint8 image (not normalised: as MIMO's
        ``image_embeds``, the projection output)."""
        from PIL import Image

        enc = self.image_encoder
        pixels = enc.preprocess(Image.fromarray(image, "RGB")).unsqueeze(0).to(enc.device)
        dtype = next(enc.model.parameters()).dtype
        return enc.model.encode_image(pixels.to(dtype)).to(self.device, self.dtype).unsqueeze(1)


ROLES = (
    "mimo-denoising-unet",
    "mimo-reference-unet",
    "mimo-motion-module",
    "mimo-pose-guider",
    "mimo-image-encoder",
    "vae",
)


def compose_denoising(unet2d: Any, adapter: Any) -> Any:
    """The temporal denoising UNet: diffusers' ``UNetMotionModel.from_unet2d`` (AnimateDiff layers)."""
    from diffusers import UNetMotionModel

    return UNetMotionModel.from_unet2d(unet2d, adapter)


def load_mimo_models(
    registry: ModelRegistry, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
) -> MimoModels:
    """Every role of the route, through :mod:`backend.models.load` (a missing one raises the
    registry's ``ModelMissingError`` naming the role, the model and the download command)."""
    dev = load.pick_device(device)
    dt = load.pick_dtype(dev, dtype)
    kw: dict[str, Any] = {"registry": registry, "device": "cpu", "dtype": dt}
    unet2d = load.load_mimo_unet("mimo-denoising-unet", **kw)
    ref = load.load_mimo_unet("mimo-reference-unet", **kw)
    adapter = load.load_motion_adapter(**kw)
    guider = load.load_pose_guider(**kw)
    encoder = load.load_clip(role="mimo-image-encoder", registry=registry, device=dev, dtype=dt)
    vae = load.load_vae(registry=registry, device=dev, dtype=dt)
    denoising = compose_denoising(unet2d, adapter)
    if next(denoising.parameters()).dtype != dt:
        denoising = denoising.to(dtype=dt)
    net = MimoNet(denoising, ref, guider).to(dev).eval()
    config = {k: v for k, v in unet2d.config.items() if not k.startswith("_")}
    return MimoModels(net, vae.eval(), encoder, dict(SCHEDULER_CONFIG), dev, dt, config)
