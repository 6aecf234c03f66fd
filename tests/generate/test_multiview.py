"""generate_views on tiny random models: seeds, schedulers, the processor's install/removal,
several ControlNets, and image guidance (the anchor view is the given image)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from generate_helpers import SIZE

from backend.generate.attention import CrossFrameAttnProcessor
from backend.generate.multiview import (
    SCHEDULER_NAMES,
    encode_image,
    generate_views,
    make_scheduler,
    view_generators,
    view_prompts,
)
from protocol.cameras import CameraPath

PROMPT = "a knight"


def _photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((4, 4, 3))
    return (np.kron(coarse, np.ones((SIZE // 4, SIZE // 4, 1))) * 255).astype(np.uint8)


def test_same_seed_same_images_other_seed_other_images(tiny_pipe, conditions4) -> None:
    a = generate_views(tiny_pipe, conditions4, PROMPT, seed=7, steps=3, scheduler="ddim")
    b = generate_views(tiny_pipe, conditions4, PROMPT, seed=7, steps=3, scheduler="ddim")
    c = generate_views(tiny_pipe, conditions4, PROMPT, seed=8, steps=3, scheduler="ddim")
    assert a.images.shape == (4, SIZE, SIZE, 3) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images)
    assert np.abs(a.images - c.images).reshape(4, -1).max(1).min() > 1e-3  # every view differs
    assert a.info["seed"] == 7 and a.info["views"] == 4 and a.info["device"] == "cpu"


def test_view_noise_streams_are_independent_of_neighbouring_seeds() -> None:
    a = [torch.randn(4, generator=g) for g in view_generators(1, 3)]
    b = [torch.randn(4, generator=g) for g in view_generators(2, 3)]
    assert not any(torch.equal(x, y) for x in a for y in b)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_runs_and_the_pipeline_keeps_its_own(tiny_pipe, conditions4, name: str) -> None:
    before = tiny_pipe.scheduler
    out = generate_views(tiny_pipe, conditions4, PROMPT, seed=1, steps=2, scheduler=name)
    assert np.isfinite(out.images).all() and out.images.std() > 0.01
    assert tiny_pipe.scheduler is before
    assert out.info["scheduler_class"] == type(make_scheduler(name, before.config)).__name__


def test_scheduler_names() -> None:
    from diffusers import DDIMScheduler

    config = DDIMScheduler(beta_schedule="scaled_linear").config
    assert type(make_scheduler("DPM++ 2M", config)).__name__ == "DPMSolverMultistepScheduler"
    assert make_scheduler("dpm++2m-karras", config).config.use_karras_sigmas
    assert type(make_scheduler("Euler a", config)).__name__ == "EulerAncestralDiscreteScheduler"
    assert make_scheduler("unipc", config).config.beta_schedule == "scaled_linear"  # from_config
    with pytest.raises(ValueError, match="unknown scheduler 'heun'"):
        make_scheduler("heun", config)


def test_view_dependent_prompts(conditions4) -> None:
    assert conditions4.labels == ["front", "side", "back", "side"]
    prompts = view_prompts("a knight", conditions4.labels)
    assert prompts[0].startswith("a knight, front view") and "back view" in prompts[2]
    assert view_prompts("a knight", conditions4.labels, None) == ["a knight"] * 4


def test_processor_is_removed_after_the_run_and_after_a_failure(tiny_pipe, conditions4) -> None:
    before = dict(tiny_pipe.unet.attn_processors)
    seen = []

    def progress(step: int, total: int) -> None:
        seen.append(isinstance(tiny_pipe.unet.attn_processors[next(
            n for n in before if ".attn1." in n)], CrossFrameAttnProcessor))
        if step == 2:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        generate_views(tiny_pipe, conditions4, PROMPT, steps=3, progress=progress)
    assert seen == [True, True]
    assert all(tiny_pipe.unet.attn_processors[n] is p for n, p in before.items())


def test_cross_frame_changes_the_views_and_attention_slicing_does_not(tiny_pipe, conditions4) -> None:
    on = generate_views(tiny_pipe, conditions4, PROMPT, seed=2, steps=2)
    off = generate_views(tiny_pipe, conditions4, PROMPT, seed=2, steps=2, cross_frame=False)
    sliced = generate_views(tiny_pipe, conditions4, PROMPT, seed=2, steps=2, attention_slicing=True)
    assert np.abs(on.images - off.images).max() > 1e-3
    np.testing.assert_allclose(sliced.images, on.images, atol=1e-5)


def test_several_controlnets_take_one_condition_kind_each(tiny_pipe_multi, conditions4) -> None:
    out = generate_views(tiny_pipe_multi, conditions4, PROMPT, seed=3, steps=2, kinds=("pose", "depth"),
                         control_scale=(1.0, 0.5))
    assert out.images.shape == (4, SIZE, SIZE, 3) and out.info["kinds"] == ["pose", "depth"]
    with pytest.raises(ValueError, match="1 condition kinds"):
        generate_views(tiny_pipe_multi, conditions4, PROMPT, steps=2, kinds=("pose",))
    with pytest.raises(ValueError, match="unknown condition kinds"):
        generate_views(tiny_pipe_multi, conditions4, PROMPT, steps=2, kinds=("pose", "canny"))


def _round_trip(pipe, photo: np.ndarray) -> np.ndarray:
    latents = encode_image(pipe, photo, SIZE, SIZE)
    with torch.no_grad():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(decoded, output_type="np")[0]


@pytest.mark.parametrize("scheduler", ["dpm++2m", "euler-a"])
def test_image_guided_anchor_is_the_given_image(tiny_pipe, conditions4, scheduler: str) -> None:
    photo = _photo()
    out = generate_views(tiny_pipe, conditions4, PROMPT, seed=4, steps=3, scheduler=scheduler, image=photo,
                         anchor=0)
    round_trip = _round_trip(tiny_pipe, photo)
    # The anchor decodes to the photo's VAE round trip (batched vs single decode: float noise only),
    vae_error = float(np.abs(round_trip - photo / 255.0).mean())
    anchor_error = float(np.abs(out.images[0] - photo / 255.0).mean())
    assert np.abs(out.images[0] - round_trip).max() < 1e-4
    assert abs(anchor_error - vae_error) < 1e-4
    # and the other views are generated, not copies of it.
    for i in (1, 2, 3):
        assert np.abs(out.images[i] - round_trip).mean() > 100 * 1e-4
    assert out.info["image_guided"]


def test_image_guided_views_attend_to_the_photo(tiny_pipe, conditions4) -> None:
    runs = {}
    for cross in (True, False):
        for seed in (0, 1):
            runs[cross, seed] = generate_views(tiny_pipe, conditions4, PROMPT, seed=5, steps=2,
                                               image=_photo(seed), cross_frame=cross).images
    # With cross-frame attention another photo changes every other view; without, they ignore it
    # (exactly: the views of a batch are independent). The random tiny UNet's attention moves the
    # decoded images by 7e-3 to 1.1e-2 (measured, max per view), float noise is ~1e-6.
    assert np.abs(runs[True, 0][1:] - runs[True, 1][1:]).reshape(3, -1).max(1).min() > 1e-3
    np.testing.assert_allclose(runs[False, 0][1:], runs[False, 1][1:], atol=1e-6)


def test_bad_requests_say_what_is_wrong(tiny_pipe, conditions4) -> None:
    with pytest.raises(ValueError, match="anchor 4"):
        generate_views(tiny_pipe, conditions4, PROMPT, steps=1, anchor=4)
    with pytest.raises(ValueError, match="steps"):
        generate_views(tiny_pipe, conditions4, PROMPT, steps=0)
    cams = conditions4.cameras
    odd = dataclasses.replace(conditions4, cameras=CameraPath(cams.K, cams.R, cams.t, SIZE + 1, SIZE))
    with pytest.raises(ValueError, match="multiple of 8"):
        generate_views(tiny_pipe, odd, PROMPT, steps=1)
