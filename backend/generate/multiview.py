"""K consistent views of a posed body from Stable Diffusion + ControlNet in one batch.

``generate_views`` runs diffusers' ``StableDiffusionControlNetPipeline`` (a ``MultiControlNetModel``
when several condition kinds are used) over the K views of a :class:`BodyConditions` at once, with
:class:`~backend.generate.attention.CrossFrameAttnProcessor` installed on the UNet's self-attention
for the run (removed afterwards), view-dependent prompts ("..., front view, ..."), a scheduler
picked by name, and one noise generator per view derived from the seed, so a seed gives the same
images on every run and device (the noise is drawn on the CPU).

Image guidance (a user's photo as the anchor view): the photo is encoded by the VAE and, after
every denoising step, the anchor's latents are replaced by the photo's latents noised to the next
timestep (the inpainting trick of SD's legacy inpaint pipeline, over the whole image), and by the
clean latents after the last step. The anchor view therefore decodes to the photo up to the VAE
round trip, and every other view attends to it at every step.

The pipeline is loaded by :func:`backend.models.load.load_controlnet_pipeline` (roles from the model
registry, device/dtype, offload, attention slicing); this module only runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.generate.attention import install_cross_frame_attention
from backend.generate.conditions import CONDITION_KINDS, BodyConditions

DEFAULT_NEGATIVE = ("lowres, blurry, bad anatomy, extra limbs, missing limbs, deformed hands, text, "
                    "watermark, cropped, multiple people")
# The background term helps the colour-based mask refinement (masks.py).
PROMPT_TEMPLATE = "{prompt}, {view} view, full body, simple white background"


def _schedulers() -> dict[str, tuple[type, dict[str, Any]]]:
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    return {
        "dpm++2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        "dpm++2m-karras": (DPMSolverMultistepScheduler,
                           {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
        "unipc": (UniPCMultistepScheduler, {}),
        "ddim": (DDIMScheduler, {}),
        "euler-a": (EulerAncestralDiscreteScheduler, {}),
    }


SCHEDULER_NAMES = ("dpm++2m", "dpm++2m-karras", "unipc", "ddim", "euler-a")
_ALIASES = {"dpm++ 2m": "dpm++2m", "dpmpp_2m": "dpm++2m", "dpm++ 2m karras": "dpm++2m-karras",
            "euler a": "euler-a", "euler_a": "euler-a", "euler_ancestral": "euler-a", "uni_pc": "unipc"}


def make_scheduler(name: str, config: Any) -> Any:
    """The scheduler called ``name`` (see :data:`SCHEDULER_NAMES`; "DPM++ 2M", "Euler a" accepted),
    built ``from_config`` of the pipeline's current scheduler config so the model's betas stay."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    table = _schedulers()
    if key not in table:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULER_NAMES)}")
    cls, extra = table[key]
    return cls.from_config(config, **extra)


def view_generators(seed: int, n_views: int) -> list[torch.Generator]:
    """One CPU generator per view, seeded from ``seed`` by numpy's SeedSequence (independent streams:
    seed s view 1 never repeats seed s+1 view 0)."""
    states = np.random.SeedSequence(int(seed)).generate_state(n_views, dtype=np.uint64)
    return [torch.Generator("cpu").manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF) for s in states]


def view_prompts(prompt: str, labels: Sequence[str], template: str | None = PROMPT_TEMPLATE) -> list[str]:
    """One prompt per view: ``template`` with the prompt and the view label; None: the prompt as is."""
    if template is None:
        return [prompt] * len(labels)
    return [template.format(prompt=prompt, view=label) for label in labels]


@dataclass
class GeneratedViews:
    """K generated images (float32 (K,H,W,3) in [0, 1]) and how they were made."""

    images: np.ndarray
    prompts: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def uint8(self) -> np.ndarray:
        return np.clip(np.round(self.images * 255), 0, 255).astype(np.uint8)


def encode_image(pipe: Any, image: Image.Image | np.ndarray, width: int, height: int) -> torch.Tensor:
    """VAE latents (1,4,h,w) of ``image`` resized to the views' size (the distribution's mean, so
    the same photo always gives the same latents), scaled as the UNet sees them."""
    if isinstance(image, np.ndarray):
        array = image if image.dtype == np.uint8 else np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
        image = Image.fromarray(array[..., :3], "RGB")
    pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width)
    vae = pipe.vae
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


class AnchorInjection:
    """``callback_on_step_end`` that keeps the anchor view on a given image's latents."""

    def __init__(self, clean: torch.Tensor, noise: torch.Tensor, anchor: int,
                 on_step: Callable[[int, int], None] | None = None):
        self.clean, self.noise, self.anchor, self.on_step = clean, noise, anchor, on_step

    def noised(self, scheduler: Any, timestep: torch.Tensor) -> torch.Tensor:
        return scheduler.add_noise(self.clean, self.noise, timestep.reshape(1))

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = kwargs["latents"].clone()
        timesteps = pipe.scheduler.timesteps
        # Noised to the timestep the next step starts from; clean after the last step.
        last = step + 1 >= len(timesteps)
        target = self.clean if last else self.noised(pipe.scheduler, timesteps[step + 1])
        latents[self.anchor] = target[0].to(latents.dtype)
        if self.on_step is not None:
            self.on_step(step + 1, len(timesteps))
        return {"latents": latents}


def generate_views(pipe: Any, conditions: BodyConditions, prompt: str,
                   negative_prompt: str = DEFAULT_NEGATIVE, seed: int = 0, guidance: float = 7.5,
                   steps: int = 25, scheduler: str = "dpm++2m", *,
                   kinds: Sequence[str] = ("pose",), control_scale: float | Sequence[float] = 1.0,
                   image: Image.Image | np.ndarray | None = None, anchor: int = 0, window: int = 1,
                   cross_frame: bool = True, prompt_template: str | None = PROMPT_TEMPLATE,
                   attention_slicing: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> GeneratedViews:
    """Generate one image per view of ``conditions`` in one batch (see the module docstring).

    ``kinds``: the condition images fed to the pipeline's ControlNets, in their order (one kind
    per ControlNet). ``image``: image guidance (the anchor view becomes this image). ``window``:
    previous views each view attends to besides the anchor and itself; ``cross_frame=False`` runs
    the plain per-view attention (independent views). ``attention_slicing``: diffusers' sliced
    attention on the other layers and one view at a time in the cross-frame layers. ``progress``:
    called with (step, steps) after each step.
    """
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    n = len(conditions)
    if n == 0:
        raise ValueError("no views to generate")
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in CONDITION_KINDS]
    if unknown:
        raise ValueError(f"unknown condition kinds {unknown}; known: {', '.join(CONDITION_KINDS)}")
    n_nets = len(pipe.controlnet.nets) if isinstance(pipe.controlnet, MultiControlNetModel) else 1
    if len(kinds) != n_nets:
        raise ValueError(f"{len(kinds)} condition kinds {list(kinds)} for {n_nets} ControlNet(s)")
    if not 0 <= anchor < n:
        raise ValueError(f"anchor {anchor} is not a view index (0..{n - 1})")
    if steps <= 0:
        raise ValueError("steps must be positive")
    width, height = conditions.cameras.width, conditions.cameras.height
    factor = pipe.vae_scale_factor  # the UNet itself pads odd latent sizes up and back
    if width % factor or height % factor:
        raise ValueError(f"view size {width}x{height} must be a multiple of {factor} for this model")

    previous_scheduler = pipe.scheduler
    pipe.scheduler = make_scheduler(scheduler, previous_scheduler.config)
    prompts = view_prompts(prompt, conditions.labels, prompt_template)
    generators = view_generators(seed, n)
    device = pipe._execution_device
    unet_dtype = pipe.unet.dtype
    shape = (pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    # Initial noise drawn per view on the CPU; the pipeline multiplies it by init_noise_sigma.
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
    latents = noise.clone()
    callback = None
    if image is not None:
        clean = encode_image(pipe, image, width, height).to(device=device, dtype=torch.float32)
        pipe.scheduler.set_timesteps(steps, device=device)
        anchor_noise = noise[anchor : anchor + 1].to(device)
        callback = AnchorInjection(clean, anchor_noise, anchor, progress)
        start = callback.noised(pipe.scheduler, pipe.scheduler.timesteps[0])
        latents[anchor] = (start[0] / pipe.scheduler.init_noise_sigma).cpu()
    elif progress is not None:
        def callback(p: Any, step: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            progress(step + 1, steps)
            return {}

    if isinstance(pipe.controlnet, MultiControlNetModel):
        cond_images: Any = [[conditions.images(k)[i] for k in kinds] for i in range(n)]
        scale: Any = [float(s) for s in control_scale] if isinstance(control_scale, Sequence) \
            else [float(control_scale)] * n_nets
    else:
        cond_images = conditions.images(kinds[0])
        scale = float(control_scale[0]) if isinstance(control_scale, Sequence) else float(control_scale)
    if attention_slicing:
        pipe.enable_attention_slicing()
    handle = install_cross_frame_attention(pipe.unet, n, window, anchor, 1 if attention_slicing else None) \
        if cross_frame else None
    began = time.perf_counter()
    try:
        with torch.no_grad():
            out = pipe(prompts, image=cond_images, height=height, width=width, num_inference_steps=steps,
                       guidance_scale=guidance, negative_prompt=[negative_prompt] * n, generator=generators,
                       latents=latents.to(device=device, dtype=unet_dtype),
                       controlnet_conditioning_scale=scale, output_type="np",
                       callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    finally:
        if handle is not None:
            handle.remove()
        if attention_slicing:
            pipe.disable_attention_slicing()
        scheduler_name = type(pipe.scheduler).__name__
        pipe.scheduler = previous_scheduler
    seconds = time.perf_counter() - began
    images = np.asarray(out.images, dtype=np.float32)
    return GeneratedViews(images=images, prompts=prompts, info={
        "seed": int(seed), "steps": int(steps), "guidance": float(guidance), "scheduler": scheduler,
        "scheduler_class": scheduler_name, "kinds": list(kinds), "window": int(window),
        "anchor": int(anchor), "cross_frame": bool(cross_frame), "image_guided": image is not None,
        "negative_prompt": negative_prompt, "device": str(device),
        "dtype": str(unet_dtype).removeprefix("torch."),
        "seconds": round(seconds, 3), "views": n, "width": width, "height": height,
    })
