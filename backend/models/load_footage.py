"""Loaders of the footage roles (issue 13; docs/models.md): ``person-segmentation`` (a transformers
semantic-segmentation model, the person class kept), ``depth-estimator`` (transformers
``AutoModelForDepthEstimation``, Depth Anything) and ``inpainting`` (diffusers'
``StableDiffusionInpaintPipeline``). Same rules as :mod:`backend.models.load` (whose helpers they
use): never the network, a missing role is one :class:`ModelMissingError`, files that do not load a
:class:`ModelLoadError`, device and dtype picked at run time.

The wrappers turn a model into the one call the footage code needs (an (H, W) map per RGB frame),
so :mod:`backend.footage.decompose` does not know about processors and logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.models.registry import ModelRegistry

# Label names that mean "a person" in the segmentation datasets (ADE20K: "person", COCO: "person",
# Cityscapes: "person"/"rider", LIP/ATR-style human parsing: everything but "background").
PERSON_LABELS = ("person", "people", "human", "pedestrian", "rider", "individual")


def person_label_ids(id2label: dict[Any, str]) -> list[int]:
    """Ids of the labels naming a person (a label may list synonyms: ``"person;individual"``)."""
    ids = []
    for key, name in id2label.items():
        words = {w.strip().lower() for w in str(name).replace(",", ";").split(";")}
        if words & set(PERSON_LABELS):
            ids.append(int(key))
    return sorted(ids)


@dataclass
class PersonSegmenter:
    """``__call__(rgb (H, W, 3) uint8) -> (H, W) float32``: the probability that a pixel is a
    person (softmax over the classes, summed over the person labels, at the image's size)."""

    processor: Any
    model: Any
    device: torch.device
    person_ids: list[int]

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=[rgb], return_tensors="pt").to(self.device)
        dtype = next(self.model.parameters()).dtype
        logits = self.model(pixel_values=inputs["pixel_values"].to(dtype)).logits.float()
        logits = torch.nn.functional.interpolate(logits, size=rgb.shape[:2], mode="bilinear",
                                                 align_corners=False)
        prob = logits.softmax(1)[0, self.person_ids].sum(0)
        return prob.clamp(0, 1).cpu().numpy().astype(np.float32)


@dataclass
class DepthEstimator:
    """``__call__(rgb (H, W, 3) uint8) -> (H, W) float32`` the model's raw prediction at the
    image's size: relative inverse depth (Depth Anything's default, ``kind == "relative"``: larger
    is nearer, known up to scale and shift) or metres (``kind == "metric"``)."""

    processor: Any
    model: Any
    device: torch.device
    kind: str  # "relative" | "metric"

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=[rgb], return_tensors="pt").to(self.device)
        dtype = next(self.model.parameters()).dtype
        pred = self.model(pixel_values=inputs["pixel_values"].to(dtype)).predicted_depth.float()
        pred = torch.nn.functional.interpolate(pred[:, None], size=rgb.shape[:2], mode="bicubic",
                                               align_corners=False)
        return pred[0, 0].cpu().numpy().astype(np.float32)


def load_person_segmentation(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> PersonSegmenter:
    """The ``person-segmentation`` role: ``AutoModelForSemanticSegmentation`` + its image processor
    (UperNet-ConvNeXt on ADE20K by default; any semantic-segmentation checkpoint whose labels name
    a person)."""
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from backend.models.load import _loaded, model_path, pick_device, pick_dtype

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path("person-segmentation", registry, download)

    def load() -> PersonSegmenter:
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForSemanticSegmentation.from_pretrained(path, local_files_only=True)
        ids = person_label_ids(model.config.id2label)
        if not ids:
            raise ValueError(f"none of its labels names a person ({PERSON_LABELS}); "
                             f"labels: {list(model.config.id2label.values())[:12]}")
        return PersonSegmenter(processor, model.to(device=dev, dtype=dt).eval(), dev, ids)

    return _loaded("person-segmentation", path, registry, load)


def load_depth_estimator(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> DepthEstimator:
    """The ``depth-estimator`` role: ``AutoModelForDepthEstimation`` + its image processor (Depth
    Anything V2 by default; its config's ``depth_estimation_type`` says relative or metric)."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from backend.models.load import _loaded, model_path, pick_device, pick_dtype

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    path = model_path("depth-estimator", registry, download)

    def load() -> DepthEstimator:
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True)
        metric = getattr(model.config, "depth_estimation_type", "relative") == "metric"
        kind = "metric" if metric else "relative"
        return DepthEstimator(processor, model.to(device=dev, dtype=dt).eval(), dev, kind)

    return _loaded("depth-estimator", path, registry, load)


def load_inpainting(
    *,
    registry: ModelRegistry | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    download: bool = False,
) -> Any:
    """The ``inpainting`` role: diffusers' ``StableDiffusionInpaintPipeline`` (SD 1.5 inpainting:
    a UNet of 9 input channels: latents, mask, masked-image latents); no safety checker."""
    from diffusers import StableDiffusionInpaintPipeline

    from backend.models.load import _dtype_kw, _loaded, model_path, pick_device, pick_dtype

    registry = registry if registry is not None else ModelRegistry.load()
    dev = pick_device(device)
    path = model_path("inpainting", registry, download)
    pipe = _loaded(
        "inpainting", path, registry,
        lambda: StableDiffusionInpaintPipeline.from_pretrained(
            path, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            **_dtype_kw(pick_dtype(dev, dtype)), local_files_only=True,
        ),
    ).to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inpaint_image(pipe: Any, image: np.ndarray, holes: np.ndarray, *, seed: int = 0, steps: int = 20,
                  max_side: int = 512, prompt: str = "background, empty scene") -> np.ndarray:
    """``image`` (H, W, 3) float in [0, 255] with ``holes`` (H, W) bool filled by the inpainting
    pipeline: run at a size of at most ``max_side`` (multiples of 8, as the VAE needs), resized
    back; only the hole pixels change. Seeded: the same inputs give the same pixels."""
    from PIL import Image

    h, w = holes.shape
    scale = min(1.0, max_side / max(h, w))
    ph, pw = (max(64, round(s * scale / 8) * 8) for s in (h, w))
    rgb = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)).resize((pw, ph), Image.BICUBIC)
    mask = Image.fromarray((holes * 255).astype(np.uint8)).resize((pw, ph), Image.NEAREST)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = pipe(prompt=prompt, image=rgb, mask_image=mask, height=ph, width=pw, num_inference_steps=steps,
               generator=generator, output_type="np").images[0]
    back = Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    filled = image.copy()
    filled[holes] = np.asarray(back, np.float64)[holes]
    return filled


# role -> loader, merged into backend.models.load.LOADERS.
FOOTAGE_LOADERS: dict[str, Any] = {
    "person-segmentation": load_person_segmentation,
    "depth-estimator": load_depth_estimator,
    "inpainting": load_inpainting,
}
