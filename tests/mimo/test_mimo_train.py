"""Training on a ``clips.render`` dataset: layers from the clip, loss falls, resume is bit-identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from backend.mimo import train as T
from backend.mimo.data import GREY, dataset_layers
from backend.mimo.network import load_mimo_models
from backend.models.registry import ModelRegistry


def test_layers_of_a_rendered_clip(clips_dataset: Path) -> None:
    layers = dataset_layers(clips_dataset)
    assert [c.name for c in layers] == ["000000/cam_00/person0", "000000/cam_01/person0"]
    c = layers[0]
    frames = c.target.shape[0]
    assert c.target.shape == c.scene.shape == c.occlusion_rgb.shape == (frames, 48, 48, 3)
    assert c.posed_vertices.shape == (frames, 10475, 3) and c.K.shape == (frames, 3, 3)
    greyed = (c.scene == GREY).all(-1)
    assert greyed.sum() > 50  # the person's region is taken out of the scene layer ...
    assert (c.scene[~greyed] == c.target[~greyed]).all()  # ... the rest is the frame
    assert c.occlusion_alpha.max() == 0  # one person: nothing in front of them
    assert c.identity.shape[0] == c.identity.shape[1] and (c.identity == 255).any()


def _models(tiny_registry: ModelRegistry):  # type: ignore[no-untyped-def]
    return load_mimo_models(tiny_registry, "cpu")


CONFIG = T.TrainConfig(steps=24, lr=1e-3, window=4, size=48, seed=3, checkpoint_every=12)


def test_a_tiny_training_run_lowers_its_loss(
    clips_dataset: Path, tiny_registry: ModelRegistry, tmp_path: Path
) -> None:
    models = _models(tiny_registry)
    data = T.prepare(models, dataset_layers(clips_dataset), CONFIG.size)
    before = T.evaluate(models, data, CONFIG.window)
    codes_before = models.net.pose_guider.vertex_codes.detach().clone()
    result = T.train(models, data, CONFIG, tmp_path / "run")
    after = T.evaluate(models, data, CONFIG.window)
    assert len(result.losses) == 24 and result.step == 24 and np.isfinite(result.losses).all()
    assert after < 0.7 * before, (before, after)
    assert np.mean(result.losses[-8:]) < np.mean(result.losses[:8])
    # the per-vertex codes learned too (gradients reach them through the rasterised maps)
    assert not torch.equal(models.net.pose_guider.vertex_codes, codes_before)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(1, 25))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step-000012",
        "step-000024",
    ]
    # the trained parts export as role folders that the registry loads back, weights unchanged
    toml = T.export_roles(models, tmp_path / "export")
    frozen = tiny_registry.config_path.parent
    with toml.open("a") as f:
        f.write(f'[models.mimo-image-encoder]\npath = "{frozen / "mimo-image-encoder"}"\n')
        f.write(f'[models.vae]\npath = "{frozen / "vae"}"\n')
    again = load_mimo_models(ModelRegistry.load(models_file=toml, hf_cache=tmp_path / "empty-hf"), "cpu")
    trained = models.net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in again.net.state_dict().items())


def test_resume_is_bit_identical(clips_dataset: Path, tiny_registry: ModelRegistry, tmp_path: Path) -> None:
    config = T.TrainConfig(steps=4, lr=1e-3, window=4, size=48, seed=1, checkpoint_every=2)
    layers = dataset_layers(clips_dataset)

    def run(steps: int, out: Path) -> tuple[T.TrainResult, dict[str, torch.Tensor]]:
        models = _models(tiny_registry)  # fresh weights each time: the checkpoint must restore them
        data = T.prepare(models, layers, config.size)
        result = T.train(models, data, T.TrainConfig(**{**config.__dict__, "steps": steps}), out)
        return result, {k: v.clone() for k, v in models.net.state_dict().items()}

    straight, weights = run(4, tmp_path / "a")
    first, _ = run(2, tmp_path / "b")
    resumed, resumed_weights = run(4, tmp_path / "b")
    assert resumed.resumed_from == 2 and first.losses + resumed.losses == straight.losses
    assert weights.keys() == resumed_weights.keys()
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)
    opt_a = torch.load(straight.checkpoint / "optimizer.pt", weights_only=True)
    opt_b = torch.load(resumed.checkpoint / "optimizer.pt", weights_only=True)
    assert all(
        torch.equal(opt_a["state"][i]["exp_avg"], opt_b["state"][i]["exp_avg"]) for i in opt_a["state"]
    )
