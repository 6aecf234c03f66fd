"""Training the neural route on ``clips.render`` data: noise-prediction loss, checkpoints, resume.

As MIMO (and Animate Anyone): the VAE and the CLIP image encoder are frozen, so each clip's latents,
conditions, identity embedding and rasterisation are computed once (:func:`prepare`). A step draws a
clip, a window of frames, a timestep and noise from one seeded ``torch.Generator``; with probability
``uncond_prob`` the identity embedding is zeroed (what classifier-free guidance needs at inference).
The target is the scheduler's: the noise (epsilon) or the velocity (v-prediction, MIMO's).

``out_dir`` layout::

    checkpoints/step-000010/   trainable.safetensors (weights of the trained parts), optimizer.pt
                               (torch.save of the optimizer state), rng.safetensors (the generator),
                               state.json (step, losses, config)
    train_log.jsonl            one line per step: step, loss, seconds

Resume: :func:`train` continues from the newest complete checkpoint; the generator, optimizer and
weights are restored exactly, so N steps in one run and k + (N - k) steps over a resume give
bit-identical weights (tested). Checkpoints are written to a temporary folder and renamed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.mimo import motion_code
from backend.mimo.config import NeuralCancelled
from backend.mimo.data import ClipLayers
from backend.mimo.network import MimoModels
from backend.mimo.pipeline import _frames_tensor, processing_size
from backend.render.api import Raster

PARTS = ("denoising", "reference_unet", "pose_guider")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-5
    window: int = 16  # frames per sample (the motion modules' context)
    size: int = 512  # long side of the training frames (multiple of 8 after rounding)
    seed: int = 0
    checkpoint_every: int = 500
    uncond_prob: float = 0.1
    grad_clip: float = 1.0
    parts: tuple[str, ...] = PARTS  # which of MimoNet's parts train (MIMO's stage 2: ("denoising",))

    def __post_init__(self) -> None:
        if self.steps < 0 or self.checkpoint_every < 1 or self.window < 1 or not self.lr > 0:
            raise ValueError("steps >= 0, checkpoint_every >= 1, window >= 1 and lr > 0 are required")
        unknown = set(self.parts) - set(PARTS)
        if unknown or not self.parts:
            raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {self.parts}")


@dataclass
class Prepared:
    """One clip's frozen inputs at latent size."""

    name: str
    target: torch.Tensor  # (F,4,h,w)
    cond: torch.Tensor  # (F,9,h,w)
    ref_latents: torch.Tensor  # (1,4,h,w)
    embeds: torch.Tensor  # (1,1,D)
    raster: Raster
    faces: torch.Tensor


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # of the steps run by this call
    step: int = 0  # the step reached
    checkpoint: Path | None = None
    resumed_from: int = 0


@torch.no_grad()
def prepare(models: MimoModels, clips: list[ClipLayers], size: int) -> list[Prepared]:
    """Encode every clip once (frozen VAE and image encoder, rasterised body)."""
    out = []
    for c in clips:
        height, width = c.target.shape[1:3]
        hw = processing_size(height, width, size)
        alpha = _frames_tensor(c.occlusion_alpha, hw)
        target = models.encode_images(_frames_tensor(c.target, hw) / 127.5 - 1.0)
        scene = models.encode_images(_frames_tensor(c.scene, hw) / 127.5 - 1.0)
        occ = models.encode_images((_frames_tensor(c.occlusion_rgb, hw) / 127.5 - 1.0) * alpha)
        alpha_lat = F.interpolate(alpha, size=tuple(target.shape[-2:]), mode="area").to(target)
        raster = motion_code.rasterize_body(
            c.posed_vertices, c.faces, motion_code.scale_intrinsics(c.K, (height, width), hw), c.R, c.t, hw
        )
        out.append(
            Prepared(
                c.name,
                target,
                torch.cat([scene, occ, alpha_lat], dim=1),
                models.encode_images(_frames_tensor(c.identity[None], hw) / 127.5 - 1.0),
                models.embed_identity(c.identity),
                raster,
                torch.as_tensor(c.faces, dtype=torch.int64),
            )
        )
    return out


def _noise_scheduler(models: MimoModels):  # type: ignore[no-untyped-def]
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(models.scheduler_config)


def sample_loss(
    models: MimoModels,
    item: Prepared,
    start: int,
    frames: int,
    timestep: torch.Tensor,
    noise: torch.Tensor,
    drop_identity: bool,
    scheduler: object,
) -> torch.Tensor:
    """The noise-prediction loss of one window (differentiable w.r.t. every trained part, codes too)."""
    net, dev, dt = models.net, models.device, models.dtype
    window = slice(start, start + frames)
    x0 = item.target[window].permute(1, 0, 2, 3).unsqueeze(0).to(dev, dt)  # (1,4,f,h,w)
    noise = noise.to(dev, dt)
    t = timestep.to(dev)
    noisy = scheduler.add_noise(x0, noise, t)  # type: ignore[attr-defined]
    if scheduler.config.prediction_type == "v_prediction":  # type: ignore[attr-defined]
        target = scheduler.get_velocity(x0, noise, t)  # type: ignore[attr-defined]
    else:
        target = noise
    cond = item.cond[window].permute(1, 0, 2, 3).unsqueeze(0).to(dev, dt)
    embeds = item.embeds.to(dev, dt) * (0.0 if drop_identity else 1.0)
    net.write_reference(item.ref_latents.to(dev, dt), embeds)
    maps = motion_code.code_maps(net.pose_guider.vertex_codes, item.raster, item.faces.to(dev), frames=window)
    pred = net(torch.cat([noisy, cond], dim=1), t, embeds, maps.to(dev, dt))
    return F.mse_loss(pred.float(), target.float())


def _draw(
    generator: torch.Generator,
    data: list[Prepared],
    window: int,
    shape_of: Callable[[Prepared, int], tuple],
    uncond_prob: float,
) -> tuple[Prepared, int, int, torch.Tensor, torch.Tensor, bool]:
    """One training sample's random choices, all from ``generator`` (order fixed: resume replays it)."""
    item = data[int(torch.randint(len(data), (1,), generator=generator))]
    total = item.target.shape[0]
    frames = min(window, total)
    start = int(torch.randint(total - frames + 1, (1,), generator=generator))
    timestep = torch.randint(0, 1000, (1,), generator=generator)
    noise = torch.randn(shape_of(item, frames), generator=generator)
    drop = bool(torch.rand((), generator=generator) < uncond_prob)
    return item, start, frames, timestep, noise, drop


def _shape(item: Prepared, frames: int) -> tuple[int, ...]:
    return (1, item.target.shape[1], frames, *item.target.shape[2:])


@torch.no_grad()
def evaluate(
    models: MimoModels, data: list[Prepared], window: int, seed: int = 1234, draws: int = 4
) -> float:
    """Mean loss over ``draws`` fixed (seeded) samples: comparable before and after training."""
    generator = torch.Generator().manual_seed(seed)
    scheduler = _noise_scheduler(models)
    losses = []
    for _ in range(draws):
        item, start, frames, t, noise, _drop = _draw(generator, data, window, _shape, 0.0)
        losses.append(float(sample_loss(models, item, start, frames, t, noise, False, scheduler)))
    return float(np.mean(losses))


def _trainable(models: MimoModels, parts: tuple[str, ...]) -> dict[str, torch.nn.Parameter]:
    return {f"{part}.{name}": p for part in parts for name, p in getattr(models.net, part).named_parameters()}


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted((out_dir / "checkpoints").glob("step-[0-9]*"))
    found = [p for p in found if (p / "state.json").is_file() and not p.name.endswith(".tmp")]
    return found[-1] if found else None


def save_checkpoint(
    out_dir: Path,
    step: int,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    losses: list[float],
    config: TrainConfig,
) -> Path:
    from safetensors.torch import save_file

    final = out_dir / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: p.detach().contiguous().cpu() for k, p in params.items()}, str(tmp / "trainable.safetensors")
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    save_file({"generator": generator.get_state()}, str(tmp / "rng.safetensors"))
    state = {"step": step, "losses": losses, "config": {**asdict(config), "parts": list(config.parts)}}
    (tmp / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def load_checkpoint(
    folder: Path,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "trainable.safetensors"))
    if set(weights) != set(params):
        raise ValueError(
            f"checkpoint {folder} trains other parameters than this configuration "
            f"({len(set(weights) ^ set(params))} differ)"
        )
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(weights[k])
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    generator.set_state(load_file(str(folder / "rng.safetensors"))["generator"])
    return json.loads((folder / "state.json").read_text(encoding="utf-8"))


def train(
    models: MimoModels,
    data: list[Prepared],
    config: TrainConfig,
    out_dir: Path | str,
    *,
    resume: bool = True,
    progress: Callable[[float, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> TrainResult:
    """Run training up to ``config.steps`` (continuing from the newest checkpoint when ``resume``)."""
    if not data:
        raise ValueError("no training clips")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = models.net
    for p in net.parameters():
        p.requires_grad_(False)
    params = _trainable(models, config.parts)
    for p in params.values():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(config.seed)
    scheduler = _noise_scheduler(models)
    result = TrainResult()
    history: list[float] = []
    found = latest_checkpoint(out_dir) if resume else None
    if found is not None:
        state = load_checkpoint(found, params, optimizer, generator)
        result.step = result.resumed_from = int(state["step"])
        history = list(state["losses"])
    net.train()
    log = (out_dir / "train_log.jsonl").open("a", encoding="utf-8")
    try:
        while result.step < config.steps:
            if cancelled is not None and cancelled():
                raise NeuralCancelled("training cancelled")
            began = time.perf_counter()
            item, start, frames, t, noise, drop = _draw(
                generator, data, config.window, _shape, config.uncond_prob
            )
            optimizer.zero_grad(set_to_none=True)
            loss = sample_loss(models, item, start, frames, t, noise, drop, scheduler)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), config.grad_clip)
            optimizer.step()
            result.step += 1
            value = float(loss.detach())
            result.losses.append(value)
            history.append(value)
            log.write(
                json.dumps(
                    {
                        "step": result.step,
                        "loss": value,
                        "clip": item.name,
                        "t": int(t),
                        "seconds": round(time.perf_counter() - began, 4),
                    }
                )
                + "\n"
            )
            if result.step % config.checkpoint_every == 0 or result.step == config.steps:
                result.checkpoint = save_checkpoint(
                    out_dir, result.step, params, optimizer, generator, history, config
                )
            if progress is not None:
                progress(
                    result.step / max(config.steps, 1), f"step {result.step}/{config.steps} loss {value:.4f}"
                )
    finally:
        log.close()
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
    return result


def export_roles(models: MimoModels, out_dir: Path | str) -> Path:
    """Write the trained parts as the route's role folders (diffusers layouts, the format the loaders
    read) and a ``models.toml`` naming them; returns that file. The temporal UNet is split back into
    its 2D UNet (``mimo-denoising-unet``) and its motion module (``mimo-motion-module``)."""
    from diffusers import UNet2DConditionModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = models.net
    if not models.unet2d_config:
        raise ValueError("these models were not loaded by load_mimo_models: the 2D UNet config is unknown")
    unet2d = UNet2DConditionModel.from_config(models.unet2d_config)
    spatial = {k: v for k, v in net.denoising.state_dict().items() if "motion_modules" not in k}
    unet2d.load_state_dict(spatial, strict=True)
    unet2d.save_pretrained(out / "mimo-denoising-unet", safe_serialization=True)
    net.denoising.save_motion_modules(str(out / "mimo-motion-module"))
    net.reference_unet.save_pretrained(out / "mimo-reference-unet", safe_serialization=True)
    net.pose_guider.save_pretrained(out / "mimo-pose-guider", safe_serialization=True)
    roles = ("mimo-denoising-unet", "mimo-motion-module", "mimo-reference-unet", "mimo-pose-guider")
    lines = [
        "# The neural route's trained parts (backend/mimo/train.py export_roles); paths are relative.",
        "# Add mimo-image-encoder and vae entries (frozen in training) or keep their defaults.",
        "",
    ]
    for role in roles:
        lines += [f"[models.{role}]", f'path = "{role}"', ""]
    (out / "models.toml").write_text("\n".join(lines), encoding="utf-8")
    return out / "models.toml"
