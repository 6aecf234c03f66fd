"""``insert_neural`` end to end on tiny models: shapes, occluders kept, windows, seeds, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from backend.mimo.config import NeuralCancelled, NeuralConfig
from backend.mimo.pipeline import insert_neural, processing_size
from backend.models.registry import ROLES, ModelMissingError, ModelRegistry

# 7 frames in windows of 4 sharing 2: three windows, two seams; classifier-free guidance on.
CONFIG = NeuralConfig(steps=3, seed=0, window=4, overlap=2, guidance=2.0, size=64)


def test_route_runs_end_to_end_on_tiny_models(shot, loaded_models) -> None:  # type: ignore[no-untyped-def]
    reports: list[tuple[float, str]] = []
    out = insert_neural(*shot.args(), CONFIG, loaded_models, progress=lambda f, m: reports.append((f, m)))
    assert out.shape == shot.scene.shape and out.dtype == np.uint8
    # Occluders are the plate's pixels exactly where alpha is 1; a soft edge mixes.
    assert (out[:, :, :10] == shot.occlusion_rgb[:, :, :10]).all()
    assert not (out[:, :, 11:] == shot.occlusion_rgb[:, :, 11:]).all()
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("denoising step" in m for _, m in reports) == CONFIG.steps
    assert out.std() > 1.0  # not a constant image


def test_same_seed_same_frames_other_seed_other_frames(shot, loaded_models) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(CONFIG, steps=2)
    first = insert_neural(*shot.args(), config, loaded_models)
    again = insert_neural(*shot.args(), config, loaded_models)
    other = insert_neural(*shot.args(), dataclasses.replace(config, seed=1), loaded_models)
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 0.5
    dpm = dataclasses.replace(config, scheduler="dpm++", blend="cosine")
    assert np.array_equal(
        insert_neural(*shot.args(), dpm, loaded_models), insert_neural(*shot.args(), dpm, loaded_models)
    )


def test_the_motion_code_steers_the_frames(shot, loaded_models) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(CONFIG, steps=2, guidance=1.0)
    moved = dataclasses.replace(shot, posed_vertices=shot.posed_vertices + np.float32([0.4, 0.0, 0.0]))
    a = insert_neural(*shot.args(), config, loaded_models).astype(int)
    b = insert_neural(*moved.args(), config, loaded_models).astype(int)
    assert np.abs(a - b).mean() > 0.5


def test_registry_in_cancel_and_processing_size(shot, tiny_registry: ModelRegistry) -> None:  # type: ignore[no-untyped-def]
    config = dataclasses.replace(CONFIG, steps=1, guidance=1.0)
    out = insert_neural(*shot.args(), config, tiny_registry)  # loads every role through the registry
    assert out.shape == shot.scene.shape
    with pytest.raises(NeuralCancelled):
        insert_neural(*shot.args(), config, tiny_registry, cancelled=lambda: True)
    assert processing_size(48, 64, 512) == (384, 512)
    assert processing_size(1080, 1920, 512) == (288, 512)


def test_bad_inputs_are_named(shot, loaded_models) -> None:  # type: ignore[no-untyped-def]
    cases = {
        "K must be": dataclasses.replace(shot, K=shot.K[:5]),  # a camera path shorter than the footage
        "posed_vertices must be": dataclasses.replace(shot, posed_vertices=shot.posed_vertices[:6]),
        "the motion code has": dataclasses.replace(
            shot, posed_vertices=shot.posed_vertices[:, :100], faces=shot.faces[:10] % 100
        ),
        "occlusion_alpha must lie": dataclasses.replace(shot, occlusion_alpha=shot.occlusion_alpha * 3),
        "scene must be": dataclasses.replace(shot, scene=shot.scene.astype(np.float32)),
        "identity_image": dataclasses.replace(shot, identity=shot.identity[:4]),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            insert_neural(*bad.args(), CONFIG, loaded_models)
    with pytest.raises(ValueError, match="overlap"):
        NeuralConfig(window=4, overlap=4)
    with pytest.raises(ValueError, match="scheduler"):
        NeuralConfig(scheduler="euler")


def test_missing_role_gives_the_registry_error(shot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = ModelRegistry.load(tmp_path / "data", hf_cache=tmp_path / "empty-hf-cache")
    with pytest.raises(ModelMissingError) as err:
        insert_neural(*shot.args(), CONFIG, empty)
    role = "mimo-denoising-unet"
    message = str(err.value)
    assert err.value.role == role and ROLES[role].default_hub_id in message
    assert f"`avatar-studio models download {role}`" in message and "\n" not in message
    # Shapes are checked before anything is loaded: a short camera path is named, not a missing role.
    with pytest.raises(ValueError, match="K must be"):
        insert_neural(*dataclasses.replace(shot, K=shot.K[:5]).args(), CONFIG, empty)
