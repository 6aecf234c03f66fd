"""MIMO's released checkpoint layout (``pretrained_weights/*.pth`` + SD 1.5's unet config) maps onto our
roles: a fake release is written from tiny models with MIMO's key names (Moore-AnimateAnyone's UNet3D:
``temporal_transformer``, ``attention_blocks.N``, ``norms.N``, ``ff_norm``, ``pos_encoder``), loaded
through the registry, and every tensor lands where it belongs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import torch

from backend.mimo.config import NeuralConfig
from backend.mimo.network import load_mimo_models
from backend.mimo.pipeline import insert_neural
from backend.models import mimo
from backend.models.registry import ModelRegistry


def to_animatediff(key: str) -> str:
    """diffusers MotionAdapter key -> AnimateDiff / MIMO key (the inverse of the loader's renames)."""
    head, sep, rest = re.match(r"(.*?motion_modules\.\d+)(\.)(.*)", key).groups()  # type: ignore[union-attr]
    for ours, theirs in (
        (".attn1", ".attention_blocks.0"),
        (".attn2", ".attention_blocks.1"),
        (".norm1", ".norms.0"),
        (".norm2", ".norms.1"),
        (".norm3", ".ff_norm"),
    ):
        rest = ("." + rest).replace(ours, theirs)[1:]
    return f"{head}{sep}temporal_transformer.{rest}"


def write_fake_release(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    folder.mkdir(parents=True)
    spatial = mimo.tiny_mimo_unet(mimo.MIMO_IN_CHANNELS, seed=7)  # MIMO's 8 input channels
    adapter = mimo.tiny_motion_adapter(seed=8)
    reference = mimo.tiny_mimo_unet(mimo.LATENT_CHANNELS, seed=9)
    torch.manual_seed(10)
    guider = mimo.PoseGuider(mimo.STANDIN_VERTICES, 3, mimo.TINY_CHANNELS[0], (8, 8, 8, 16))
    torch.nn.init.normal_(guider.conv_out.weight)
    motion = {to_animatediff(k): v for k, v in adapter.state_dict().items()}
    pe = next(k for k in motion if k.endswith("attention_blocks.0.to_q.weight")).replace(
        "to_q.weight", "pos_encoder.pe"
    )
    denoising = {
        **spatial.state_dict(),
        **motion,
        pe: torch.zeros(1, 32, 16),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.to_q.weight": torch.zeros(16, 16),
    }
    torch.save(denoising, folder / "denoising_unet.pth")
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, folder / "reference_unet.pth")
    torch.save(
        {k: v for k, v in guider.state_dict().items() if k != "vertex_codes"}, folder / "pose_guider.pth"
    )
    (folder / "stable-diffusion-v1-5" / "unet").mkdir(parents=True)
    config = {k: v for k, v in reference.config.items() if not k.startswith("_")}
    (folder / "stable-diffusion-v1-5" / "unet" / "config.json").write_text(
        json.dumps({**config, "in_channels": 4})
    )
    return {
        "spatial": spatial.state_dict(),
        "motion": adapter.state_dict(),
        "reference": reference.state_dict(),
        "guider": guider.state_dict(),
    }


def test_mimo_release_layout_loads_onto_our_roles(tiny_route_models: Path, tmp_path: Path, shot) -> None:  # type: ignore[no-untyped-def]
    release = tmp_path / "pretrained_weights"
    original = write_fake_release(release)
    ours = tiny_route_models.parent
    toml = "\n".join(
        [
            *(f'[models.{r}]\npath = "{release}"' for r in mimo.MIMO_FILES),
            f'[models.mimo-image-encoder]\npath = "{ours / "mimo-image-encoder"}"',
            f'[models.vae]\npath = "{ours / "vae"}"',
        ]
    )
    (tmp_path / "models.toml").write_text(toml)
    registry = ModelRegistry.load(models_file=tmp_path / "models.toml", hf_cache=tmp_path / "empty-hf")
    models = load_mimo_models(registry, "cpu")
    net = models.net
    state = net.denoising.state_dict()
    conv_in = state["conv_in.weight"]
    assert conv_in.shape[1] == mimo.DENOISING_IN_CHANNELS
    assert torch.equal(conv_in[:, : mimo.MIMO_IN_CHANNELS], original["spatial"]["conv_in.weight"])
    assert (conv_in[:, mimo.MIMO_IN_CHANNELS :] == 0).all()  # our occlusion channels start at no effect
    for key, value in original["spatial"].items():
        if key != "conv_in.weight":
            assert torch.equal(state[key], value), key
    motion_keys = [k for k in original["motion"] if "pos_embed" not in k]
    assert motion_keys and all(torch.equal(state[k], original["motion"][k]) for k in motion_keys)
    assert all(torch.equal(net.reference_unet.state_dict()[k], v) for k, v in original["reference"].items())
    guider = net.pose_guider.state_dict()
    assert guider["vertex_codes"].shape == (mimo.STANDIN_VERTICES, 3)  # not in the release: seeded
    assert all(torch.equal(guider[k], v) for k, v in original["guider"].items() if k != "vertex_codes")
    config = NeuralConfig(steps=1, window=4, overlap=2, guidance=1.0, size=64)
    out = insert_neural(*dataclasses.replace(shot).args(), config, models)
    assert out.shape == shot.scene.shape and np.isfinite(out).all()
