"""One avatar from a prompt with the real weights on CUDA: per-stage seconds and peak VRAM.

Run by ``scripts/gpu_check.sh`` (docs/generate.md, "GPU check"). The avatar comes from the very
job function the server runs (``backend.jobs.generate_avatar``); a progress callback closes a stage
whenever the job reports the next one, with its wall time and ``torch.cuda.max_memory_allocated``
since the stage began (the peak is reset at each stage), so the numbers are the job's own.

Checks first, loading nothing: every role the run reads is on this machine (else one line per
missing role with its model and the download command) and CUDA is present; either failing exits 2.
``--allow-cpu`` runs anyway without CUDA (VRAM then "n/a"): to try the script itself on the
project's tiny models (``models make-tiny``), not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXIT_MISSING = 2
CONDITION_ROLES = {"pose": "controlnet-openpose", "depth": "controlnet-depth", "normal": "controlnet-normal"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a knight in silver armour")
    parser.add_argument("--image", type=Path, help="a photo: runs avatar.from_image instead")
    parser.add_argument("--models", type=Path, help="models.toml (default: the data dir's)")
    parser.add_argument("--out", type=Path, help="copy the avatar and the views here")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--quality", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="pose", help="comma-separated: pose,depth,normal")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                        help="any other param of the job kind, e.g. --param steps=20 --param grid=48")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (no VRAM numbers)")
    return parser.parse_args(argv)


def job_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"prompt": args.prompt, "views": args.views, "quality": args.quality,
                              "seed": args.seed,
                              "conditions": [c.strip() for c in args.conditions.split(",") if c.strip()]}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"gpu_check: --param {item!r}: expected NAME=JSON")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value  # a bare string
    if args.image is not None:
        params["image"] = str(args.image)
    return params


def needed_roles(params: dict[str, Any]) -> list[str]:
    roles = ["base-diffusion", *(CONDITION_ROLES.get(c, c) for c in params["conditions"])]
    if params.get("normals") == "estimator":
        roles.append("normal-estimator")
    return roles


def preflight(params: dict[str, Any], allow_cpu: bool) -> list[str]:
    """What stops the run (empty: go): missing roles, no CUDA."""
    import torch

    from backend.models.registry import ModelConfigError, ModelMissingError, ModelRegistry

    problems = []
    try:
        registry = ModelRegistry.load()
    except ModelConfigError as exc:
        return [f"the models file does not read: {exc}"]
    for role in needed_roles(params):
        try:
            registry.require(role)
        except (ModelMissingError, KeyError) as exc:
            problems.append(f"missing role {role!r}: {exc}")
    if not torch.cuda.is_available() and not allow_cpu:
        problems.append(f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): "
                        "this check measures the GPU; run it on a CUDA machine")
    return problems


class StageMeter:
    """A JobContext whose progress closes a stage at each new stage name: seconds and peak VRAM."""

    def __init__(self, work_dir: Path, cuda: bool) -> None:
        self.work_dir = work_dir
        self.cuda = cuda
        self.rows: list[dict[str, Any]] = []
        self.stage = ""
        self.began = time.perf_counter()
        self.last_print = 0.0

    def _peak(self) -> float | None:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None

    def _close(self) -> None:
        import torch

        if self.stage:
            if self.cuda:
                torch.cuda.synchronize()
            self.rows.append({"stage": self.stage, "seconds": time.perf_counter() - self.began,
                              "peak_vram_mib": self._peak()})
            print(f"  {self.stage:16} {self.rows[-1]['seconds']:8.2f} s", file=sys.stderr)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.began = time.perf_counter()

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        if stage and stage != self.stage:
            self._close()
            self.stage = stage

    def check_cancelled(self) -> None:
        pass

    def finish(self) -> None:
        self._close()
        self.stage = ""


def report(rows: list[dict[str, Any]], device: str) -> str:
    lines = [f"device: {device}", f"{'stage':16} {'seconds':>9} {'peak VRAM MiB':>14}"]
    for r in rows:
        vram = "n/a" if r["peak_vram_mib"] is None else f"{r['peak_vram_mib']:.0f}"
        lines.append(f"{r['stage']:16} {r['seconds']:9.2f} {vram:>14}")
    total = sum(r["seconds"] for r in rows)
    peaks = [r["peak_vram_mib"] for r in rows if r["peak_vram_mib"] is not None]
    lines.append(f"{'total':16} {total:9.2f} {max(peaks) if peaks else 'n/a':>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.models is not None:
        from backend.models.registry import MODELS_FILE_ENV

        os.environ[MODELS_FILE_ENV] = str(args.models.resolve())
    params = job_params(args)
    problems = preflight(params, args.allow_cpu)
    if problems:
        for line in problems:
            print(f"gpu_check: {line}", file=sys.stderr)
        return EXIT_MISSING

    import shutil

    import torch

    from backend.jobs.generate_avatar import generate_avatar

    cuda = torch.cuda.is_available()
    device = f"cpu, torch {torch.__version__}"
    if cuda:
        gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        device = f"{torch.cuda.get_device_name(0)} ({gib:.0f} GiB), torch {torch.__version__}"
    kind = "avatar.from_image" if args.image is not None else "avatar.from_text"
    print(f"gpu_check: {kind} on {device}: {json.dumps(params)}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        meter = StageMeter(Path(scratch), cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = generate_avatar(kind, params, meter)
        meter.finish()
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            for name, path in result.files.items():
                target = args.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    print(report(meter.rows, device))
    generated = result.data.get("generated", {})
    print(f"avatar: {result.data['vertices']} vertices, {result.data['faces']} faces; generation "
          f"{generated.get('width')}x{generated.get('height')} px, {generated.get('steps')} steps, "
          f"{generated.get('dtype')} on {generated.get('device')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
