"""CLI: ``avatar-studio avatar --views DIR --out DIR``,
``avatar-studio avatar --prompt "..." [--image photo.png] [--views-out DIR] --out DIR [--models FILE]``,
``--from-noise`` / ``--invert PHOTO`` with ``--checkpoint RUN_DIR`` (avatar_noise.py, avatar_invert.py)
and ``avatar-studio avatar make-synthetic --out DIR``.

``--prompt`` runs the job kind ``avatar.from_text`` (``avatar.from_image`` with ``--image``)
in-process, as the other plug-in commands run theirs: the same params, stages and errors as a
submitted job (backend/jobs/generate_avatar.py), with progress on stderr.

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
    from protocol.kinds import contract

    parser = subparsers.add_parser("avatar", help=AVATAR_HELP, description=AVATAR_HELP)
    parser.add_argument("--views", type=Path, help="views folder (views.json + rgba/ [+ normal/])")
    parser.add_argument("--out", type=Path, help="output folder")
    gen = parser.add_argument_group(
        "from a prompt or a photo (jobs avatar.from_text / avatar.from_image; docs/generate.md)")
    gen.add_argument("--prompt", help="what the person looks like: generate the views, then the avatar")
    gen.add_argument("--image", type=Path, help="a photo: the front (anchor) view; the others are generated")
    gen.add_argument("--keypoints", type=Path, help="--image: the photo's 2D keypoints (keypoints JSON, "
                     "docs/fitting.md); default: the pose-estimator role when present")
    gen.add_argument("--no-fit-body", dest="fit_body", action="store_false",
                     help="--image: dress the A-pose body instead of fitting one to the photo")
    fov = contract("avatar.from_image").param("photo_fov").default
    gen.add_argument("--photo-fov", type=float, default=fov,
                     help="--image/--invert PHOTO: the photo's vertical field of view in degrees")
    noise = parser.add_argument_group("from noise (job avatar.from_noise; docs/threedgm.md)")
    noise.add_argument("--from-noise", action="store_true", help="a random avatar from a trained 3DGM run")
    noise.add_argument("--checkpoint", type=Path, help="--from-noise/--invert: the `3dgm train` run folder")
    psi = contract("avatar.from_noise").param("truncation").default
    noise.add_argument("--truncation", type=float, default=psi,
                       help="--from-noise: psi, 0 = the mean avatar (--seed, --num-views, --size apply)")
    from backend.commands.avatar_invert import add_arguments as add_invert_arguments

    add_invert_arguments(parser)  # --invert PHOTO|VIEWS_DIR (avatar.from_image_inversion)
    gen.add_argument("--views-out", type=Path, help="also copy the generated views folder here")
    gen.add_argument("--negative-prompt", help="default: generic defects (lowres, blurry, bad anatomy...)")
    text = contract("avatar.from_text")
    gen.add_argument("--seed", type=int, default=text.param("seed").default)
    gen.add_argument("--num-views", type=int, dest="num_views", default=text.param("views").default,
                     help=f"views to generate (default {text.param('views').default})")
    gen.add_argument("--size", type=int, help="view side in pixels, a multiple of 8 (default: the quality's)")
    gen.add_argument("--steps", type=int, help="denoising steps (default: the quality's)")
    gen.add_argument("--guidance", type=float, default=text.param("guidance").default)
    gen.add_argument("--scheduler", choices=text.param("scheduler").type.values,
                     default=text.param("scheduler").default)
    gen.add_argument("--quality", choices=text.param("quality").type.values,
                     default=text.param("quality").default,
                     help="preset of size, steps and the avatar stages (the knobs below override it)")
    gen.add_argument("--conditions", default="pose", help="comma-separated: pose,depth,normal")
    gen.add_argument("--view-normals", dest="view_normals", choices=text.param("normals").type.values,
                     default=text.param("normals").default, help="normals of the generated views")
    # The top-level --models, also accepted after `avatar` (the same dest: the CLI puts it in
    # $AVATAR_STUDIO_MODELS before the command runs; SUPPRESS keeps one given before `avatar`).
    parser.add_argument("--models", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="models.toml to use (e.g. one written by `models make-tiny`)")
    # Defaults and ranges come from the avatar.from_views contract, so `--help` says what runs.
    c = contract("avatar.from_views")

    def knob(flag: str, param: str, help_text: str) -> None:
        # Default None: --views uses the contract's default, --prompt the quality preset's.
        p = c.param(param)
        choices = getattr(p.type, "values", None)
        kind = None if choices else (float if type(p.default) is float else int)
        parser.add_argument(flag, dest=param, type=kind, choices=choices, default=None,
                            metavar=None if choices else "N",
                            help=f"{help_text} ({p.type.doc()}; default {p.default})"
                            + ("" if param in ("normals", "unwrap") else " [--prompt: the quality's]"))

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
    last_stage = [""]

    def report(stage: str, fraction: float, message: str) -> None:
        # at most a line a second within a stage, and always the first line of a new stage
        now = time.monotonic()
        if not quiet and (now - last[0] > 1.0 or fraction >= 1.0 or stage != last_stage[0]):
            print(f"[{fraction * 100:5.1f}%] {stage}: {message}", file=sys.stderr, flush=True)
            last[0] = now
            last_stage[0] = stage

    return report


def run_avatar(args: argparse.Namespace) -> int:
    if args.invert is not None:
        from backend.commands.avatar_invert import run_from_inversion

        return run_from_inversion(args, _ConsoleContext)
    if args.from_noise:
        from backend.commands.avatar_noise import run_from_noise

        return run_from_noise(args, _ConsoleContext)
    if args.prompt is not None or args.image is not None:
        return run_generated(args)
    if args.views is None or args.out is None:
        print(
            "avatar: --views DIR (or --prompt TEXT) and --out DIR are required "
            "(or use `avatar make-synthetic`)",
            file=sys.stderr,
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
        knobs = {n: getattr(args, n) for n in names}  # None: the contract's default
        p = typed_params("avatar.from_views", {"views": str(args.views), **knobs})
        config = config_from_options(**{name: getattr(p, name) for name in names})
        views = read_views(args.views)
        result = build_avatar(views, config, _progress(args.json))
    except (ValueError, JobInputError, ViewsFormatError, NormalEstimatorMissing) as exc:
        print(f"avatar: {exc}", file=sys.stderr)
        return 2
    # The views marked "split": "test" were never fitted: score the avatar on them (docs/avatar.md).
    from backend.avatar.eval.score import score_test_views

    test = score_test_views(result.vertices, result.faces, result.uvs, result.texture, views.split("test"))
    result.info["test_views"] = test
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
        for row in test["views"]:
            print(f"  held-out {row['name']}: PSNR {row['psnr_masked_db']:.2f} dB, "
                  f"SSIM {row['ssim_masked']:.3f} inside the masks, mask IoU {row['mask_iou']:.3f}")
        if test["mean"] is not None:
            m = test["mean"]
            print(f"  held-out mean ({len(test['views'])} views): PSNR {m['psnr_masked_db']:.2f} dB, "
                  f"SSIM {m['ssim_masked']:.3f}, mask IoU {m['mask_iou']:.3f}")
        else:
            print("  no views marked \"split\": \"test\": nothing held out to score")
    return 0


class _ConsoleContext:
    """JobContext for the terminal: progress lines on stderr (throttled), never cancelled (Ctrl-C)."""

    def __init__(self, work_dir: Path, quiet: bool) -> None:
        self.work_dir = work_dir
        self.report = _progress(quiet)

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self.report(stage, fraction, message)

    def check_cancelled(self) -> None:
        return None


def run_generated(args: argparse.Namespace) -> int:
    """``--prompt`` / ``--image``: the job kind in-process; the avatar files into --out."""
    import shutil
    import tempfile

    import numpy as np

    from backend.jobs.api import JobInputError
    from backend.jobs.generate_avatar import generate_avatar
    from backend.models.registry import ModelMissingError

    if args.out is None or args.views is not None:
        print("avatar: --prompt/--image need --out DIR and no --views", file=sys.stderr)
        return 2
    if args.unwrap is not None or args.normals is not None:
        print("avatar: --unwrap/--normals are for --views; with --prompt use --view-normals", file=sys.stderr)
        return 2
    kind = "avatar.from_image" if args.image is not None else "avatar.from_text"
    params: dict[str, Any] = {
        "seed": args.seed, "views": args.num_views, "size": args.size, "steps": args.steps,
        "guidance": args.guidance, "scheduler": args.scheduler, "quality": args.quality,
        "conditions": [c.strip() for c in args.conditions.split(",") if c.strip()],
        "normals": args.view_normals, "negative_prompt": args.negative_prompt,
        **{k: getattr(args, k) for k in ("grid", "init_iters", "refine_iters", "render_scale", "texture_size",
                                         "texture_iters")},
    }  # fmt: skip
    if args.prompt is not None:
        params["prompt"] = args.prompt
    if args.image is not None:
        params.update(image=str(args.image), fit_body=args.fit_body, photo_fov=args.photo_fov)
        if args.keypoints is not None:
            params["keypoints"] = str(args.keypoints)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="avatar-gen-") as scratch:
        try:
            result = generate_avatar(kind, params, _ConsoleContext(Path(scratch), args.json))
        except (JobInputError, ModelMissingError) as exc:
            print(f"avatar: {exc}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, path in result.files.items():
            if name.startswith("views/"):
                continue
            written[name] = shutil.copy2(path, args.out / name)
        np.savez(args.out / "avatar_arrays.npz", **result.arrays)
        if args.views_out is not None:
            shutil.copytree(Path(scratch) / "views", args.views_out, dirs_exist_ok=True)
    summary = {**result.data, "files": {k: str(v) for k, v in written.items()},
               "views_out": None if args.views_out is None else str(args.views_out),
               "seconds": round(time.perf_counter() - start, 3)}
    summary.pop("joint_names", None)
    summary.pop("part_names", None)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"avatar written to {args.out} ({summary['vertices']} vertices, {summary['faces']} faces) "
              f"in {summary['seconds']} s" + (f"; views in {args.views_out}" if args.views_out else ""))
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
