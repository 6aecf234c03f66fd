"""``make_tiny`` models load through the real loaders (backend/models/load.py) from the written
``models.toml``: the right classes, the same parameters as the builders made, forward passes of the
right shapes, and the SD ControlNet pipeline generating an image on the CPU."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from backend.models import load, tiny
from backend.models.registry import ROLES, ModelRegistry


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float().cpu(), sb[k].float().cpu()) for k in sa)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_make_tiny_writes_every_role_in_the_real_layouts(tiny_models: Path) -> None:
    root = tiny_models.parent
    table = tomllib.loads(tiny_models.read_text())["models"]
    assert set(table) == set(ROLES) - set(tiny.NOT_TINY)  # smplx: the stand-in; inception: full size
    assert all(not Path(e["path"]).is_absolute() for e in table.values())  # the folder can move
    sd = root / table["base-diffusion"]["path"]
    index = json.loads((sd / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    for sub in ("unet", "vae"):
        assert (sd / sub / "diffusion_pytorch_model.safetensors").is_file()
    assert (sd / "text_encoder" / "model.safetensors").is_file()
    # SD 1.5's tokenizer folder: vocab.json + merges.txt (no tokenizers-library file).
    assert sorted(p.name for p in (sd / "tokenizer").iterdir()) == [
        "merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"
    ]
    scheduler = json.loads((sd / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PNDMScheduler"
    clip = root / table["clip"]["path"]
    assert {p.name for p in clip.iterdir()} == {"open_clip_config.json", "open_clip_model.safetensors"}
    assert json.loads((root / table["normal-estimator"]["path"] / "model_index.json").read_text())[
        "_class_name"
    ] == "MarigoldNormalsPipeline"
    assert (root / table["pose-estimator"]["path"] / "preprocessor_config.json").is_file()
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 16_000_000, total  # a few MB: 17 roles, each well under 2 MB


def test_builders_are_deterministic() -> None:
    assert _same_weights(tiny.tiny_controlnet(), tiny.tiny_controlnet())
    assert not _same_weights(tiny.tiny_controlnet(2), tiny.tiny_controlnet(12))  # one net per role
    assert _same_weights(tiny.tiny_open_clip(), tiny.tiny_open_clip())


def test_tokenizer_is_open_clips_bpe_prefix(tiny_models: Path) -> None:
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_models.parent / "sd15" / "tokenizer")
    assert len(tok) == 1024 and tok.bos_token_id == 1022 and tok.eos_token_id == 1023
    # Words the first merges cover get the ids of the full CLIP vocabulary (the same order).
    text = "a man in the red and a"
    ours = tok(text).input_ids
    assert ours == [1022, *SimpleTokenizer().encode(text), 1023]
    assert max(ours[1:-1]) < 1022
    longer = "a shirt and hat"  # "shirt", "hat" need later merges: split into known pieces
    assert tok.decode(tok(longer).input_ids, skip_special_tokens=True).strip() == longer


@pytest.mark.parametrize(
    "role, seed", [("controlnet-openpose", 2), ("controlnet-depth", 12), ("controlnet-normal", 22)]
)
def test_controlnet_roles_load(tiny_registry: ModelRegistry, role: str, seed: int) -> None:
    from diffusers import ControlNetModel

    net = load.load_controlnet(role, registry=tiny_registry, device="cpu")
    assert type(net) is ControlNetModel and net.dtype == torch.float32
    assert _same_weights(net, tiny.tiny_controlnet(seed))
    latents = torch.zeros(1, 4, 4, 4)
    cond = torch.zeros(1, 3, 32, 32)  # the conditioning image is 8x the latents, as in SD
    text = torch.zeros(1, 77, tiny.CROSS_DIM)
    with torch.no_grad():
        out = net(latents, 10, encoder_hidden_states=text, controlnet_cond=cond, return_dict=True)
    assert out.mid_block_res_sample.shape == (1, tiny.UNET_CHANNELS[-1], 2, 2)
    assert out.down_block_res_samples[0].shape == (1, tiny.UNET_CHANNELS[0], 4, 4)


def test_vae_role_loads(tiny_registry: ModelRegistry) -> None:
    from diffusers import AutoencoderKL

    vae = load.load_vae(registry=tiny_registry, device="cpu")
    assert type(vae) is AutoencoderKL and _count(vae) == _count(tiny.tiny_vae())
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mode()
        image = vae.decode(latent).sample
    assert latent.shape == (1, 4, 4, 4) and image.shape == (1, 3, 32, 32)


def test_controlnet_pipeline_generates_on_cpu(tiny_registry: ModelRegistry) -> None:
    from diffusers import StableDiffusionControlNetPipeline
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    pipe = load.load_controlnet_pipeline(
        ("controlnet-openpose", "controlnet-depth"), registry=tiny_registry, device="cpu",
        attention_slicing=True,
    )
    assert type(pipe) is StableDiffusionControlNetPipeline
    assert isinstance(pipe.controlnet, MultiControlNetModel) and len(pipe.controlnet.nets) == 2
    assert pipe.safety_checker is None and pipe.unet.device.type == "cpu" and pipe.unet.dtype == torch.float32
    # The vae role (configured by make-tiny) replaces the base folder's own VAE.
    assert _same_weights(pipe.vae, tiny.tiny_vae(seed_offset=5))
    assert _count(pipe.unet) == _count(tiny.tiny_unet())
    pose = Image.fromarray(np.zeros((32, 32, 3), np.uint8))

    def run() -> Any:
        return pipe(
            "a person", image=[pose, pose], num_inference_steps=2, height=32, width=32,
            generator=torch.Generator().manual_seed(0), output_type="np",
        ).images

    images = run()
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    assert np.array_equal(images, run())  # seeded: the same image


def test_pipeline_options_are_checked(tiny_registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="offload"):
        load.load_controlnet_pipeline(registry=tiny_registry, device="cpu", offload="model")
    with pytest.raises(ValueError, match="offload must be one of"):
        load.load_controlnet_pipeline(registry=tiny_registry, device="cpu", offload="disk")
    with pytest.raises(ValueError, match="not a ControlNet role"):
        load.load_controlnet("vae", registry=tiny_registry, device="cpu")
    assert load.pick_dtype(torch.device("cuda")) == torch.float16
    assert load.pick_dtype(torch.device("cpu")) == torch.float32
    assert load.pick_dtype(torch.device("cpu"), "fp16") == torch.float16


def test_clip_role_loads_through_open_clip(tiny_registry: ModelRegistry) -> None:
    from open_clip.model import CLIP

    clip = load.load_clip(registry=tiny_registry, device="cpu")
    assert isinstance(clip.model, CLIP) and _same_weights(clip.model, tiny.tiny_open_clip())
    images = [Image.fromarray(np.full((40, 50, 3), v, np.uint8)) for v in (0, 200)]
    feats = clip.image_features(images)
    assert feats.shape == (2, tiny.TINY_OPEN_CLIP_CONFIG["model_cfg"]["embed_dim"])
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert clip.tokenizer(["a photo of a person"]).shape == (1, 77)


def test_normal_estimator_role_loads_marigold(tiny_registry: ModelRegistry) -> None:
    from diffusers import MarigoldNormalsPipeline

    pipe = load.load_normal_estimator(registry=tiny_registry, device="cpu")
    assert type(pipe) is MarigoldNormalsPipeline
    assert _count(pipe.unet) == _count(tiny.tiny_unet(in_channels=8))
    image = Image.fromarray(np.full((24, 40, 3), 128, np.uint8))
    normals = pipe(image, generator=torch.Generator().manual_seed(0)).prediction
    assert normals.shape == (1, 24, 40, 3)  # back at the input's size
    assert np.allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-3)


def test_pose_estimator_role_loads_vitpose(tiny_registry: ModelRegistry) -> None:
    from transformers import VitPoseForPoseEstimation

    pose = load.load_pose_estimator(registry=tiny_registry, device="cpu")
    _, built = tiny.tiny_vitpose()
    assert type(pose.model) is VitPoseForPoseEstimation and _same_weights(pose.model, built)
    image = Image.fromarray(np.zeros((80, 60, 3), np.uint8))
    boxes = [[[5.0, 5.0, 40.0, 60.0]]]  # COCO x, y, w, h per person
    inputs = pose.processor(image, boxes=boxes, return_tensors="pt")
    with torch.no_grad():
        out = pose.model(**inputs)
    h, w = tiny.VITPOSE_SIZE
    assert out.heatmaps.shape == (1, 17, h // 4, w // 4)
    people = pose.processor.post_process_pose_estimation(out, boxes=boxes)
    assert people[0][0]["keypoints"].shape == (17, 2)


def test_every_role_but_smplx_has_a_loader_and_a_tiny_model() -> None:
    assert set(load.LOADERS) == set(ROLES) - {"smplx"}
    assert set(tiny.TINY_WRITERS) == set(ROLES) - set(tiny.NOT_TINY)
