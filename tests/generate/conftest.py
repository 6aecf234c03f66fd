"""The project's tiny models (``backend.models.tiny.make_tiny``, the files ``avatar-studio models
make-tiny`` writes) loaded through the real loading path (``load_controlnet_pipeline`` with a
registry read from that ``models.toml``), once per session.

The tiny VAE downsamples by 8 like SD's, so views are 64 px (8x8 latents). Its ``scaling_factor``
is measured (unit-variance latents) and the ControlNets' zero-initialised outputs are random: see
backend/models/tiny.py for why the tests need both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from generate_helpers import A_POSE, SIZE


@pytest.fixture(scope="session")
def tiny_models_toml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.models.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-models"))


def tiny_pipeline(models_toml: Path, roles: tuple[str, ...]):
    from backend.models.load import load_controlnet_pipeline
    from backend.models.registry import ModelRegistry

    # An empty HF cache: every role comes from the file, none from a cache elsewhere.
    registry = ModelRegistry.load(models_file=models_toml, hf_cache=models_toml.parent / "empty-hf-cache")
    return load_controlnet_pipeline(roles, registry=registry, device="cpu")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_models_toml: Path):
    """One ControlNet (pose); shared: tests must leave its processors and scheduler as they were."""
    return tiny_pipeline(tiny_models_toml, ("controlnet-openpose",))


@pytest.fixture(scope="session")
def tiny_pipe_multi(tiny_models_toml: Path):
    """Two ControlNets (pose + depth) as a MultiControlNet."""
    return tiny_pipeline(tiny_models_toml, ("controlnet-openpose", "controlnet-depth"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These models are tiny: one intra-op thread is faster than two fighting a loaded CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def conditions4():
    """Conditions of an A-posed body from 4 ring cameras at SIZE x SIZE."""
    from backend.generate.conditions import body_conditions

    return body_conditions(A_POSE, 4, width=SIZE, height=SIZE)
