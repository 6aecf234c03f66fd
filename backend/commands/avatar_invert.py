"""CLI: ``avatar-studio avatar --invert PHOTO.png|VIEWS_DIR --checkpoint RUN_DIR --out DIR``.

Runs the job kind ``avatar.from_image_inversion`` in-process (backend/jobs/threedgm_avatar.py: the
same params, stages and errors as a submitted job): a file is the job's ``image`` (the body is
fitted to the photo, ``--photo-fov``), a folder its ``target`` (a views folder with the camera and
the SMPL-X body, ``--target-view``). PTI (``--w-steps`` latent steps, then ``--tune-steps``
generator steps) inverts it, the tuned generator renders the ring views, the avatar pipeline
sculpts, textures and rigs them. Prints the inversion's PSNR on the given view and where the
rigged glb is; ``--out`` is written only when the job succeeded. Registered through
``backend/commands/avatar.py``.
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

from backend.commands.avatar_noise import KNOBS

KIND = "avatar.from_image_inversion"
# The other sources of `avatar`: one source per run (dest -> the flag the error names).
OTHER_SOURCES = {"views": "--views", "prompt": "--prompt", "image": "--image", "from_noise": "--from-noise"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--invert`` group; ``--checkpoint``, ``--photo-fov``, ``--num-views`` and ``--size`` are
    the other groups' flags (shared), the defaults the contract's."""
    from protocol.kinds import contract

    c = contract(KIND)
    group = parser.add_argument_group(f"from one image by 3DGM inversion (job {KIND}; docs/threedgm.md)")
    group.add_argument("--invert", type=Path, metavar="PHOTO|VIEWS_DIR",
                       help="a photo (the body is fitted to it, --photo-fov) or a views folder with its "
                            "camera and SMPL-X: reconstructed by PTI of the --checkpoint run")
    group.add_argument("--target-view", help="--invert VIEWS_DIR: the view inverted (default: the first)")
    for flag, name in (("--w-steps", "w_steps"), ("--tune-steps", "tune_steps")):
        param = c.param(name)
        group.add_argument(flag, dest=name, type=int, default=param.default, metavar="N",
                           help=f"--invert: {param.help} ({param.type.doc()}; default {param.default})")


def run_from_inversion(args: argparse.Namespace, context: Any) -> int:
    import numpy as np

    from backend.jobs.api import JobInputError, get_job_kind
    from backend.models.registry import ModelMissingError

    others = [flag for dest, flag in OTHER_SOURCES.items() if getattr(args, dest, None) not in (None, False)]
    if others:
        print(f"avatar: --invert takes no {', '.join(others)} (one source per avatar)", file=sys.stderr)
        return 2
    if args.out is None or args.checkpoint is None:
        print("avatar: --invert needs --checkpoint RUN_DIR (a `3dgm train` run) and --out DIR",
              file=sys.stderr)
        return 2
    source = args.invert
    if not source.exists():
        print(f"avatar: --invert {source}: no such file or folder", file=sys.stderr)
        return 2
    if source.is_dir():
        given = {"target": str(source), "target_view": args.target_view}
    elif args.target_view is not None:
        print("avatar: --target-view is for --invert VIEWS_DIR (a photo is one view)", file=sys.stderr)
        return 2
    else:
        given = {"image": str(source), "photo_fov": args.photo_fov}
    params: dict[str, Any] = {"checkpoint": str(args.checkpoint), **given, "w_steps": args.w_steps,
                              "tune_steps": args.tune_steps, "views": args.num_views,
                              **({"size": args.size} if args.size is not None else {}),
                              **{k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="avatar-invert-") as scratch:
        try:
            result = get_job_kind(KIND).load()(params, context(Path(scratch), args.json))
        except (JobInputError, ModelMissingError) as exc:
            print(f"avatar: {exc}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        for name, path in result.files.items():
            target = args.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        np.savez(args.out / "avatar_arrays.npz", **result.arrays)
    summary = {**result.data, "out": str(args.out), "glb": str(args.out / "avatar.glb"),
               "seconds": round(time.perf_counter() - start, 3)}
    summary.pop("joint_names", None)
    summary.pop("part_names", None)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    info = summary["threedgm"]
    print(f"inversion of view {info['target_view']!r}: PSNR {info['psnr_db']:.2f} dB "
          f"(pivot {info['psnr_pivot_db']:.2f} dB, person's pixels {info['psnr_person_db']:.2f} dB)")
    fit = info.get("body_fit")
    if fit:
        print(f"body fitted to the photo: silhouette IoU {fit['diagnostics']['mean_iou']:.3f}")
    print(f"rigged avatar: {summary['glb']} ({summary['vertices']} vertices) in {summary['seconds']} s")
    return 0
