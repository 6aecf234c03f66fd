"""Tiny random models of the footage roles, in the on-disk formats of their defaults (see
:mod:`backend.models.tiny`, which writes them with the others in ``make_tiny``):

- ``person-segmentation``: an ``UperNetForSemanticSegmentation`` with a ConvNeXt backbone and a
  ``SegformerImageProcessor`` (the classes of ``openmmlab/upernet-convnext-*``), labelled with
  ADE20K's first 13 classes so ``person`` keeps its id (12);
- ``depth-estimator``: a ``DepthAnythingForDepthEstimation`` (DINOv2 backbone, relative depth) and
  its ``DPTImageProcessor`` (keep aspect, multiples of 14), as Depth-Anything-V2-Small-hf;
- ``inpainting``: a ``StableDiffusionInpaintPipeline`` folder (a UNet of 9 input channels, SD's VAE
  shape, CLIP text encoder and tokenizer, PNDM), as stable-diffusion-inpainting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# ADE20K's first classes, in its order: "person" is id 12 as in the real 150-class models.
ADE20K_HEAD = ("wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
               "cabinet", "sidewalk", "person")
SEED = 0  # backend.models.tiny.SEED (not imported here: tiny imports this module)
SEGMENTATION_SIZE = 64  # the real processor resizes to 512 x 512
DEPTH_SIZE = 56  # the real one to 518 (37 patches of 14); here 4 patches


def tiny_person_segmentation() -> tuple[Any, Any]:
    """``(SegformerImageProcessor, UperNetForSemanticSegmentation)``."""
    from transformers import (
        ConvNextConfig,
        SegformerImageProcessor,
        UperNetConfig,
        UperNetForSemanticSegmentation,
    )

    torch.manual_seed(SEED + 31)
    backbone = ConvNextConfig(num_channels=3, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(
        backbone_config=backbone, hidden_size=16, use_auxiliary_head=False,
        num_labels=len(ADE20K_HEAD), id2label=dict(enumerate(ADE20K_HEAD)),
        label2id={name: i for i, name in enumerate(ADE20K_HEAD)},
    )
    processor = SegformerImageProcessor(size={"height": SEGMENTATION_SIZE, "width": SEGMENTATION_SIZE},
                                        do_reduce_labels=False)
    return processor, UperNetForSemanticSegmentation(config).eval()


def save_tiny_person_segmentation(folder: Path) -> Path:
    from backend.models.tiny import save_pretrained_pair

    return save_pretrained_pair(folder, *tiny_person_segmentation())


def tiny_depth_anything() -> tuple[Any, Any]:
    """``(DPTImageProcessor, DepthAnythingForDepthEstimation)`` (relative depth)."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(SEED + 32)
    backbone = Dinov2Config(image_size=DEPTH_SIZE, patch_size=14, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, mlp_ratio=2,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8,
                                 patch_size=14, depth_estimation_type="relative")
    processor = DPTImageProcessor(size={"height": DEPTH_SIZE, "width": DEPTH_SIZE}, keep_aspect_ratio=True,
                                  ensure_multiple_of=14, do_pad=False, resample=3,
                                  image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return processor, DepthAnythingForDepthEstimation(config).eval()


def save_tiny_depth_anything(folder: Path) -> Path:
    from backend.models.tiny import save_pretrained_pair

    return save_pretrained_pair(folder, *tiny_depth_anything())


def save_tiny_inpainting(folder: Path) -> Path:
    """A ``StableDiffusionInpaintPipeline.save_pretrained`` folder (no safety checker)."""
    from diffusers import StableDiffusionInpaintPipeline

    from backend.models import tiny

    encoder, tokenizer = tiny.tiny_text_encoder_and_tokenizer(folder / ".tokenizer-build")
    pipe = StableDiffusionInpaintPipeline(
        vae=tiny.tiny_vae(seed_offset=33),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=tiny.tiny_unet(in_channels=9, seed_offset=34),
        scheduler=tiny.tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    tiny._sd_tokenizer_files(folder)
    return folder


# role -> (sub-folder, writer), merged into backend.models.tiny.TINY_WRITERS.
FOOTAGE_TINY_WRITERS: dict[str, tuple[str, Any]] = {
    "person-segmentation": ("upernet-convnext", save_tiny_person_segmentation),
    "depth-estimator": ("depth-anything", save_tiny_depth_anything),
    "inpainting": ("sd15-inpainting", save_tiny_inpainting),
}
