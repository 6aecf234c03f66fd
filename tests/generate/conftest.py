"""Tiny random Stable Diffusion + ControlNet models, built in code (the one place they are made).

Every model has the real diffusers / transformers classes and the real pipeline around it, at a
size that runs in well under a second per step on a CPU: a 2-level UNet (8, 16 channels), a VAE
with one downsampling (32 px images -> 16x16 latents), ControlNets made from the UNet with
``ControlNetModel.from_unet``, and a CLIP text model with a character-level BPE vocabulary.
(Project-wide tiny builders will replace this fixture; keep it in this one file.)
"""

from __future__ import annotations

import pytest
import torch

SIZE = 32  # image side in pixels


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_components(n_controlnets: int = 1, seed: int = 0) -> dict:
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=SIZE // 2, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
    )
    controlnets = [ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
                   for _ in range(n_controlnets)]
    for net in controlnets:  # from_unet zero-initialises the outputs; random ones make the control matter
        with torch.no_grad():
            for p in net.parameters():
                if p.abs().sum() == 0:
                    p.normal_(0, 0.05)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=SIZE,
    )
    # SD's scaling factor is 1 / std of its VAE's latents (0.18215 for SD 1.x), so the UNet sees
    # unit-variance latents; the random VAE gets its own, measured the same way.
    with torch.no_grad():
        probe = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4) * 2 - 1, size=SIZE, mode="nearest")
        std = float(vae.encode(probe).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for model in (unet, vae, text_encoder, *controlnets):
        model.eval()
    return {"unet": unet, "controlnets": controlnets, "vae": vae, "tokenizer": tokenizer,
            "text_encoder": text_encoder, "scheduler": scheduler}


def tiny_pipeline(n_controlnets: int = 1, seed: int = 0):
    from backend.generate.multiview import assemble_pipeline

    return assemble_pipeline(**tiny_components(n_controlnets, seed))


@pytest.fixture(scope="session")
def tiny_pipe():
    """One ControlNet (pose); shared: tests must leave its processors and scheduler as they were."""
    return tiny_pipeline(1)


@pytest.fixture(scope="session")
def tiny_pipe_multi():
    """Two ControlNets (pose + depth) as a MultiControlNet."""
    return tiny_pipeline(2)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These models are tiny: one intra-op thread is faster than two fighting a loaded CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


A_POSE = {"gender": "neutral", "betas": [0.5, -0.3], "global_orient": [0.0, 0.0, 0.0],
          "body_pose": [0.0] * 63, "transl": [0.0, 0.0, 0.0]}
A_POSE["body_pose"][15 * 3 + 2] = -1.0  # left shoulder down (joint 16 -> body_pose index 15)
A_POSE["body_pose"][16 * 3 + 2] = 1.0  # right shoulder down


@pytest.fixture(scope="session")
def conditions4():
    """Conditions of an A-posed body from 4 ring cameras at SIZE x SIZE."""
    from backend.generate.conditions import body_conditions

    return body_conditions(A_POSE, 4, width=SIZE, height=SIZE)
