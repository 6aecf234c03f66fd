"""Loaders: each role's weights from the folder the registry resolves, through the libraries' own
``from_pretrained`` (diffusers, transformers) or open_clip's ``local-dir:`` loader.

Never the network: a role that is not on this machine raises :class:`ModelMissingError` naming the
role, the model and ``avatar-studio models download ROLE`` (unless the caller passes
``download=True``, which runs that download first). Weights that are there but do not load (a
truncated file, a wrong folder) raise :class:`ModelLoadError`, a ModelMissingError saying where.
Device and dtype are chosen at run time: CUDA in float16 when present, else CPU in float32, each
overridable (``device="cpu"``, ``dtype="fp32"``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.registry import INCEPTION_FILE, ROLES, ModelLoadError, ModelMissingError, ModelRegistry

CONTROLNET_ROLES = ("controlnet-openpose", "controlnet-depth", "controlnet-normal")
OFFLOAD_MODES = ("none", "model", "sequential")
_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def _dtype_kw(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """diffusers' ``from_pretrained`` dtype keyword: ``dtype`` where it has replaced ``torch_dtype``
    (which then warns), ``torch_dtype`` in older releases."""
    from diffusers.utils import deprecation_utils

    new = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype": dtype} if new else {"torch_dtype": dtype}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``dtype`` when given (``"fp16"``, ``torch.float32``...), else float16 on CUDA, float32 elsewhere
    (half precision on a CPU is slow and some kernels lack it)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        try:
            return _DTYPES[dtype.lower()]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; one of {sorted(_DTYPES)}") from None
    return torch.float16 if device.type == "cuda" else torch.float32


def model_path(role: str, registry: ModelRegistry | None = None, download: bool = False) -> Path:
    """The local folder of ``role``; with ``download`` a missing hub model is downloaded first."""
    registry = registry if registry is not None else ModelRegistry.load()
    try:
        return registry.require(role)
    except ModelMissingError:
        if not download:
            raise
    from backend.models.download import download_role

    download_role(role, registry)
    return registry.require(role)


def _loaded(role: str, location: Path, registry: ModelRegistry, load: Any) -> Any:
    """Run ``load()``; a failure becomes a ModelLoadError naming the role, folder and the fix."""
    try:
        return load()
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as exc:
        raise ModelLoadError(role, registry.specs[role].label, location, registry.config_path, exc) from exc


def load_controlnet(
    role: str = "controlnet-openpose",
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Any:
    """A ``ControlNetModel`` for one of :data:`CONTROLNET_ROLES`."""
    from diffusers import ControlNetModel

    if role not in CONTROLNET_ROLES:
        raise ValueError(f"{role!r} is not a ControlNet role; one of {CONTROLNET_ROLES}")
    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    path = model_path(role, registry, download)
    return _loaded(
        role, path, registry,
        lambda: ControlNetModel.from_pretrained(
            path, **_dtype_kw(pick_dtype(dev, dtype)), local_files_only=True
        ),
    ).to(dev)


def load_vae(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Any:
    """The ``vae`` role's ``AutoencoderKL``."""
    from diffusers import AutoencoderKL

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    path = model_path("vae", registry, download)
    return _loaded(
        "vae", path, registry,
        lambda: AutoencoderKL.from_pretrained(
            path, **_dtype_kw(pick_dtype(dev, dtype)), local_files_only=True
        ),
    ).to(dev)


def _optional_vae(registry: ModelRegistry, device: torch.device, dtype: torch.dtype, download: bool) -> Any:
    """The ``vae`` override when present, or configured (then it must load); else None (the base
    folder's own VAE)."""
    found = registry.resolve("vae")
    if not found.present and not registry.specs["vae"].configured and not download:
        return None
    return load_vae(registry=registry, device=device, dtype=dtype, download=download)


def load_controlnet_pipeline(
    roles: Sequence[str] = ("controlnet-openpose",),
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    offload: str = "none",
    attention_slicing: bool = False,
    download: bool = False,
) -> Any:
    """``StableDiffusionControlNetPipeline`` of ``base-diffusion`` + the ControlNets of ``roles``
    (a MultiControlNet when several, in that order) + the ``vae`` override when there is one.

    ``offload``: ``"none"`` (everything on ``device``), ``"model"`` (accelerate's model CPU
    offload: one sub-model on the GPU at a time) or ``"sequential"`` (layer by layer: least VRAM,
    slowest); both need a CUDA device. ``attention_slicing`` computes attention in slices (less
    memory, a little slower). No safety checker is loaded.
    """
    from diffusers import StableDiffusionControlNetPipeline

    if not roles:
        raise ValueError("at least one ControlNet role is needed")
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    if offload != "none" and dev.type != "cuda":
        raise ValueError(f"offload={offload!r} moves sub-models to a CUDA device; the device is {dev}")
    dt = pick_dtype(dev, dtype)
    base = model_path("base-diffusion", registry, download)
    load_on = torch.device("cpu") if offload != "none" else dev  # offload moves them itself
    controlnets = [
        load_controlnet(r, registry=registry, device=load_on, dtype=dt, download=download) for r in roles
    ]
    extra: dict[str, Any] = {}
    vae = _optional_vae(registry, load_on, dt, download)
    if vae is not None:
        extra["vae"] = vae
    pipe = _loaded(
        "base-diffusion", base, registry,
        lambda: StableDiffusionControlNetPipeline.from_pretrained(
            base,
            controlnet=controlnets[0] if len(controlnets) == 1 else controlnets,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **_dtype_kw(dt),
            local_files_only=True,
            **extra,
        ),
    )
    if attention_slicing:
        pipe.enable_attention_slicing()
    if offload == "model":
        pipe.enable_model_cpu_offload(device=dev)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=dev)
    else:
        pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class ClipModel:
    """An open_clip model with its evaluation preprocessing and tokenizer."""

    model: Any
    preprocess: Any  # PIL image -> normalised tensor (C,H,W)
    tokenizer: Any  # list[str] -> token ids (N, context_length)
    device: torch.device

    @torch.no_grad()
    def image_features(self, images: Sequence[Any]) -> torch.Tensor:
        """Unit-norm embeddings (N, D) of PIL images (cosine similarity = dot product)."""
        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        dtype = next(self.model.parameters()).dtype
        feats = self.model.encode_image(batch.to(dtype)).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def load_clip(
    *,
    role: str = "clip",
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> ClipModel:
    """The ``clip`` role: an open_clip checkpoint folder (``open_clip_config.json`` + weights, the
    layout of an open_clip hub repo), through ``open_clip.create_model_and_transforms("local-dir:...")``."""
    import open_clip

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path(role, registry, download)  # "clip", or "mimo-image-encoder" (same format)
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dt, "fp32")

    def load() -> ClipModel:
        model, _, preprocess = open_clip.create_model_and_transforms(
            f"local-dir:{path}", device=dev, precision=precision
        )
        return ClipModel(model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{path}"), dev)

    return _loaded(role, path, registry, load)


def load_normal_estimator(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Any:
    """The ``normal-estimator`` role: diffusers' ``MarigoldNormalsPipeline`` (camera-space normals,
    x right, y up, z towards the camera)."""
    from diffusers import MarigoldNormalsPipeline

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    path = model_path("normal-estimator", registry, download)
    pipe = _loaded(
        "normal-estimator", path, registry,
        lambda: MarigoldNormalsPipeline.from_pretrained(
            path, **_dtype_kw(pick_dtype(dev, dtype)), local_files_only=True
        ),
    ).to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class PoseEstimator:
    """ViTPose: ``processor(images, boxes=...)`` -> ``model(**inputs)`` -> heatmaps, decoded by
    ``processor.post_process_pose_estimation(outputs, boxes=...)`` into COCO-17 keypoints."""

    processor: Any
    model: Any
    device: torch.device


def load_pose_estimator(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> PoseEstimator:
    """The ``pose-estimator`` role: transformers' ``VitPoseForPoseEstimation`` + its image processor."""
    from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path("pose-estimator", registry, download)

    def load() -> PoseEstimator:
        processor = VitPoseImageProcessor.from_pretrained(path, local_files_only=True)
        model = VitPoseForPoseEstimation.from_pretrained(path, local_files_only=True)
        return PoseEstimator(processor, model.to(device=dev, dtype=dt).eval(), dev)

    return _loaded("pose-estimator", path, registry, load)


def _as(model: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``model`` on ``device`` in ``dtype``, casting only when needed (diffusers warns on every cast)."""
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype=dtype)
    return model.to(device)


def load_mimo_unet(role: str, *, registry: ModelRegistry | None = None,
                   device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                   download: bool = False) -> Any:
    """``mimo-denoising-unet`` / ``mimo-reference-unet``: a ``UNet2DConditionModel`` from a diffusers
    folder, or from MIMO's released ``.pth`` layout (backend/models/mimo.py maps it)."""
    from diffusers import UNet2DConditionModel

    from backend.models import mimo

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path(role, registry, download)

    def load() -> Any:
        if mimo.mimo_folder(path, role) is not None:
            state = mimo.mimo_state_dicts(path, registry.resolve("base-diffusion").location)
            return mimo.unet_from_mimo(state, "denoising" if role == "mimo-denoising-unet" else "reference")
        return UNet2DConditionModel.from_pretrained(path, **_dtype_kw(dt), local_files_only=True)

    return _as(_loaded(role, path, registry, load), dev, dt)


def load_motion_adapter(*, registry: ModelRegistry | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        download: bool = False) -> Any:
    """``mimo-motion-module``: diffusers' ``MotionAdapter`` (or MIMO's motion modules, renamed)."""
    from diffusers import MotionAdapter

    from backend.models import mimo

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path("mimo-motion-module", registry, download)

    def load() -> Any:
        if mimo.mimo_folder(path, "mimo-motion-module") or mimo.mimo_folder(path, "mimo-denoising-unet"):
            state = mimo.mimo_state_dicts(path, registry.resolve("base-diffusion").location)
            return mimo.motion_adapter_from_mimo(state, state.unet_config)
        return MotionAdapter.from_pretrained(path, **_dtype_kw(dt), local_files_only=True)

    return _as(_loaded("mimo-motion-module", path, registry, load), dev, dt)


def load_pose_guider(*, registry: ModelRegistry | None = None,
                     device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                     download: bool = False) -> Any:
    """``mimo-pose-guider``: :class:`backend.models.mimo.PoseGuider` (vertex codes + convolutions)."""
    from backend.models import mimo

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path("mimo-pose-guider", registry, download)

    def load() -> Any:
        if mimo.mimo_folder(path, "mimo-pose-guider") is not None:
            weights = mimo.read_pth(path / mimo.MIMO_FILES["mimo-pose-guider"])
            return mimo.pose_guider_from_mimo(mimo.MimoState({}, {}, {}, {}, weights))
        return mimo.PoseGuider.from_pretrained(path, **_dtype_kw(dt), local_files_only=True)

    return _as(_loaded("mimo-pose-guider", path, registry, load), dev, dt)

from backend.models.load_footage import FOOTAGE_LOADERS  # noqa: E402 (its loaders use the helpers above)


# role -> the loader that reads it (smplx: backend.body.model). `models check --load` and the tests
# walk this table, so a role without a loader shows up.
def load_inception(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Any:
    """The ``inception`` role: torch-fidelity's ``FeatureExtractorInceptionV3`` (2048-d pool features
    for FID/KID, ``logits_unbiased`` for IS) from ``INCEPTION_FILE`` in the role's folder, never the
    network. torch-fidelity reads the file with a full unpickle, so it is first read here with
    ``weights_only=True``: a file holding anything but tensors is refused before that. Float32 (the
    features FID is defined on) unless ``dtype`` says float64."""
    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    internal = "float64" if pick_dtype(torch.device("cpu"), dtype) == torch.float64 else "float32"
    folder = model_path("inception", registry, download)
    weights = folder / INCEPTION_FILE

    def load() -> Any:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if not weights.is_file():
            raise FileNotFoundError(f"{INCEPTION_FILE} is not in the folder")
        torch.load(weights, map_location="cpu", weights_only=True)  # tensors only, or UnpicklingError
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                            feature_extractor_weights_path=str(weights),
                                            feature_extractor_internal_dtype=internal)
        return model.to(dev).eval()

    try:
        return _loaded("inception", folder, registry, load)
    except ModelLoadError:
        raise
    except pickle.UnpicklingError as exc:
        raise ModelLoadError("inception", registry.specs["inception"].label, folder, registry.config_path,
                             exc) from exc


from backend.models.load_metrics import METRICS_LOADERS  # noqa: E402 (uses the helpers above)

LOADERS: dict[str, Any] = {
    "base-diffusion": lambda **kw: load_controlnet_pipeline(**kw),
    "controlnet-openpose": lambda **kw: load_controlnet("controlnet-openpose", **kw),
    "controlnet-depth": lambda **kw: load_controlnet("controlnet-depth", **kw),
    "controlnet-normal": lambda **kw: load_controlnet("controlnet-normal", **kw),
    "vae": load_vae,
    "clip": load_clip,
    "normal-estimator": load_normal_estimator,
    "pose-estimator": load_pose_estimator,
    "mimo-denoising-unet": lambda **kw: load_mimo_unet("mimo-denoising-unet", **kw),
    "mimo-reference-unet": lambda **kw: load_mimo_unet("mimo-reference-unet", **kw),
    "mimo-motion-module": load_motion_adapter,
    "mimo-pose-guider": load_pose_guider,
    "mimo-image-encoder": lambda **kw: load_clip(role="mimo-image-encoder", **kw),
    **FOOTAGE_LOADERS,
    "inception": load_inception,
    **METRICS_LOADERS,
}
assert set(LOADERS) == set(ROLES) - {"smplx"}, "every role but smplx has a loader here"


# Marigold's camera frame (x right, y up, z towards the viewer) -> OpenCV's (x right, y down,
# z forward), the camera frame of docs/protocol.md section 5.
MARIGOLD_TO_OPENCV = np.array([1.0, -1.0, -1.0], dtype=np.float32)


def estimate_normals(pipe: Any, rgb: np.ndarray, seed: int = 0) -> np.ndarray:
    """Camera-space unit normals (H,W,3), OpenCV axes, of an (H,W,3) float RGB image in [0,1],
    by the ``normal-estimator`` pipeline (:func:`load_normal_estimator`); seeded."""
    from PIL import Image

    image = Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    pred = pipe(image, generator=generator).prediction  # (1,H,W,3) numpy, input resolution
    n = np.asarray(pred[0], dtype=np.float32) * MARIGOLD_TO_OPENCV
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
