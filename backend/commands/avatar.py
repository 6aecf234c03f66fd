"""CLI: ``avatar-studio avatar --views DIR --out DIR`` and ``avatar-studio avatar make-synthetic --out DIR``.

Registered by backend/cli/ through ``register(subparsers)``. torch and the stages are imported
inside the handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

AVATAR_HELP = (
    "Build a rigged, textured avatar from a views folder (En3D geometry sculpting + explicit texturing "
    "+ SMPL-X rig); writes avatar.glb, avatar.obj/.mtl/.png, avatar_arrays.npz and avatar.json."
)
SYNTH_HELP = (
    "Render a synthetic character (stand-in body, skirt, hair, procedural texture) into a views folder."
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("avatar", help=AVATAR_HELP, description=AVATAR_HELP)
    parser.add_argument("--views", type=Path, help="views folder (views.json + rgba/ [+ normal/])")
    parser.add_argument("--out", type=Path, help="output folder")
    # Defaults and ranges come from the avatar.from_views contract, so `--help` says what runs.
    from protocol.kinds import contract

    c = contract("avatar.from_views")

    def knob(flag: str, param: str, help_text: str) -> None:
        p = c.param(param)
        choices = getattr(p.type, "values", None)
        kind = None if choices else (float if type(p.default) is float else int)
        parser.add_argument(flag, dest=param, type=kind, choices=choices, default=p.default,
                            metavar=None if choices else "N",
                            help=f"{help_text} ({p.type.doc()}; default {p.default})")

    knob("--grid", "grid", "tet-grid resolution")
    knob("--iters", "refine_iters", "sculpt refinement iterations")
    knob("--init-iters", "init_iters", "body-SDF fitting iterations")
    knob("--render-scale", "render_scale", "optimisation renders at this fraction of the views' size")
    knob("--texture-size", "texture_size", "texture size in pixels")
    knob("--texture-iters", "texture_iters", "texture optimisation iterations")
    knob("--unwrap", "unwrap", "UV unwrapper")
    knob("--normals", "normals", "normal supervision: the views' maps, the normal-estimator model, or none "
         "(mask only)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run_avatar)
    sub = parser.add_subparsers(dest="avatar_command", metavar="SUBCOMMAND")
    synth = sub.add_parser("make-synthetic", help=SYNTH_HELP, description=SYNTH_HELP)
    synth.add_argument("--out", type=Path, required=True, dest="synthetic_out", help="views folder to write")
    synth.add_argument("--shape", default="average", help="average | tall | broad")
    synth.add_argument("--resolution", type=int, default=512)
    synth.add_argument("--no-skirt", action="store_true")
    synth.add_argument("--no-hair", action="store_true")
    synth.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    synth.set_defaults(func=run_make_synthetic)
    return parser


def _progress(quiet: bool) -> Any:
    last = [0.0]

    def report(stage: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        if not quiet and (now - last[0] > 1.0 or fraction >= 1.0):
            print(f"[{fraction * 100:5.1f}%] {stage}: {message}", file=sys.stderr, flush=True)
            last[0] = now

    return report


def run_avatar(args: argparse.Namespace) -> int:
    if args.views is None or args.out is None:
        print(
            "avatar: --views DIR and --out DIR are required (or use `avatar make-synthetic`)", file=sys.stderr
        )
        return 2
    from backend.avatar.geometry.sculpt import NormalEstimatorMissing
    from backend.avatar.io.views import ViewsFormatError, read_views
    from backend.avatar.pipeline import build_avatar, config_from_options, write_outputs
    from backend.jobs.api import JobInputError, typed_params
    from protocol.kinds import contract

    try:
        # The stage knobs the command shares with the job (``--views`` is read below, unconfined).
        names = [p.name for p in contract("avatar.from_views").params
                 if hasattr(args, p.name) and p.name != "views"]
        # The job's contract checks the ranges, as for a submitted job.
        knobs = {n: getattr(args, n) for n in names}
        p = typed_params("avatar.from_views", {"views": str(args.views), **knobs})
        config = config_from_options(**{name: getattr(p, name) for name in names})
        views = read_views(args.views)
        result = build_avatar(views, config, _progress(args.json))
    except (ValueError, JobInputError, ViewsFormatError, NormalEstimatorMissing) as exc:
        print(f"avatar: {exc}", file=sys.stderr)
        return 2
    files = write_outputs(result, args.out, config)
    summary = {
        "files": {k: str(v) for k, v in files.items()},
        "timings_s": result.timings,
        **result.info,
        "vertices": len(result.vertices),
        "faces": len(result.faces),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"avatar written to {args.out} ({len(result.vertices)} vertices, {len(result.faces)} faces)")
    return 0


def run_make_synthetic(args: argparse.Namespace) -> int:
    from backend.avatar.eval.synthetic import SHAPE_PRESETS, SyntheticConfig, make_synthetic

    if args.shape not in SHAPE_PRESETS:
        print(
            f"make-synthetic: unknown shape {args.shape!r}; known: {', '.join(SHAPE_PRESETS)}",
            file=sys.stderr,
        )
        return 2
    cfg = SyntheticConfig(
        shape=args.shape, resolution=args.resolution, skirt=not args.no_skirt, hair=not args.no_hair
    )
    views, _ = make_synthetic(cfg, args.synthetic_out)
    summary = {
        "views": str(args.synthetic_out),
        "train": len(views.split("train")),
        "test": len(views.split("test")),
    }
    print(
        json.dumps(summary)
        if args.json
        else f"wrote {summary['train']}+{summary['test']} views to {args.synthetic_out}"
    )
    return 0
