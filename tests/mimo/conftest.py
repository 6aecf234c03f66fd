"""Shared fixtures of the neural-route tests: the tiny models of the route's roles (written by the same
writers ``models make-tiny`` uses, loaded through the registry), a posed stand-in body in front of a
camera, and a small ``clips.render`` dataset for training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from backend.models.registry import MODELS_FILE_ENV, ModelRegistry
from backend.render.threads import torch_threads

ROUTE_ROLES = (
    "mimo-denoising-unet",
    "mimo-reference-unet",
    "mimo-motion-module",
    "mimo-pose-guider",
    "mimo-image-encoder",
)


@pytest.fixture(autouse=True)
def _no_models_file_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODELS_FILE_ENV, "")
    monkeypatch.delenv(MODELS_FILE_ENV)


@pytest.fixture(autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """These models are tiny: one intra-op thread is far faster than two fighting a loaded CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_route_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models.toml`` naming tiny versions of the route's roles and the VAE (make_tiny's writers)."""
    from backend.models.mimo import write_tiny_route_models

    with torch_threads(1):
        return write_tiny_route_models(tmp_path_factory.mktemp("tiny-mimo"))


@pytest.fixture
def tiny_registry(tiny_route_models: Path, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.load(models_file=tiny_route_models, hf_cache=tmp_path / "empty-hf-cache")


@pytest.fixture(scope="session")
def loaded_models(tiny_route_models: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The route's models loaded once for the inference tests (they do not change them)."""
    from backend.mimo.network import load_mimo_models

    registry = ModelRegistry.load(
        models_file=tiny_route_models, hf_cache=tmp_path_factory.mktemp("hf") / "empty"
    )
    with torch_threads(1):
        return load_mimo_models(registry, "cpu")


@dataclass
class Shot:
    scene: np.ndarray
    occlusion_rgb: np.ndarray
    occlusion_alpha: np.ndarray
    posed_vertices: np.ndarray
    faces: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    identity: np.ndarray

    def args(self) -> tuple:
        return (
            self.scene,
            self.occlusion_rgb,
            self.occlusion_alpha,
            self.posed_vertices,
            self.faces,
            self.K,
            self.R,
            self.t,
            self.identity,
        )


@pytest.fixture(scope="session")
def shot() -> Shot:
    """7 frames of 48x64 footage: the stand-in body raising an arm in front of a fixed camera, a
    random plate, an occluder strip over the left 10 columns (alpha 1) and a soft edge next to it."""
    from backend.body.loading import load_body_model
    from backend.clips.sample import pose
    from protocol.cameras import intrinsics_from_fov, look_at

    frames, height, width = 7, 48, 64
    body = load_body_model("neutral")
    params = {
        name: np.zeros((frames, width_), np.float32)
        for name, width_ in (("global_orient", 3), ("body_pose", 63), ("transl", 3))
    }
    params["body_pose"][:, 50] = np.linspace(0.0, 1.2, frames)  # the right shoulder
    verts, _ = pose(body, params)
    R, t = look_at((0.0, -0.3, 3.0), (0.0, -0.3, 0.0))
    rng = np.random.default_rng(0)
    alpha = np.zeros((frames, height, width), np.float32)
    alpha[:, :, :10] = 1.0
    alpha[:, :, 10] = 0.5
    return Shot(
        rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        alpha,
        verts.astype(np.float32),
        np.asarray(body.faces, dtype=np.int32),
        np.repeat(intrinsics_from_fov(40.0, width, height)[None], frames, 0),
        np.repeat(np.asarray(R)[None], frames, 0),
        np.repeat(np.asarray(t)[None], frames, 0),
        rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
    )


@pytest.fixture(scope="session")
def clips_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One rendered clip: one walking person, two ring cameras, 6 frames of 48x48."""
    from backend.clips.dataset import render_dataset
    from backend.clips.spec import ClipSpec

    out = tmp_path_factory.mktemp("mimo-clips") / "ds"
    spec = {
        "clips": 1,
        "frames": 6,
        "width": 48,
        "height": 48,
        "seed": 5,
        "people": {"count": [1, 1]},
        "motion": {"sources": ["walk"]},
        "cameras": ["ring:2"],
    }
    with torch_threads(1):
        render_dataset(ClipSpec.parse(spec), out)
    return out
