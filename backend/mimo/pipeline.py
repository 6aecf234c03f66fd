"""``insert_neural``: the neural route of ``footage.insert`` (a character synthesised into footage).

Steps (docs/mimo.md): frames to the processing size; scene and occlusion through the VAE; the body
rasterised with its motion codes; the identity through CLIP and the reference UNet; DDIM / DPM++ over
overlapping frame windows blended at the seams (seeded: the same inputs and seed give the same
frames); decode; back to the footage size; the occlusion layer composited on top in pixel space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.mimo import motion_code
from backend.mimo.config import NeuralCancelled, NeuralConfig
from backend.mimo.network import MimoModels, load_mimo_models
from backend.mimo.windows import blend, blend_weights, frame_windows

Progress = Callable[[float, str], None]


def processing_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) with the long side ``size`` and both sides multiples of 8 (at least 8)."""
    scale = size / max(height, width)
    return (max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8))


def _frames_tensor(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(F, H, W, C) uint8 / float -> (F, C, h, w) float32 resized (antialiased bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float()
    x = x.unsqueeze(-1) if x.dim() == 3 else x
    x = x.permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def check_inputs(
    scene: np.ndarray,
    occlusion_rgb: np.ndarray,
    occlusion_alpha: np.ndarray,
    posed_vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    identity_image: np.ndarray,
) -> None:
    """ValueError naming the first argument whose shape, dtype or values do not fit (all but the
    vertex count, which is the loaded models': :func:`check_vertex_count`)."""

    def need(cond: bool, message: str) -> None:
        if not cond:
            raise ValueError(message)

    need(
        scene.ndim == 4 and scene.shape[-1] == 3 and scene.dtype == np.uint8,
        f"scene must be (F,H,W,3) uint8, got {scene.shape} {scene.dtype}",
    )
    frames, height, width = scene.shape[:3]
    need(
        frames >= 1 and height >= 8 and width >= 8,
        f"scene must have frames of at least 8x8, got {scene.shape}",
    )
    need(
        occlusion_rgb.shape == scene.shape and occlusion_rgb.dtype == np.uint8,
        f"occlusion_rgb must be {scene.shape} uint8, got {occlusion_rgb.shape} {occlusion_rgb.dtype}",
    )
    need(
        occlusion_alpha.shape == scene.shape[:3] and occlusion_alpha.dtype == np.float32,
        f"occlusion_alpha must be {scene.shape[:3]} float32, "
        f"got {occlusion_alpha.shape} {occlusion_alpha.dtype}",
    )
    need(
        bool(np.isfinite(occlusion_alpha).all())
        and occlusion_alpha.min(initial=0) >= 0
        and occlusion_alpha.max(initial=0) <= 1,
        "occlusion_alpha must lie in [0, 1]",
    )
    need(
        posed_vertices.ndim == 3 and posed_vertices.shape[0] == frames and posed_vertices.shape[2] == 3,
        f"posed_vertices must be ({frames},V,3) (one pose per footage frame), got {posed_vertices.shape}",
    )
    need(bool(np.isfinite(posed_vertices).all()), "posed_vertices must be finite")
    need(
        faces.ndim == 2 and faces.shape[1] == 3 and np.issubdtype(faces.dtype, np.integer),
        f"faces must be (T,3) integers, got {faces.shape} {faces.dtype}",
    )
    need(
        faces.size > 0 and faces.min() >= 0 and faces.max() < posed_vertices.shape[1],
        "faces index outside the vertex array",
    )
    for name, value, shape in (("K", K, (frames, 3, 3)), ("R", R, (frames, 3, 3)), ("t", t, (frames, 3))):
        need(
            np.shape(value) == shape,
            f"{name} must be {shape} (one camera per footage frame), got {np.shape(value)}",
        )
        need(bool(np.isfinite(value).all()), f"{name} must be finite")
    need(
        identity_image.ndim == 3
        and identity_image.shape[-1] == 3
        and identity_image.dtype == np.uint8
        and min(identity_image.shape[:2]) >= 8,
        f"identity_image must be (h,w,3) uint8 of at least 8x8, "
        f"got {identity_image.shape} {identity_image.dtype}",
    )


def check_vertex_count(posed_vertices: np.ndarray, vertex_count: int) -> None:
    """ValueError unless the posed body has the vertices the motion code is laid on."""
    if posed_vertices.shape[1] != vertex_count:
        raise ValueError(
            f"posed_vertices has {posed_vertices.shape[1]} vertices, "
            f"the motion code has {vertex_count} (SMPL-X)"
        )


def insert_neural(
    scene: np.ndarray,
    occlusion_rgb: np.ndarray,
    occlusion_alpha: np.ndarray,
    posed_vertices: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    identity_image: np.ndarray,
    config: NeuralConfig,
    models: Any,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The footage with the character synthesised in: (F, H, W, 3) uint8, the scene's size.

    ``models``: a ``ModelRegistry`` (the roles are loaded, on ``config.device``) or already loaded
    :class:`MimoModels`. ``progress(fraction, message)`` after each stage and step; ``cancelled()``
    is polled between steps and raises :class:`NeuralCancelled` when it returns True.
    """
    report = progress or (lambda _f, _m: None)
    # Shapes first, before minutes of loading; the vertex count is known once the models are.
    check_inputs(scene, occlusion_rgb, occlusion_alpha, posed_vertices, faces, K, R, t, identity_image)
    if not isinstance(models, MimoModels):
        report(0.0, "loading the neural route's models")
        models = load_mimo_models(models, config.device, config.dtype)
    check_vertex_count(posed_vertices, models.vertex_count)

    def poll() -> None:
        if cancelled is not None and cancelled():
            raise NeuralCancelled("neural insertion cancelled")

    frames, height, width = scene.shape[:3]
    longest = int(models.net.denoising.config.get("motion_max_seq_length") or 32)
    if min(config.window, frames) > longest:
        raise ValueError(f"window {config.window} is longer than the motion modules' {longest} positions")
    size = processing_size(height, width, config.size)
    dev, dt, net = models.device, models.dtype, models.net
    report(0.02, f"encoding scene and occlusion at {size[1]}x{size[0]}")
    # Conditions (F, 9, h, w): scene latents, occlusion-layer latents, occlusion alpha at latent size.
    alpha = _frames_tensor(occlusion_alpha, size)  # (F,1,h8,w8) in [0,1]
    scene_lat = models.encode_images(_frames_tensor(scene, size) / 127.5 - 1.0)
    occ_lat = models.encode_images((_frames_tensor(occlusion_rgb, size) / 127.5 - 1.0) * alpha)
    lat_size = tuple(scene_lat.shape[-2:])
    alpha_lat = F.interpolate(alpha, size=lat_size, mode="area").to(dev, dt)
    cond = torch.cat([scene_lat, occ_lat, alpha_lat], dim=1).permute(1, 0, 2, 3).unsqueeze(0)  # (1,9,F,h,w)
    poll()

    report(0.05, "rasterising the motion code")
    raster = motion_code.rasterize_body(
        posed_vertices, faces, motion_code.scale_intrinsics(K, (height, width), size), R, t, size
    )
    faces_t = torch.as_tensor(np.asarray(faces, dtype=np.int64))
    with torch.no_grad():
        codes = net.pose_guider.vertex_codes.detach().float().cpu()
        maps = motion_code.code_maps(codes, raster, faces_t).to(dev, dt)  # (F, C, h8, w8)

    report(0.08, "encoding the identity")
    guided = config.guidance > 1.0
    embeds = models.embed_identity(identity_image)  # (1,1,D)
    ref_lat = models.encode_images(_frames_tensor(identity_image[None], size) / 127.5 - 1.0)  # (1,4,h,w)
    if guided:  # MIMO's unconditional branch: a zero image embedding (the reference is kept)
        embeds = torch.cat([torch.zeros_like(embeds), embeds])
        ref_lat = ref_lat.repeat(2, 1, 1, 1)
    batch = embeds.shape[0]
    with torch.no_grad():
        net.write_reference(ref_lat, embeds)
    poll()

    scheduler = models.make_scheduler(config.scheduler)
    scheduler.set_timesteps(config.steps, device=dev)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    latents = torch.randn((1, 4, frames, *lat_size), generator=generator, dtype=torch.float32)
    latents = (latents * scheduler.init_noise_sigma).to(dev, dt)
    windows = frame_windows(frames, config.window, config.overlap)
    weights = torch.as_tensor(
        blend_weights(frames, windows, config.overlap, config.blend), dtype=torch.float32
    )
    weights = weights.to(dev, dt)

    timesteps = list(scheduler.timesteps)
    for i, step_t in enumerate(timesteps):
        outputs = []
        for w in windows:
            window_lat = scheduler.scale_model_input(latents[:, :, w.start : w.stop], step_t)
            sample = torch.cat([window_lat, cond[:, :, w.start : w.stop]], dim=1).repeat(batch, 1, 1, 1, 1)
            pose = maps[w.start : w.stop].repeat(batch, 1, 1, 1)
            with torch.no_grad():
                out = net(sample, step_t.expand(batch), embeds, pose)
            if guided:
                uncond, cond_out = out.chunk(2)
                out = uncond + config.guidance * (cond_out - uncond)
            outputs.append(out)
            poll()
        latents = scheduler.step(blend(outputs, windows, weights), step_t, latents).prev_sample
        report(0.1 + 0.8 * (i + 1) / len(timesteps), f"denoising step {i + 1}/{len(timesteps)}")

    if not bool(torch.isfinite(latents).all()):
        raise FloatingPointError(f"the {config.scheduler} sampler diverged (non-finite latents); try ddim")
    report(0.92, "decoding")
    images = models.decode_latents(latents[0].permute(1, 0, 2, 3))  # (F,3,h8,w8)
    images = (images + 1.0) * 0.5
    if tuple(images.shape[-2:]) != (height, width):
        images = F.interpolate(
            images, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        ).clamp(0, 1)
    out = images.permute(0, 2, 3, 1).cpu().numpy()
    # The occlusion layer goes on top in pixel space (as MIMO's compositing): occluders stay the plate's.
    a = occlusion_alpha[..., None]
    out = out * (1.0 - a) + (occlusion_rgb.astype(np.float32) / 255.0) * a
    report(1.0, "done")
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
