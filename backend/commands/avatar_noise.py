"""CLI: ``avatar-studio avatar --from-noise --seed S --checkpoint RUN_DIR --out DIR``.

Runs the job kind ``avatar.from_noise`` in-process (backend/jobs/threedgm_avatar.py: the same
params, stages and errors as a submitted job) and copies its files into ``--out``: the avatar
(avatar.glb, .obj/.mtl/.png, avatar.json, avatar_arrays.npz) and ``sample/`` (the rendered views
folder, the density's mesh, sample.json). Registered through ``backend/commands/avatar.py``.
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

KNOBS = ("grid", "init_iters", "refine_iters", "render_scale", "texture_size", "texture_iters", "unwrap",
         "normals")


def run_from_noise(args: argparse.Namespace, context: Any) -> int:
    import numpy as np

    from backend.jobs.api import JobInputError, get_job_kind

    if args.out is None or args.checkpoint is None or args.views is not None or args.prompt is not None:
        print("avatar: --from-noise needs --checkpoint RUN_DIR and --out DIR (and no --views/--prompt)",
              file=sys.stderr)
        return 2
    params: dict[str, Any] = {"checkpoint": str(args.checkpoint), "seed": args.seed,
                              "truncation": args.truncation, "views": args.num_views,
                              **({"size": args.size} if args.size is not None else {}),
                              **{k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="avatar-noise-") as scratch:
        try:
            result = get_job_kind("avatar.from_noise").load()(params, context(Path(scratch), args.json))
        except JobInputError as exc:
            print(f"avatar: {exc}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, path in result.files.items():
            target = args.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            written[name] = shutil.copy2(path, target)
        np.savez(args.out / "avatar_arrays.npz", **result.arrays)
    summary = {**result.data, "out": str(args.out), "seconds": round(time.perf_counter() - start, 3)}
    summary.pop("joint_names", None)
    summary.pop("part_names", None)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"avatar from noise (seed {args.seed}) written to {args.out} ({summary['vertices']} vertices) "
              f"in {summary['seconds']} s")
    return 0
