"""``avatar-studio preview``: render the posed body to PNG sequences + mp4 from the command line.

``backend/cli/`` calls :func:`register` to add the sub-command; ``python -m backend.commands.preview``
runs it alone. torch and the body model are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PREVIEW_HELP = "Render the posed SMPL-X body (RGB, mask, depth, normals, OpenPose) as PNG sequences + mp4."


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``preview`` sub-command to an ``argparse`` sub-parsers object; returns its parser."""
    from protocol.kinds import contract

    c = contract("body.preview")  # defaults and choices of the job this command runs
    default = {p.name: p.default for p in c.params}
    parser = subparsers.add_parser("preview", help=PREVIEW_HELP, description=PREVIEW_HELP)
    parser.add_argument("--motion", default=default["motion"],
                        help="AMASS .npz or .bvh file, or a procedural motion: walk, turn, wave, a-pose, "
                             f"t-pose (default: {default['motion']})")
    parser.add_argument("--cameras", default=default["cameras"],
                        help="orbit:N (turntable framed on the body) or a CameraPath JSON file "
                             f"(default: {default['cameras']})")
    parser.add_argument("--frames", type=int, help="number of frames (default: motion or camera length)")
    size = "x".join(str(v) for v in default["size"])
    parser.add_argument("--size", default=size, help=f"WxH (default {size}; a camera file's size wins)")
    parser.add_argument("--fps", type=float, help="resample the motion to this frame rate")
    parser.add_argument("--betas", type=float, nargs="+", help="shape coefficients")
    passes = ",".join(default["passes"])
    parser.add_argument("--passes", default=passes, help=f"comma-separated subset of {passes}")
    parser.add_argument("--color", choices=c.param("color").type.values, default=default["color"],
                        help=f"body colouring (default {default['color']})")
    parser.add_argument("--no-mp4", action="store_true", help="skip rgb.mp4")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of progress")
    parser.set_defaults(func=run_preview)
    return parser


class _ConsoleContext:
    """JobContext for the terminal: progress lines on stderr, never cancelled (Ctrl-C stops it)."""

    def __init__(self, work_dir: Path, quiet: bool) -> None:
        self.work_dir = work_dir
        self.quiet = quiet

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        if not self.quiet:
            print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr)

    def check_cancelled(self) -> None:
        return None


def run_preview(args: argparse.Namespace) -> int:
    from backend.jobs.api import JobInputError
    from backend.jobs.body import body_preview

    params: dict[str, Any] = {
        "motion": args.motion, "size": args.size, "passes": [p for p in args.passes.split(",") if p],
        "color": args.color, "mp4": not args.no_mp4,
    }
    for key in ("frames", "fps", "betas"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if args.cameras.startswith("orbit:"):
        params["cameras"] = args.cameras
    else:
        try:
            params["cameras"] = json.loads(Path(args.cameras).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            print(f"error: cannot read cameras file {args.cameras}: {exc}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        result = body_preview(params, _ConsoleContext(args.out, args.json))
    except JobInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    np.savez(args.out / "preview_arrays.npz", **result.arrays)
    summary = {**result.data, "out": str(args.out), "seconds": round(time.perf_counter() - start, 3),
               "files": len(result.files), "arrays": "preview_arrays.npz"}
    summary.pop("keypoint_names", None)
    record = {**result.data, "arrays": "preview_arrays.npz"}
    (args.out / "preview.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {len(result.files)} files for {result.data['frames']} frames to {args.out} "
              f"in {summary['seconds']} s", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avatar-studio")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
