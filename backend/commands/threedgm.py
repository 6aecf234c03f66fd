"""``avatar-studio 3dgm``: En3D's 3D generative model (docs/threedgm.md).

    avatar-studio 3dgm train --data DIR --config tiny|base --out RUN_DIR [--steps N] [--device cpu|cuda]

``--data`` is a clips dataset (``avatar-studio clips render --people 1 ...``). A rerun on the same
``--out`` resumes from its checkpoint and says so (a folder of another config or dataset is
refused). Progress on stderr (rich), losses in ``RUN_DIR/log.jsonl``; ``--json`` prints a summary.
Exit status: 0 done, 2 a bad dataset / folder / config, 130 interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "En3D's 3D generative model: train the triplane avatar GAN on rendered clips; docs/threedgm.md."
DEFAULT_STEPS = {"tiny": 2000, "base": 500_000}


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("3dgm", help=HELP, description=HELP)
    sub = parser.add_subparsers(dest="threedgm_command", required=True)
    train = sub.add_parser("train", help="train (or resume) a run")
    train.add_argument("--data", type=Path, required=True, help="clips dataset folder")
    train.add_argument("--config", choices=("tiny", "base"), default="tiny")
    train.add_argument(
        "--out", type=Path, required=True, help="run folder (resumed when it holds a checkpoint)"
    )
    train.add_argument(
        "--steps", type=int, help="train until this many steps in all (default: tiny 2000, base 500000)"
    )
    train.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    train.add_argument(
        "--checkpoint-every", type=int, help="steps between checkpoints (default: the config's)"
    )
    train.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="FID/KID of the EMA generator every N steps (needs the inception model role)",
    )
    train.add_argument(
        "--eval-data", type=Path, help="clips dataset the FID is measured against (default: --data)"
    )
    train.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    train.set_defaults(func=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from backend.threedgm.config import get_config
    from backend.threedgm.dataset import ClipsDataset, DatasetError
    from backend.threedgm.train import RunError, Trainer

    steps = args.steps if args.steps is not None else DEFAULT_STEPS[args.config]
    if steps < 1:
        print(f"error: --steps must be at least 1, got {steps}", file=sys.stderr)
        return 2
    try:
        if args.checkpoint_every is not None and args.checkpoint_every < 1:
            raise ValueError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
        if args.eval_every < 0:
            raise ValueError(f"--eval-every must be 0 (never) or more, got {args.eval_every}")
        overrides = {} if args.checkpoint_every is None else {"checkpoint_every": args.checkpoint_every}
        overrides["eval_every"] = args.eval_every
        config = get_config(args.config, **overrides)
        data = ClipsDataset(
            args.data,
            config.generator.out_res,
            config.generator.warp_vertices,
            background=config.generator.background,
        )
        trainer = Trainer(data, args.out, config, device=args.device)
        extractor, eval_data = None, None
        if args.eval_every:
            from backend.models.load import load_inception

            extractor = load_inception(device=trainer.device)
            if args.eval_data is not None:
                eval_data = ClipsDataset(
                    args.eval_data,
                    config.generator.out_res,
                    config.generator.warp_vertices,
                    background=config.generator.background,
                )
    except (
        DatasetError,
        RunError,
        FileNotFoundError,
        ValueError,
        LookupError,
    ) as exc:  # LookupError: no model
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if trainer.resumed_from is not None:
        print(f"resuming {args.out} from step {trainer.resumed_from}", file=sys.stderr)
    start = trainer.step
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    try:
        with Progress(*columns, transient=args.json, disable=args.json) as progress:
            task = progress.add_task(
                f"3dgm {config.name}", total=steps, completed=min(start, steps), losses=""
            )

            def on_step(logs: dict[str, float]) -> None:
                progress.update(task, advance=1, losses=f"D {logs['loss_d']:.3f} G {logs['loss_g']:.3f}")

            history = trainer.train(steps, on_step=on_step, extractor=extractor, eval_data=eval_data)
    except KeyboardInterrupt:
        print(
            f"interrupted: rerun the same command to resume {args.out} (from its last checkpoint)",
            file=sys.stderr,
        )
        return 130
    summary = {
        "out": str(args.out),
        "config": config.name,
        "resumed_from": trainer.resumed_from,
        "steps": trainer.step,
        "ran": len(history),
        "last": history[-1] if history else None,
        "device": str(trainer.device),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.out}: step {trainer.step} ({len(history)} run now)", file=sys.stderr)
    return 0
