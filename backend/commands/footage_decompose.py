"""CLI: ``avatar-studio footage decompose --video V [--camera C.json] [--depth D]
[--person-masks DIR | --segment] [--depth-estimator] [--inpaint propagate|model] --out DIR``.

Runs the job kind ``footage.decompose`` in-process (backend/jobs/footage_decompose.py: the same
params, checks and errors as a submitted job) with a progress bar on stderr, and leaves the
template folder (``video/ masks/ human/ scene/ depth/ config.json``, docs/footage.md) in ``--out``.
``backend/commands/footage.py`` adds it to ``footage``'s subcommands through :func:`add_parser`.
torch and the pipeline are imported inside the handler, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DECOMPOSE_HELP = (
    "Lift a shot into MIMO's layers: the people in it (masks or the person-segmentation model), the "
    "scene with them removed and filled (other frames along the camera motion, then inpainting), "
    "depth; writes the template folder (video/ masks/ human/ scene/ depth/ config.json)."
)


def add_parser(footage_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``decompose`` to the ``footage`` command's subparsers."""
    from protocol.kinds import contract
    from protocol.kinds_footage import FOOTAGE_INPAINT

    c = contract("footage.decompose")
    parser = footage_subparsers.add_parser("decompose", help=DECOMPOSE_HELP, description=DECOMPOSE_HELP)
    parser.add_argument("--video", type=Path, required=True,
                        help="a video file or a folder of numbered images")
    parser.add_argument("--camera", type=Path, metavar="C.json",
                        help="CameraPath JSON (protocol.cameras): one frame (static) or one per frame")
    parser.add_argument("--depth", type=Path, metavar="D",
                        help="one .npy (F,H,W) or a folder of per-frame .npy/.exr, metres")
    parser.add_argument("--depth-estimator", action="store_true", dest="depth_estimator",
                        help="depth from the depth-estimator role, scaled to the ground plane")
    parser.add_argument("--person-masks", type=Path, dest="person_masks", metavar="DIR",
                        help="numbered PNG masks of the people in the shot (white = person)")
    parser.add_argument("--segment", action="store_true",
                        help="find the people with the person-segmentation role")
    parser.add_argument("--inpaint", choices=FOOTAGE_INPAINT, default=c.param("inpaint").default,
                        help="what no frame shows: biharmonic (propagate) or the inpainting role")
    parser.add_argument("--frame-start", type=int, dest="frame_start", default=c.param("frame_start").default,
                        help="first footage frame used, 1-based")
    parser.add_argument("--frames", type=int, help="frames used (default: to the end)")
    parser.add_argument("--fps", type=float, help="default: the video's (25 for image folders)")
    parser.add_argument("--out", type=Path, required=True, help="the template folder to write")
    parser.add_argument("--models", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="models.toml to use (e.g. one written by `models make-tiny`)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.set_defaults(func=run_decompose)
    return parser


class _ProgressContext:
    """JobContext for the terminal: a rich progress bar (hidden with --json), never cancelled
    (Ctrl-C interrupts the process)."""

    def __init__(self, work_dir: Path, progress: Any, task: Any) -> None:
        self.work_dir = work_dir
        self._progress = progress
        self._task = task

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self._progress.update(self._task, completed=round(1000 * fraction),
                              description=f"{stage or 'decompose'}: {message}"[:70])

    def check_cancelled(self) -> None:
        return None


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The job's params the arguments describe (the camera JSON read into a CameraPath payload)."""
    from protocol.cameras import CameraPath

    params: dict[str, Any] = {"video": str(args.video), "frame_start": args.frame_start,
                              "inpaint": args.inpaint}
    for name in ("segment", "depth_estimator"):  # only when asked: each excludes another param
        if getattr(args, name):
            params[name] = True
    for name in ("frames", "fps"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    for name in ("depth", "person_masks"):
        if getattr(args, name) is not None:
            params[name] = str(getattr(args, name))
    if args.camera is not None:
        try:
            params["camera"] = CameraPath.from_json(args.camera.read_text(encoding="utf-8")).to_payload()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"--camera {args.camera}: {exc}") from None
    return params


def run_decompose(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from backend.jobs.api import JobInputError
    from backend.jobs.footage_decompose import TEMPLATE, footage_decompose
    from backend.models.registry import ModelMissingError

    start = time.perf_counter()
    try:
        params = params_from_args(args)
    except ValueError as exc:
        print(f"footage decompose: {exc}", file=sys.stderr)
        return 2
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory(prefix="footage-decompose-") as scratch:
        try:
            with Progress(*columns, transient=True, disable=args.json) as progress:
                task = progress.add_task("decompose", total=1000)
                result = footage_decompose(params, _ProgressContext(Path(scratch), progress, task))
        except (JobInputError, ModelMissingError) as exc:
            print(f"footage decompose: {exc}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(scratch) / TEMPLATE, args.out, dirs_exist_ok=True)
    summary = {**result.data, "out": str(args.out), "files": len(result.files),
               "seconds": round(time.perf_counter() - start, 3)}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"template written to {args.out}: {summary['frames']} frames, people {summary['people']}, "
              f"{summary['removed_pixels']} pixels removed ({100 * summary['propagated_fraction']:.1f}% "
              f"from other frames), depth {summary['depth_source']}, {summary['seconds']} s")
    return 0
