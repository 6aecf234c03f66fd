"""CLI: ``avatar-studio avatar --views DIR --out DIR`` and ``avatar-studio avatar make-synthetic --out DIR``.

Registered by backend/cli.py through ``register(subparsers)``. torch and the stages are imported
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
    parser.add_argument("--grid", type=int, help="tet-grid resolution (default 64)")
    parser.add_argument("--iters", type=int, help="sculpt refinement iterations (default 300)")
    parser.add_argument("--init-iters", type=int, help="body-SDF fitting iterations (default 300)")
    parser.add_argument("--texture-size", type=int, help="texture size, up to 2048 (default 1024)")
    parser.add_argument("--texture-iters", type=int, help="texture optimisation iterations")
    parser.add_argument("--unwrap", choices=("cylinder", "xatlas"), help="UV unwrapper (default cylinder)")
    parser.add_argument(
        "--normals",
        choices=("auto", "views", "estimator", "none"),
        help="normal supervision: the views' maps, the normal-estimator model, or none "
        "(mask only); default auto",
    )
    parser.add_argument("--body-model", help="licensed SMPL-X model file (default: the stand-in body)")
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

    try:
        config = config_from_options(
            grid=args.grid,
            init_iters=args.init_iters,
            refine_iters=args.iters,
            texture_size=args.texture_size,
            texture_iters=args.texture_iters,
            unwrap=args.unwrap,
            normals=args.normals,
            body_model_path=args.body_model,
        )
        views = read_views(args.views)
        result = build_avatar(views, config, _progress(args.json))
    except (ValueError, ViewsFormatError, NormalEstimatorMissing) as exc:
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
