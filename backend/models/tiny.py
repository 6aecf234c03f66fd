"""Tiny random models in the exact on-disk formats of the real ones (``avatar-studio models make-tiny``).

Every builder makes a seeded, randomly initialised model small enough to run on a CPU in a test, with
the same classes and the same ``save_pretrained`` layout as the public weights the roles default to:
a Stable Diffusion 1.5 folder in diffusers format, three ControlNets, a VAE, an open_clip checkpoint
folder (``open_clip_config.json`` + ``open_clip_model.safetensors``, what ``local-dir:`` / ``hf-hub:``
load), a Marigold-normals pipeline folder and a ViTPose model + image processor. So the tests load
them through the very ``from_pretrained`` code (backend/models/load.py) a user's real weights go
through. The CLIP tokenizer's vocabulary and merges are the first merges of open_clip's bundled BPE
file, so it tokenizes like the real one (only coarser). The VAE and the ControlNets' conditioning
embeddings downsample by 8, as the real ones do, so latent-size arithmetic is exercised (images of
at least 64 px: 8x8 latents). Two properties make the random models behave like trained ones where
tests look: the ControlNets' zero-initialised output layers are random (the control image changes the
output) and each VAE's ``scaling_factor`` is 1 / std of its latents, as SD's 0.18215 (an encoded image
keeps its weight against the noise, so image guidance reaches the other views).

:func:`make_tiny` writes them all plus ``DIR/models.toml`` (relative paths: the folder can be moved)
pointing every role at its tiny model; ``smplx`` is left out (the generated stand-in body is used).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

SEED = 0
# The SD-style shapes: 4 latent channels, text embeddings of CROSS_DIM.
CROSS_DIM = 32
UNET_CHANNELS = (16, 32)
UNET_BLOCKS_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
UNET_BLOCKS_UP = ("UpBlock2D", "CrossAttnUpBlock2D")
VAE_CHANNELS = (8, 8, 8, 8)  # four blocks: downsampling by 8, as SD's VAE
CONTROL_EMBED_CHANNELS = (8, 8, 8, 8)  # four stages: the control image is downsampled by 8 too
NUM_MERGES = 510  # + 512 byte tokens + 2 specials = a 1024-token vocabulary
CONTROLNET_ROLES = ("controlnet-openpose", "controlnet-depth", "controlnet-normal")


def _seed(offset: int) -> None:
    torch.manual_seed(SEED + offset)


def tiny_unet(in_channels: int = 4, seed_offset: int = 1) -> Any:
    """A ``UNet2DConditionModel`` shaped like SD 1.5's (cross-attention down/up blocks, 4 channels)."""
    from diffusers import UNet2DConditionModel

    _seed(seed_offset)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        down_block_types=UNET_BLOCKS_DOWN,
        up_block_types=UNET_BLOCKS_UP,
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_controlnet(seed_offset: int = 2) -> Any:
    """A ``ControlNetModel`` matching :func:`tiny_unet` (same down blocks, same cross-attention dim)."""
    from diffusers import ControlNetModel

    _seed(seed_offset)
    net = ControlNetModel(
        in_channels=4,
        block_out_channels=UNET_CHANNELS,
        layers_per_block=1,
        down_block_types=UNET_BLOCKS_DOWN,
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
        conditioning_embedding_out_channels=CONTROL_EMBED_CHANNELS,
    )
    return _unzero_control_outputs(net)


def _unzero_control_outputs(net: Any, std: float = 0.05) -> Any:
    """Random weights for the layers a ControlNet starts at zero (its conditioning embedding's last
    conv and the zero convs feeding the UNet). A real ControlNet learns them; left at zero a tiny one
    adds nothing to the UNet, the control image would not matter and tests could not see it does."""
    layers = [net.controlnet_cond_embedding.conv_out, *net.controlnet_down_blocks, net.controlnet_mid_block]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.normal_(0.0, std)
    return net


def _scaled_to_unit_latents(vae: Any, size: int = 64) -> Any:
    """Set ``scaling_factor`` to 1 / std of the VAE's latents, the way SD's 0.18215 was measured, so
    the UNet sees unit-variance latents. With the default 1.0 a random VAE's latents are far smaller
    than the noise: an encoded image (image guidance) would be drowned at every step and never reach
    the other views. The probe is blocky noise in [-1, 1] (a seeded generator: the value is fixed)."""
    generator = torch.Generator().manual_seed(SEED)
    coarse = torch.rand(4, 3, size // 8, size // 8, generator=generator) * 2 - 1
    probe = torch.nn.functional.interpolate(coarse, size=size, mode="nearest")
    with torch.no_grad():
        std = float(vae.encode(probe).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


def tiny_vae(seed_offset: int = 3) -> Any:
    """An ``AutoencoderKL`` with SD's 4 latent channels and downsampling factor 8."""
    from diffusers import AutoencoderKL

    _seed(seed_offset)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * len(VAE_CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(VAE_CHANNELS),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    )
    return _scaled_to_unit_latents(vae.eval())


def tiny_scheduler() -> Any:
    """SD 1.5's scheduler, with its configuration (PNDM, scaled-linear betas)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table (the same as open_clip.tokenizer's)."""
    from open_clip.tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def clip_bpe_subset(num_merges: int = NUM_MERGES) -> tuple[dict[str, int], list[str]]:
    """``(vocab, merges)`` of a CLIP tokenizer with the first ``num_merges`` merges of open_clip's
    bundled ``bpe_simple_vocab_16e6.txt.gz``, in CLIP's id order: the 256 byte characters, the same
    with ``</w>``, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. The first
    merges only build on bytes and earlier merges, so any prefix is a consistent BPE."""
    from open_clip.tokenizer import default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [m for m in lines[1 : 1 + num_merges] if m]  # line 0 is the "#version" header
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tiny_tokenizer(folder: Path) -> Path:
    """Write a CLIP tokenizer folder from :func:`clip_bpe_subset` with the files of SD 1.5's
    ``tokenizer/`` (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json)."""
    vocab, merges = clip_bpe_subset()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


def tiny_tokenizer(folder: Path) -> Any:
    """A transformers ``CLIPTokenizer`` written by :func:`write_tiny_tokenizer` and loaded back."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(write_tiny_tokenizer(folder))


def tiny_text_encoder(vocab_size: int, bos: int, eos: int, seed_offset: int = 4) -> Any:
    """A ``CLIPTextModel`` with SD's output width :data:`CROSS_DIM` (77 positions, as CLIP)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    _seed(seed_offset)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=CROSS_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
        projection_dim=CROSS_DIM,
    )
    return CLIPTextModel(config).eval()


def tiny_text_encoder_and_tokenizer(folder: Path) -> tuple[Any, Any]:
    """``(CLIPTextModel, CLIPTokenizer)``; the tokenizer files are written under ``folder`` (the
    transformers tokenizer is built from files)."""
    tokenizer = tiny_tokenizer(folder)
    encoder = tiny_text_encoder(
        len(tokenizer), tokenizer.convert_tokens_to_ids("<|startoftext|>"), tokenizer.eos_token_id
    )
    return encoder, tokenizer


def save_tiny_base_diffusion(folder: Path) -> Path:
    """A Stable Diffusion 1.5 folder in diffusers format (model_index.json, unet, vae, text_encoder,
    tokenizer, scheduler; no safety checker), via ``StableDiffusionPipeline.save_pretrained``."""
    from diffusers import StableDiffusionPipeline

    encoder, tokenizer = tiny_text_encoder_and_tokenizer(folder / ".tokenizer-build")
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    _sd_tokenizer_files(folder)
    return folder


def save_tiny_controlnet(folder: Path, seed_offset: int = 2) -> Path:
    tiny_controlnet(seed_offset).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_vae(folder: Path) -> Path:
    tiny_vae(seed_offset=5).save_pretrained(folder, safe_serialization=True)  # differs from the base's
    return folder


def tiny_open_clip_config(embed_dim: int) -> dict[str, Any]:
    """A ViT-B-32-like open_clip config, scaled down, embedding ``embed_dim`` wide. The text tower
    keeps CLIP's full 49408-token vocabulary: open_clip's tokenizer for a local folder is the
    bundled full BPE."""
    return {
        "model_cfg": {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic",
            "resize_mode": "shortest",
        },
    }


TINY_OPEN_CLIP_CONFIG: dict[str, Any] = tiny_open_clip_config(16)


def tiny_open_clip() -> Any:
    """An open_clip ``CLIP`` model built from :data:`TINY_OPEN_CLIP_CONFIG` (seeded)."""
    import open_clip

    _seed(6)
    return open_clip.model.CLIP(**TINY_OPEN_CLIP_CONFIG["model_cfg"]).eval()


def write_open_clip_folder(folder: Path, config: dict[str, Any], model: Any) -> Path:
    """``open_clip_config.json`` + ``open_clip_model.safetensors``: the layout of an open_clip hub
    repo, which ``create_model_and_transforms("local-dir:FOLDER")`` loads."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def save_tiny_open_clip(folder: Path) -> Path:
    return write_open_clip_folder(folder, TINY_OPEN_CLIP_CONFIG, tiny_open_clip())


def save_pretrained_pair(folder: Path, processor: Any, model: Any) -> Path:
    """A transformers model and its processor saved into one folder (what ``from_pretrained``
    of both reads)."""
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def save_tiny_marigold_normals(folder: Path) -> Path:
    """A ``MarigoldNormalsPipeline`` folder (its UNet takes image + noise latents: 8 channels)."""
    from diffusers import DDIMScheduler, MarigoldNormalsPipeline

    encoder, tokenizer = tiny_text_encoder_and_tokenizer(folder / ".tokenizer-build")
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    pipe = MarigoldNormalsPipeline(
        unet=tiny_unet(in_channels=8, seed_offset=7),
        vae=tiny_vae(seed_offset=8),
        scheduler=scheduler,
        text_encoder=encoder,
        tokenizer=tokenizer,
        prediction_type="normals",
        use_full_z_range=True,
        default_denoising_steps=1,
        default_processing_resolution=32,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    _sd_tokenizer_files(folder)
    return folder


VITPOSE_SIZE = (64, 48)  # (height, width); the real ViTPose uses 256 x 192, the same aspect


def tiny_vitpose() -> tuple[Any, Any]:
    """``(VitPoseImageProcessor, VitPoseForPoseEstimation)``: 17 COCO keypoints, simple decoder."""
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessor,
    )

    _seed(9)
    backbone = VitPoseBackboneConfig(
        image_size=list(VITPOSE_SIZE),
        patch_size=[16, 16],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        out_indices=[2],
    )
    config = VitPoseConfig(backbone_config=backbone, num_labels=17, use_simple_decoder=True, scale_factor=4)
    processor = VitPoseImageProcessor(size={"height": VITPOSE_SIZE[0], "width": VITPOSE_SIZE[1]})
    return processor, VitPoseForPoseEstimation(config).eval()


def save_tiny_vitpose(folder: Path) -> Path:
    return save_pretrained_pair(folder, *tiny_vitpose())


def _sd_tokenizer_files(pipeline_folder: Path) -> None:
    """Leave ``tokenizer/`` with the files the real SD folders have (no tokenizer.json)."""
    _rmtree(pipeline_folder / ".tokenizer-build")
    _rmtree(pipeline_folder / "tokenizer")
    write_tiny_tokenizer(pipeline_folder / "tokenizer")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def save_random_inception(folder: Path | str, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 with random weights, saved as its release file is (a plain state
    dict of float32 tensors, ``INCEPTION_FILE``) in ``folder``: the real architecture and format for
    tests of the ``inception`` role. Not in :data:`TINY_WRITERS`: the architecture is fixed, so the
    file is the full 95 MB (tests write it on demand, nothing commits it)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from backend.models.registry import INCEPTION_FILE

    class _RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # keep the random init
            return None

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / ".empty.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    try:
        model = _RandomInit("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink()
    path = folder / INCEPTION_FILE
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def save_random_lpips_backbone(folder: Path | str, net: str = "alex", seed: int = 0) -> Path:
    """torchvision's AlexNet (or VGG16) ``features`` with random weights, saved under torchvision's
    file name and keys (``features.I.weight``) as its ImageNet release is: the real format for tests
    of the ``lpips`` role (the classifier, unused by LPIPS, is left out: 9 MB instead of 233)."""
    import torchvision

    from backend.models.registry import LPIPS_FILES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16}[net](weights=None)
    path = folder / LPIPS_FILES[net]
    torch.save({f"features.{k}": v.contiguous() for k, v in model.features.state_dict().items()}, path)
    return path


# Roles make_tiny does not write: smplx (the generated stand-in body is used), inception and lpips
# (their only architectures are full size: save_random_inception / save_random_lpips_backbone).
NOT_TINY = ("smplx", "inception", "lpips")

# role -> (sub-folder of DIR, writer). Every role the registry has, except the licensed smplx.
TINY_WRITERS: dict[str, tuple[str, Any]] = {
    "base-diffusion": ("sd15", save_tiny_base_diffusion),
    "controlnet-openpose": ("controlnet-openpose", lambda p: save_tiny_controlnet(p, 2)),
    "controlnet-depth": ("controlnet-depth", lambda p: save_tiny_controlnet(p, 12)),
    "controlnet-normal": ("controlnet-normal", lambda p: save_tiny_controlnet(p, 22)),
    "vae": ("vae", save_tiny_vae),
    "clip": ("open-clip", save_tiny_open_clip),
    "normal-estimator": ("marigold-normals", save_tiny_marigold_normals),
    "pose-estimator": ("vitpose", save_tiny_vitpose),
}
MIMO_ROLES = ("mimo-denoising-unet", "mimo-reference-unet", "mimo-motion-module", "mimo-pose-guider",
              "mimo-image-encoder")


def _mimo_writer(role: str) -> Any:
    """The neural route's writer for ``role`` (backend/models/mimo.py), imported when it runs."""
    def write(folder: Path) -> Path:
        from backend.models.mimo import TINY_MIMO_WRITERS

        return TINY_MIMO_WRITERS[role][1](folder)

    return write


TINY_WRITERS.update({role: (role, _mimo_writer(role)) for role in MIMO_ROLES})


from backend.models.tiny_footage import FOOTAGE_TINY_WRITERS  # noqa: E402 (it builds on the helpers above)

TINY_WRITERS.update(FOOTAGE_TINY_WRITERS)


def make_tiny(folder: Path | str) -> Path:
    """Write every tiny model under ``folder`` and ``folder/models.toml`` naming them; returns that file."""
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Tiny random models written by `avatar-studio models make-tiny` (for tests; they make noise).",
        "# Paths are relative to this file. smplx is not set: jobs use the generated stand-in body.",
        "",
    ]
    for role, (sub, write) in TINY_WRITERS.items():
        target = folder / sub
        _rmtree(target)  # a re-run replaces the models, never mixes old and new files
        write(target)
        lines += [f"[models.{role}]", f'path = "{sub}"', ""]
    config = folder / "models.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config
