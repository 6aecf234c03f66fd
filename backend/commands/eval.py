"""``avatar-studio eval``: image metrics over folders (docs/eval.md), as a table or ``--json``.

    avatar-studio eval [--fid REAL FAKE] [--is360 DIR] [--normals PRED GT] [--identity DIR]
                       [--paired PRED GT [--no-lpips]] [--masks DIR] [--device cpu|cuda] [--json]

Any combination in one run. FID/KID and IS-360 need the ``inception`` role, identity the ``clip``
role, LPIPS (part of ``--paired`` unless ``--no-lpips``) the ``lpips`` role; a missing role is the
registry's one-line error naming it and how to provide it. ``--masks`` (by file name) restricts
``--paired`` and ``--normals``. Exit status: 0 scored, 2 bad input or missing weights.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

HELP = "image metrics over folders: FID/KID, IS-360, normal accuracy, identity, PSNR/SSIM/LPIPS."


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help=HELP, description=HELP)
    parser.add_argument("--fid", nargs=2, type=Path, metavar=("REAL", "FAKE"), help="FID and KID")
    parser.add_argument("--is360", type=Path, metavar="DIR", help="Inception Score of 360-degree renders")
    parser.add_argument("--normals", nargs=2, type=Path, metavar=("PRED", "GT"),
                        help="normal maps (.npy or .png) against ground truth")
    parser.add_argument("--identity", type=Path, metavar="DIR",
                        help="CLIP identity consistency: one avatar's views (or one sub-folder each)")
    parser.add_argument("--paired", nargs=2, type=Path, metavar=("PRED", "GT"), help="PSNR / SSIM / LPIPS")
    parser.add_argument("--masks", type=Path, metavar="DIR", help="masks by file name (--paired, --normals)")
    parser.add_argument("--no-lpips", action="store_true", help="--paired without LPIPS (no lpips role)")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, help="default: the smaller set, at most 1000")
    parser.add_argument("--is-splits", type=int, default=10, help="IS splits (at most the image count)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.set_defaults(func=run_eval)
    return parser


def evaluate(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The results of every metric asked for, by group (the JSON written by ``--json``)."""
    from backend.metrics import generative, normals, paired

    results: dict[str, dict[str, Any]] = {}
    if args.fid or args.is360:
        from backend.models.load import load_inception

        extractor = load_inception(device=args.device, dtype="fp32")
        if args.fid:
            results["fid"] = generative.fid_kid_folders(
                extractor, *args.fid, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size
            )
        if args.is360:
            results["is360"] = generative.is360_folder(extractor, args.is360, args.is_splits)
    if args.normals:
        results["normals"] = normals.normal_accuracy_folders(*args.normals, args.masks).as_dict()
    if args.identity:
        from backend.models.load import load_clip

        results["identity"] = generative.identity_folder(load_clip(device=args.device), args.identity)
    if args.paired:
        lpips = None
        if not args.no_lpips:
            from backend.models.load_metrics import load_lpips

            lpips = load_lpips(device=args.device)
        results["paired"] = paired.paired_scores(*args.paired, args.masks, lpips).as_dict()
    return results


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def run_eval(args: argparse.Namespace) -> int:
    from backend.metrics.images import EvalInputError

    if not any((args.fid, args.is360, args.normals, args.identity, args.paired)):
        print("error: nothing to evaluate: give --fid, --is360, --normals, --identity or --paired",
              file=sys.stderr)
        return 2
    try:
        results = evaluate(args)
    except (EvalInputError, ValueError, LookupError, FileNotFoundError) as exc:  # LookupError: no model
        hint = " (or pass --no-lpips)" if "'lpips'" in str(exc) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results))  # an infinite PSNR (identical images) is written as Infinity
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="avatar-studio eval")
    for column in ("group", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for group, values in results.items():
        for key, value in values.items():
            table.add_row(group, key, _fmt(value))
    Console().print(table)
    return 0
