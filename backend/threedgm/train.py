"""The 3DGM GAN loop: non-saturating logistic loss, lazy R1, EMA generator, checkpoints, resume.

Every random draw of step ``s`` (the batch, the cameras and bodies the fakes are rendered with,
``z``, the ray jitter) comes from a generator seeded by ``(seed, s)``, so a run that is killed and
resumed from its last checkpoint continues exactly as if it had not stopped (tested bit for bit
on CPU). The global RNG states are checkpointed anyway (anything else that draws from them).

Output folder: ``config.json`` (the run's config and data folder; a rerun must match),
``checkpoint.pt`` (model, EMA, discriminators, optimisers, RNG states, step; written atomically,
read with ``weights_only=True``: a checkpoint is never unpickled as code), ``log.jsonl`` (one JSON
line per logged step: losses, R1, scores, seconds; FID / KID lines with ``"eval": true``),
``samples.png`` (the EMA generator's sample sheet, rewritten with every checkpoint).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backend.threedgm.config import TrainConfig
from backend.threedgm.dataset import COND_DIM, ClipsDataset, collate
from backend.threedgm.discriminator import Discriminator, r1_penalty
from backend.threedgm.generator import BodyBatch, Generator

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LOG = "log.jsonl"
SCHEDULE_FIELDS = ("checkpoint_every", "log_every", "eval_every", "eval_images")
SAMPLES = "samples.png"


class RunError(ValueError):
    """The output folder holds a run of another config or dataset."""


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_generator(config: TrainConfig, data: ClipsDataset) -> Generator:
    if config.generator.cond_dim != COND_DIM or config.discriminator.cond_dim != COND_DIM:
        raise ValueError(f"cond_dim must be {COND_DIM} (dataset.camera_vector)")
    t = data.template
    return Generator(config.generator, t.weights, t.part_labels, t.part_names)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def silhouette_iou(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Soft IoU (Σ min / Σ max) of the fakes' silhouettes with the real masks of the same cameras
    and poses: the fakes are rendered with the bodies and cameras of ``view`` items, so a generator
    that learned the clothed body's shape raises it (logged; not a training signal)."""
    a, b = fake.detach().float().clamp(0, 1), real.float()
    return torch.minimum(a, b).sum() / torch.maximum(a, b).sum().clamp(min=1e-8)


class Trainer:
    def __init__(
        self, data: ClipsDataset, out: str | Path, config: TrainConfig, device: str | None = None
    ) -> None:
        self.data, self.out, self.config = data, Path(out), config
        self._check_out()  # before building anything: a wrong folder fails at once
        self.device = pick_device(device)
        self.amp = config.amp and self.device.type == "cuda"  # never autocast on CPU
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        g, d = config.generator, config.discriminator
        if data.size != g.out_res:
            raise ValueError(f"dataset size {data.size} != generator out_res {g.out_res}")
        self.G = build_generator(config, data).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D_rgb = Discriminator(3, g.out_res, d).to(self.device)
        self.D_sil = Discriminator(1, g.out_res, d).to(self.device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=config.betas, eps=1e-8)
        d_params = [*self.D_rgb.parameters(), *self.D_sil.parameters()]
        # lazy R1: Adam's hyper-parameters corrected for the skipped steps (StyleGAN2, Appendix B)
        ratio = config.r1_interval / (config.r1_interval + 1)
        self.opt_d = torch.optim.Adam(
            d_params,
            lr=config.lr_d * ratio,
            betas=(config.betas[0] ** ratio, config.betas[1] ** ratio),
            eps=1e-8,
        )
        self.step = 0
        self.resumed_from: int | None = None
        if (self.out / CHECKPOINT).is_file():
            self.load(self.out / CHECKPOINT)
            self.resumed_from = self.step

    # ---- the output folder ---------------------------------------------------------------------
    def _run_info(self) -> dict[str, Any]:
        # what makes a run this run; how often it checkpoints and logs may change between sessions
        config = {k: v for k, v in self.config.to_json().items() if k not in SCHEDULE_FIELDS}
        return {"config": config, "data": str(self.data.root.resolve())}

    def _check_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        info_path = self.out / CONFIG
        if info_path.is_file():
            saved = json.loads(info_path.read_text(encoding="utf-8"))
            if saved != json.loads(json.dumps(self._run_info())):
                raise RunError(
                    f"{self.out} holds a run of another config or dataset ({info_path}); "
                    "use a new --out folder"
                )
        else:
            _atomic_write(info_path, json.dumps(self._run_info(), indent=2).encode())

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": self.config.to_json(),
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D_rgb": self.D_rgb.state_dict(),
            "D_sil": self.D_sil.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": _rng_state(),
        }

    def save(self) -> Path:
        path = self.out / CHECKPOINT
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # a kill while saving leaves the previous checkpoint whole
        from backend.threedgm.evaluate import sample_sheet

        sample_sheet(self.G_ema, self.data, self.out / SAMPLES)
        return path

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        for name in ("G", "G_ema", "D_rgb", "D_sil", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])

    # ---- one step ------------------------------------------------------------------------------
    def _batch(self, gen: torch.Generator) -> dict[str, Any]:
        idx = torch.randint(len(self.data), (self.config.batch,), generator=gen).tolist()
        batch = collate([self.data[i] for i in idx])
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fake(self, G: Generator, gen: torch.Generator, view: dict[str, Any]) -> dict[str, torch.Tensor]:
        z = torch.randn((self.config.batch, self.config.generator.z_dim), generator=gen).to(self.device)
        body = BodyBatch(view["verts"], view["transforms"], view["root"])
        return G(z, view["cond"], view["K"], view["R"], view["t"], body, generator=gen)

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        gen = step_generator(cfg.seed, self.step)
        real = self._batch(gen)
        view = self._batch(gen)  # the cameras and bodies the fakes are rendered with
        logs: dict[str, float] = {"step": self.step}

        # discriminators
        self.G.requires_grad_(False)
        self.D_rgb.requires_grad_(True)
        self.D_sil.requires_grad_(True)
        with self._autocast():
            with torch.no_grad():
                fake = self._fake(self.G, gen, view)
            r1_now = cfg.r1_gamma > 0 and self.step % cfg.r1_interval == 0
            real_img = real["image"].detach().requires_grad_(r1_now)
            real_sil = (real["mask"] * 2 - 1).detach().requires_grad_(r1_now)
            s_real = self.D_rgb(real_img, real["cond"])
            s_real_sil = self.D_sil(real_sil, real["cond"])
            s_fake = self.D_rgb(fake["image"], view["cond"])
            s_fake_sil = self.D_sil(fake["mask"] * 2 - 1, view["cond"])
            loss_d = (F.softplus(s_fake) + F.softplus(-s_real)).mean() + (
                F.softplus(s_fake_sil) + F.softplus(-s_real_sil)
            ).mean()
            total_d = loss_d
            if r1_now:
                r1 = r1_penalty(s_real.float(), [real_img]) + r1_penalty(s_real_sil.float(), [real_sil])
                total_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
                logs["r1"] = float(r1.detach())
        self.opt_d.zero_grad(set_to_none=True)
        total_d.float().backward()
        self.opt_d.step()

        # generator
        self.G.requires_grad_(True)
        self.D_rgb.requires_grad_(False)
        self.D_sil.requires_grad_(False)
        with self._autocast():
            fake = self._fake(self.G, gen, view)
            g_rgb = F.softplus(-self.D_rgb(fake["image"], view["cond"])).mean()
            g_sil = F.softplus(-self.D_sil(fake["mask"] * 2 - 1, view["cond"])).mean()
            loss_g = g_rgb + cfg.silhouette_weight * g_sil
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.float().backward()
        self.opt_g.step()

        with torch.no_grad():
            self.G.w_avg.lerp_(fake["w"].float().mean(0).detach(), 1 - 0.995)
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.lerp_(p, 1 - cfg.ema_beta)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.copy_(b)
        logs.update(
            {
                k: float(v.detach())
                for k, v in (
                    ("loss_d", loss_d),
                    ("loss_g", loss_g),
                    ("loss_g_rgb", g_rgb),
                    ("loss_g_sil", g_sil),
                    ("d_real", s_real.mean()),
                    ("d_fake", s_fake.mean()),
                    ("mask_fake", fake["mask"].mean()),
                    ("mask_real", real["mask"].mean()),
                    ("sil_iou", silhouette_iou(fake["mask"], view["mask"])),
                )
            }
        )
        self.step += 1
        return logs

    def train(
        self,
        steps: int,
        on_step: Callable[[dict[str, float]], None] = lambda logs: None,
        extractor: Any | None = None,
        eval_data: ClipsDataset | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``self.step == steps`` (a resumed run continues from its step); checkpoint every
        ``checkpoint_every`` steps and at the end, each time with a sample sheet ``samples.png``.
        With an Inception ``extractor`` (the ``inception`` role) and ``eval_every`` > 0, the EMA
        generator's FID / KID against ``eval_data`` (default: the training data) are logged every
        ``eval_every`` steps as lines with ``"eval": true``. Returns the logs of the steps run here."""
        history = []
        with open(self.out / LOG, "a", encoding="utf-8") as log:
            while self.step < steps:
                start = time.perf_counter()
                logs = self.train_step()
                logs["seconds"] = time.perf_counter() - start
                history.append(logs)
                if logs["step"] % self.config.log_every == 0:
                    log.write(json.dumps(logs) + "\n")
                    log.flush()
                if self.step % self.config.checkpoint_every == 0 and self.step < steps:
                    self.save()
                every = self.config.eval_every
                if extractor is not None and every and (self.step % every == 0 or self.step == steps):
                    scores = self.evaluate(extractor, eval_data)
                    log.write(json.dumps({"step": self.step, "eval": True, **scores}) + "\n")
                    log.flush()
                on_step(logs)
        if history or not (self.out / CHECKPOINT).is_file():
            self.save()
        return history

    def evaluate(self, extractor: Any, data: ClipsDataset | None = None) -> dict[str, float]:
        """FID / KID of the EMA generator (``eval_images`` renders) against ``data``'s images."""
        from backend.threedgm.evaluate import fid_kid

        return fid_kid(
            extractor, self.G_ema, data or self.data, self.config.eval_images, seed=self.config.seed
        )


def read_log(out: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(out) / LOG
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
