"""``avatar-studio footage``: insert a character into shot footage (docs/footage.md).

    avatar-studio footage insert --video V --camera C.json --avatar DIR --motion M [--depth D]
        [--route 3d|neural] [--place x,y,z] [--heading DEG] [--shadow S] [--lighting plate|sh|flat]
        [--sh SH.npy] --out DIR
    avatar-studio footage decompose ...   (backend/commands/footage_decompose.py)
    avatar-studio footage make-plate --avatar DIR --out DIR [--frames N] [--size WxH] [--moving]

``insert`` runs the job kind ``footage.insert`` in-process (:func:`backend.jobs.footage.footage_insert`),
so its params are parsed and checked exactly as a submitted job's; the result folder's files are
copied into ``--out`` (``composite/``, ``character/``, ``shadow/``, ``occlusion/``, ``composite.mp4``,
``footage.json``). Bad input exits with status 2 and writes nothing. torch is imported only when
the command runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend.commands import footage_decompose

FOOTAGE_HELP = "Insert a character into shot footage (3D compositing or MIMO); docs/footage.md."
PLATE_HELP = ("Write a CG plate with known ground truth (a tiled ground, a pillar in front of the "
              "avatar's walk, its depth and camera): the demo's and the bench's shot.")
INSERT_HELP = ("Insert an avatar into a video: placed on the ground plane, rendered through the shot's "
               "camera, lit from the plate, with a shadow and depth-aware occlusion.")


def register(subparsers: Any) -> argparse.ArgumentParser:
    from protocol.kinds import contract

    parser = subparsers.add_parser("footage", help=FOOTAGE_HELP, description=FOOTAGE_HELP)
    sub = parser.add_subparsers(dest="footage_command", required=True, metavar="SUBCOMMAND")
    c = contract("footage.insert")

    def default(name: str) -> Any:
        return c.param(name).default

    ins = sub.add_parser("insert", help=INSERT_HELP, description=INSERT_HELP)
    ins.add_argument("--video", type=Path, required=True, help="video file or folder of numbered images")
    ins.add_argument("--camera", type=Path, required=True,
                     help="CameraPath JSON (protocol.cameras): one frame, or one per footage frame")
    ins.add_argument("--avatar", type=Path, required=True,
                     help="avatar folder (avatar_arrays.npz + avatar.glb)")
    ins.add_argument("--motion", default=None,
                     help=f"procedural name or AMASS .npz / .bvh file (default {default('motion')})")
    ins.add_argument("--track", type=Path, help="replacement: an SMPL-X track (.npz of the payload's arrays)")
    ins.add_argument("--depth", type=Path, help="one .npy (F,H,W) or a folder of per-frame .npy/.exr, metres")
    ins.add_argument("--occluder-masks", type=Path, dest="occluder_masks",
                     help="numbered PNG masks of scene objects in front of everything inserted")
    ins.add_argument("--route", choices=c.param("route").type.values, default=default("route"))
    ins.add_argument("--place", default="0,0,0",
                     help="x,y,z where the motion's root starts (metres, Y up; negative: --place=-1,0,2)")
    ins.add_argument("--heading", type=float, default=default("heading"), help="turn about up, degrees")
    ins.add_argument("--lighting", choices=c.param("lighting").type.values, default=default("lighting"))
    ins.add_argument("--sh", type=Path, help="9x3 SH irradiance (.npy or .json) for --lighting sh")
    ins.add_argument("--shadow", type=float, default=default("shadow"), help="shadow strength in [0, 1]")
    ins.add_argument("--motion-blur", type=int, dest="motion_blur", default=default("motion_blur"),
                     help="sub-frame samples (0: off)")
    ins.add_argument("--antialias", type=int, default=default("antialias"), help="supersampling per side")
    ins.add_argument("--frame-start", type=int, dest="frame_start", default=default("frame_start"))
    ins.add_argument("--frames", type=int, help="frames used (default: to the end)")
    ins.add_argument("--fps", type=float, help="default: the video's (25 for image folders)")
    ins.add_argument("--no-mp4", action="store_true", help="skip composite.mp4")
    ins.add_argument("--out", type=Path, required=True, help="output folder")
    ins.add_argument("--json", action="store_true", help="print the job's summary as JSON on stdout")
    ins.set_defaults(func=run_insert)
    footage_decompose.add_parser(sub)
    plate = sub.add_parser("make-plate", help=PLATE_HELP, description=PLATE_HELP)
    plate.add_argument("--avatar", type=Path, required=True,
                       help="the avatar whose walk the truth frames show (avatar_arrays.npz)")
    plate.add_argument("--frames", type=int, default=24)
    plate.add_argument("--size", default="512x384", help="WxH (default 512x384)")
    plate.add_argument("--fps", type=float, default=30.0)
    plate.add_argument("--moving", action="store_true", help="a dolly camera instead of a static one")
    plate.add_argument("--out", type=Path, required=True,
                       help="folder: plate/ (PNGs), depth/ + depth.npy, camera.json, truth/")
    plate.set_defaults(func=run_make_plate)
    return parser


def run_make_plate(args: argparse.Namespace) -> int:
    """A CG plate with a pillar in front of the avatar's walk (backend/footage/cgplate.py), written
    as a user hands a shot over, plus truth/: the same shot rendered with the avatar in it."""
    from PIL import Image

    from backend.clips.avatars import AvatarError
    from backend.footage.cgplate import make_plate, write_plate

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        plate = make_plate(args.avatar, args.frames, width, height, fps=args.fps, moving_camera=args.moving)
    except (ValueError, AvatarError, OSError) as exc:
        print(f"footage make-plate: {exc}", file=sys.stderr)
        return 2
    files = write_plate(plate, args.out, args.fps)
    (args.out / "truth").mkdir(exist_ok=True)
    for i, frame in enumerate(plate.truth):
        Image.fromarray(frame).save(args.out / "truth" / f"{i + 1:04d}.png")
    print(json.dumps({k: str(v) for k, v in files.items()}, indent=1))
    return 0


def _read_array(path: Path, what: str) -> Any:
    import numpy as np

    if path.suffix.lower() == ".json":
        return np.asarray(json.loads(path.read_text(encoding="utf-8")), np.float32)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    raise ValueError(f"--{what}: a .npy or .json file, got {path.name}")


def insert_params(args: argparse.Namespace) -> dict[str, Any]:
    """The job params the flags describe (the contract checks them)."""
    import numpy as np

    try:
        place = [float(v) for v in args.place.split(",")]
    except ValueError:
        raise ValueError(f"--place: x,y,z in metres, got {args.place!r}") from None
    try:
        camera = json.loads(args.camera.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--camera: {args.camera}: not a readable CameraPath JSON ({exc})") from None
    params: dict[str, Any] = {
        "video": str(args.video), "camera": camera, "avatar": str(args.avatar), "place": place,
        "heading": args.heading, "route": args.route, "lighting": args.lighting, "shadow": args.shadow,
        "motion_blur": args.motion_blur, "antialias": args.antialias, "frame_start": args.frame_start,
        "mp4": not args.no_mp4,
    }
    for name in ("frames", "fps", "motion"):
        if getattr(args, name) is not None:
            params[name] = getattr(args, name)
    for name in ("depth", "occluder_masks"):
        if getattr(args, name) is not None:
            params[name] = str(getattr(args, name))
    if args.sh is not None:
        params["sh"] = _read_array(args.sh, "sh")
    if args.track is not None:
        with np.load(args.track, allow_pickle=False) as data:
            # 0-d entries (gender, fps, frame_start) as plain values, as a payload carries them
            params["track"] = {k: data[k].item() if data[k].ndim == 0 else data[k] for k in data.files}
    return params


class _BarContext:
    """JobContext for the terminal: a rich progress bar on stderr, never cancelled (Ctrl-C)."""

    def __init__(self, work_dir: Path, progress: Any, task: Any) -> None:
        self.work_dir = work_dir
        self._progress = progress
        self._task = task

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self._progress.update(self._task, completed=fraction * 100.0,
                              description=f"{stage or 'footage'}: {message}")

    def check_cancelled(self) -> None:
        return None


def run_insert(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from backend.jobs.api import JobInputError
    from backend.jobs.footage import footage_insert
    from backend.models.registry import ModelMissingError

    try:
        params = insert_params(args)
    except (ValueError, OSError) as exc:
        print(f"footage insert: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="footage-insert-") as scratch:
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                   TimeRemainingColumn())
        try:
            with Progress(*columns, transient=args.json, disable=args.json) as progress:
                task = progress.add_task("footage: starting", total=100.0)
                result = footage_insert(params, _BarContext(Path(scratch), progress, task))
        except (JobInputError, ModelMissingError) as exc:
            print(f"footage insert: {exc}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, path in result.files.items():
            rel = name.removeprefix("insert/")
            target = args.out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            written[rel] = str(shutil.copy2(path, target))
    summary = {**result.data, "out": str(args.out), "files": len(written)}
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        data = result.data
        print(f"{data['frames']} frames inserted into {args.out} ({data['timings_s'].get('total', 0):.1f} s, "
              f"visible {data['visible_fraction']:.2f})", file=sys.stderr)
    return 0
