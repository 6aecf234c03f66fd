"""The GAN loop on the tiny config: it learns, it is reproducible, it resumes bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.threedgm.config import TINY, TrainConfig, get_config
from backend.threedgm.train import CHECKPOINT, CONFIG, LOG, RunError, Trainer, read_log, step_generator

ROOT = Path(__file__).resolve().parents[2]


def _mean(history: list[dict[str, float]], key: str, lo: int, hi: int) -> float:
    return float(np.mean([h[key] for h in history[lo:hi]]))


def test_tiny_run_learns(data, tmp_path: Path) -> None:
    config = replace(TINY, checkpoint_every=1000)
    trainer = Trainer(data, tmp_path / "run", config)
    history = trainer.train(100)
    assert [h["step"] for h in history] == list(range(100))
    assert all(np.isfinite(h[k]) for h in history for k in ("loss_d", "loss_g", "r1") if k in h)
    # the discriminators learn: their loss falls from 2 x log 4 (chance) ...
    assert _mean(history, "loss_d", 0, 5) > 2.2
    assert _mean(history, "loss_d", 80, 100) < _mean(history, "loss_d", 0, 20) - 0.3
    # ... and the generator learns the silhouettes' size (its opacity starts as a fat shell around
    # the body): the gap between fake and real mask areas shrinks
    gap = [abs(h["mask_fake"] - h["mask_real"]) for h in history]
    assert np.mean(gap[80:]) < 0.5 * np.mean(gap[:10])
    logged = list(read_log(tmp_path / "run"))
    assert len(logged) == 100 and logged[-1]["loss_d"] == history[-1]["loss_d"]
    assert (tmp_path / "run" / CHECKPOINT).is_file()
    assert sum(1 for h in history if "r1" in h) == 100 // config.r1_interval  # lazy R1


def test_each_update_lowers_its_own_loss(data, tmp_path: Path) -> None:
    trainer = Trainer(data, tmp_path / "run", TINY)
    gen = step_generator(0, 0)
    real, view = trainer._batch(gen), trainer._batch(gen)

    def fake() -> dict[str, torch.Tensor]:
        return trainer._fake(trainer.G, step_generator(7, 7), view)  # same z, same ray jitter

    def loss_g() -> torch.Tensor:
        f = fake()
        return (
            F.softplus(-trainer.D_rgb(f["image"], view["cond"])).mean()
            + F.softplus(-trainer.D_sil(f["mask"] * 2 - 1, view["cond"])).mean()
        )

    def loss_d() -> torch.Tensor:
        with torch.no_grad():
            f = fake()
        return (
            F.softplus(trainer.D_rgb(f["image"], view["cond"]))
            + F.softplus(-trainer.D_rgb(real["image"], real["cond"]))
        ).mean()

    before = loss_g()
    trainer.opt_g.zero_grad()
    before.backward()
    trainer.opt_g.step()
    assert loss_g().item() < before.item()
    before = loss_d()
    trainer.opt_d.zero_grad()
    before.backward()
    trainer.opt_d.step()
    assert loss_d().item() < before.item()


def _states(trainer: Trainer) -> dict[str, dict]:
    return {n: getattr(trainer, n).state_dict() for n in ("G", "G_ema", "D_rgb", "D_sil", "opt_g", "opt_d")}


def _equal(a: object, b: object) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_resume_is_bit_identical_and_same_seed_same_losses(data, tmp_path: Path) -> None:
    config = replace(TINY, checkpoint_every=2)
    straight = Trainer(data, tmp_path / "a", config)
    logs_a = straight.train(6)
    # a run stopped at step 3 (its last checkpoint) and started again in a fresh Trainer
    first = Trainer(data, tmp_path / "b", config)
    logs_b = first.train(3)
    del first
    torch.manual_seed(12345)  # whatever the process did since: the checkpoint restores the RNG state
    resumed = Trainer(data, tmp_path / "b", config)
    assert resumed.resumed_from == 3 and resumed.step == 3
    logs_b += resumed.train(6)
    assert [h["step"] for h in logs_b] == list(range(6))
    for a, b in zip(logs_a, logs_b, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    assert _equal(_states(straight), _states(resumed))
    assert torch.equal(torch.get_rng_state(), torch.get_rng_state())
    on_disk = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert on_disk["step"] == 6 and _equal(on_disk["G"], straight.G.state_dict())
    assert len(list(read_log(tmp_path / "b"))) == 6
    # a run is done: training to the same step again runs nothing
    again = Trainer(data, tmp_path / "b", config)
    assert again.train(6) == [] and _equal(_states(again), _states(straight))


def test_checkpoint_of_a_killed_save_and_other_configs(data, tmp_path: Path) -> None:
    trainer = Trainer(data, tmp_path / "run", TINY)
    trainer.train(1)
    # a save killed half-way leaves a temp file, never a broken checkpoint.pt
    (tmp_path / "run" / f".{CHECKPOINT}.999.tmp").write_bytes(b"partial")
    assert Trainer(data, tmp_path / "run", TINY).step == 1
    other = replace(TINY, lr_g=1e-4)
    with pytest.raises(RunError, match="another config"):
        Trainer(data, tmp_path / "run", other)
    saved = json.loads((tmp_path / "run" / CONFIG).read_text())
    assert TrainConfig.from_json(saved["config"]) == TINY  # the schedule fields are left out (defaults)
    assert "checkpoint_every" not in saved["config"]
    assert Trainer(data, tmp_path / "run", replace(TINY, checkpoint_every=7)).step == 1  # schedule only
    assert (tmp_path / "run" / LOG).is_file()


def test_mixed_precision_only_on_cuda(data, tmp_path: Path) -> None:
    trainer = Trainer(data, tmp_path / "run", replace(TINY, amp=True), device="cpu")
    assert trainer.amp is False  # autocast is chosen at run time and never used on a CPU


def test_cli_trains_resumes_and_refuses(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from backend import cli

    out = tmp_path / "run"
    argv = ["3dgm", "train", "--data", str(clips_dir), "--config", "tiny", "--out", str(out), "--json"]
    assert cli.main([*argv, "--steps", "2"]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert first["steps"] == 2 and first["ran"] == 2 and first["resumed_from"] is None
    assert "resuming" not in captured.err
    assert cli.main([*argv, "--steps", "3"]) == 0
    captured = capsys.readouterr()
    assert f"resuming {out} from step 2" in captured.err
    again = json.loads(captured.out)
    assert again["resumed_from"] == 2 and again["steps"] == 3 and again["ran"] == 1
    assert [h["step"] for h in read_log(out)] == [0, 1, 2]
    # another config on the same folder, a folder that is no dataset, a bad step count: exit 2
    base = [*argv[:5], "base", "--out", str(out), "--steps", "4"]
    assert cli.main(base) == 2 and "another config" in capsys.readouterr().err
    assert cli.main([*argv[:3], str(tmp_path), *argv[4:], "--steps", "1"]) == 2
    assert "not a clips dataset" in capsys.readouterr().err
    assert cli.main([*argv, "--steps", "0"]) == 2


def test_a_killed_training_process_resumes_bit_identically(data, clips_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "backend",
        "3dgm",
        "train",
        "--data",
        str(clips_dir),
        "--config",
        "tiny",
        "--out",
        str(out),
        "--steps",
        "200",
        "--checkpoint-every",
        "2",
        "--json",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / CHECKPOINT).is_file():
            assert proc.poll() is None, "the training process ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = Trainer(data, out, get_config("tiny"))
    assert resumed.resumed_from is not None and resumed.resumed_from % 2 == 0 and resumed.resumed_from >= 2
    total = resumed.resumed_from + 2
    resumed.train(total)
    straight = Trainer(data, tmp_path / "straight", TINY)
    straight.train(total)
    assert _equal(_states(straight), _states(resumed))


class _FakeExtractor(torch.nn.Module):
    """The Inception extractor's interface (uint8 (N,3,H,W) in, a tuple of (N,D) features out) on a
    small random projection: the real extractor is tested in test_threedgm_metrics.py."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 8 * 8, 12)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        small = F.interpolate(x.float() / 255, size=(8, 8), mode="area")
        return (self.proj(small.flatten(1)),)


def test_evaluation_and_sample_sheets_do_not_change_training(data, tmp_path: Path) -> None:
    from PIL import Image

    torch.manual_seed(0)
    extractor = _FakeExtractor()
    config = replace(TINY, eval_every=2, eval_images=8, checkpoint_every=2)
    evaluated = Trainer(data, tmp_path / "eval", config)
    evaluated.train(4, extractor=extractor)
    plain = Trainer(data, tmp_path / "plain", TINY)
    plain.train(4)
    assert _equal(_states(evaluated), _states(plain))  # its own seeds, no jitter: training is untouched
    evals = [e for e in read_log(tmp_path / "eval") if e.get("eval")]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(np.isfinite(e["fid"]) and e["fid"] >= 0 and e["images"] == 8 for e in evals)
    assert evals[0]["fid"] != evals[1]["fid"]  # the EMA generator moved
    again = Trainer(data, tmp_path / "eval", config)
    assert again.evaluate(extractor) == {k: v for k, v in evals[1].items() if k not in ("step", "eval")}
    sheet = Image.open(tmp_path / "eval" / "samples.png")
    assert sheet.size == (4 * 32, 5 * 32)  # 4 views; 4 avatars + the real row


def test_cli_eval_without_inception_weights_is_a_clear_error(
    clips_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend import cli

    monkeypatch.setenv("AVATAR_STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("AVATAR_STUDIO_MODELS", raising=False)
    argv = [
        "3dgm",
        "train",
        "--data",
        str(clips_dir),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--eval-every",
        "1",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "'inception'" in err and "[models.inception]" in err
