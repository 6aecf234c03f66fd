"""``avatar-studio clips``: render synthetic clips with exact ground truth, check them, draw them.

    avatar-studio clips render --spec S.json --out DIR [--workers N | --ray local|ADDRESS]
    avatar-studio clips render --people 2 --motion walk --cameras ring:4 --frames 8 --clips 3 \
        --size 256x256 --seed 1 --out DIR
    avatar-studio clips check DIR [--clip ID] [--json]
    avatar-studio clips vis DIR --clip ID --out sheet.png

Exit status: 0 success, 1 ``check`` found disagreements over tolerance, 2 a bad spec or folder.
torch and the body model are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CLIPS_HELP = "Synthetic multi-view clips with exact ground truth (render, check, vis); docs/clips.md."
QUICK = ("people", "motion", "cameras", "frames", "clips", "size", "seed")


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("clips", help=CLIPS_HELP, description=CLIPS_HELP)
    sub = parser.add_subparsers(dest="clips_command", required=True)
    render = sub.add_parser("render", help="render a dataset (resumes an interrupted one)")
    render.add_argument("--spec", type=Path, help="clip spec JSON (docs/clips.md); or the quick flags below")
    render.add_argument("--people", help="people per clip: N or MIN-MAX (default 1)")
    render.add_argument("--motion", action="append",
                        help="procedural motion or AMASS .npz / .bvh file; repeat to sample among several")
    render.add_argument("--cameras", action="append",
                        help="camera rig KIND:N, KIND ring|orbit|handheld|dolly")
    render.add_argument("--frames", type=int, help="frames per clip (default 8)")
    render.add_argument("--clips", type=int, help="number of clips (default 1)")
    render.add_argument("--size", help="WxH (default 256x256)")
    render.add_argument("--seed", type=int, help="dataset seed (default 0)")
    render.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    render.add_argument("--ray", metavar="local|ADDRESS",
                        help="render one clip per Ray task: 'local' starts a private cluster, or an "
                             "existing one's address (auto, ray://HOST:PORT); needs a shared output folder")
    render.add_argument("--ray-cpus-per-task", type=int, default=1, help="CPUs per clip task (default 1)")
    render.add_argument("--out", type=Path, required=True, help="dataset folder")
    render.add_argument("--json", action="store_true", help="print the manifest's counts as JSON")
    render.set_defaults(func=run_render)
    check = sub.add_parser("check", help="re-project joints and depth; nonzero exit over tolerance")
    check.add_argument("dataset", type=Path)
    check.add_argument("--clip", action="append", help="only these clip ids")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=run_check)
    vis = sub.add_parser("vis", help="contact sheet of a clip: keypoints, masks, boxes over RGB")
    vis.add_argument("dataset", type=Path)
    vis.add_argument("--clip", required=True)
    vis.add_argument("--out", type=Path, required=True,
                     help="sheet.png (a contact sheet) or overlay.mp4 (every frame, cameras tiled)")
    vis.set_defaults(func=run_vis)
    return parser


def quick_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The spec object the quick flags describe."""
    from backend.clips.spec import SpecError

    spec: dict[str, Any] = {}
    if args.people:
        lo, _, hi = args.people.partition("-")
        try:
            spec["people"] = {"count": [int(lo), int(hi or lo)]}
        except ValueError:
            raise SpecError(f"--people: N or MIN-MAX, got {args.people!r}") from None
    if args.motion:
        spec["motion"] = {"sources": args.motion}
    if args.cameras:
        spec["cameras"] = args.cameras
    if args.size:
        w, _, h = args.size.lower().partition("x")
        try:
            spec["width"], spec["height"] = int(w), int(h)
        except ValueError:
            raise SpecError(f"--size: WxH, got {args.size!r}") from None
    for name in ("frames", "clips", "seed"):
        if getattr(args, name) is not None:
            spec[name] = getattr(args, name)
    return spec


def run_render(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from backend.clips.dataset import render_dataset
    from backend.clips.distributed import RayError, parse_address  # Ray itself only when used
    from backend.clips.spec import ClipSpec, SpecError, load_spec

    try:
        if args.spec is not None:
            given = [f"--{n}" for n in QUICK if getattr(args, n) is not None]
            if given:
                raise SpecError(f"--spec and {', '.join(given)} exclude each other (put them in the spec)")
            spec = load_spec(args.spec)
        else:
            spec = ClipSpec.parse(quick_spec(args), base_dir=Path.cwd())
        if args.workers < 1:
            raise SpecError(f"--workers: at least 1, got {args.workers}")
        if args.ray and args.workers != 1:
            raise SpecError("--workers and --ray exclude each other (use --ray-cpus-per-task)")
        if args.ray:
            parse_address(args.ray)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=None, transient=args.json, disable=args.json) as progress:
            clips = progress.add_task("clips", total=spec.clips)
            frames = progress.add_task("frames x cameras", total=spec.clips * spec.frames * spec.n_cameras)

            def on_clip(cid: str, skipped: bool) -> None:
                progress.advance(clips)
                if skipped:
                    progress.advance(frames, spec.frames * spec.n_cameras)

            if args.ray:  # imports Ray (an optional extra) only now
                from backend.clips.distributed import render_dataset_ray

                manifest = render_dataset_ray(spec, args.out, address=args.ray,
                                              cpus_per_task=args.ray_cpus_per_task, on_clip=on_clip,
                                              on_frames=lambda n: progress.advance(frames, n))
            else:
                manifest = render_dataset(spec, args.out, workers=args.workers, on_clip=on_clip,
                                          on_frames=lambda n: progress.advance(frames, n))
    except (SpecError, FileNotFoundError, RayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the clips not yet finished were cancelled; finished ones stay
        print(f"interrupted: rerun the same command to resume {args.out}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(manifest["counts"]))
    else:
        print(f"{args.out}: {manifest['counts']}", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from backend.clips.check import TOLERANCES, check_dataset

    try:
        report = check_dataset(args.dataset, args.clip)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        for key, value in report.worst.items():
            flag = "ok" if value <= TOLERANCES[key] else "OVER"
            print(f"{key:22s} worst {value:.3g}  (tolerance {TOLERANCES[key]:g})  {flag}")
        print(f"{len(report.per_clip)} clip(s), {report.depth_points} depth pixels back-projected")
    return 1 if report.failures else 0


def run_vis(args: argparse.Namespace) -> int:
    from backend.clips.vis import contact_sheet, overlay_video

    write = overlay_video if args.out.suffix.lower() == ".mp4" else contact_sheet
    try:
        path = write(args.dataset, args.clip, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0

