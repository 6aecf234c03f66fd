"""Job kind ``avatar.from_views``: sculpt, texture and rig an avatar from a views folder.

params:
    views         path (on the backend) of a views folder (docs/avatar.md); or
    synthetic     {"shape": "average"|"tall"|"broad", "resolution": 512, "skirt": true, "hair": true}:
                  make a synthetic character first and build the avatar from its views
    grid, init_iters, refine_iters, render_scale, texture_size, texture_iters,
    unwrap ("cylinder"|"xatlas"), normals ("auto"|"views"|"estimator"|"none"), body_model_path
Result files: ``avatar.glb``, ``avatar.obj``, ``avatar.mtl``, ``avatar.png``, ``avatar.json``.
Result arrays (split vertices: one vertex per distinct position+UV, duplicated on UV seams):
``vertices`` (N,3) f32, ``faces`` (F,3) i32, ``uvs`` (N,2) f32 (v=0 bottom), ``normals`` (N,3),
``texture`` (S,S,3) u8 (row 0 = top), ``weights`` (N,55) f32, ``parents`` (55,) i32,
``joints_rest`` (55,3) f32, ``part_labels`` (N,) i32, all in the canonical bind pose (SMPL-X zero
pose, the glb's too); the views' pose: ``vertices_posed``/``normals_posed`` (N,3),
``joints_posed`` (55,3), ``pose_transforms`` (55,4,4) and ``pose_offsets`` (N,3) (pose
correctives), with ``vertices_posed = LBS(vertices + pose_offsets, weights, pose_transforms)``.
data: timings, joint/part names, info.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.jobs.api import JobContext, JobInputError, JobResult


def avatar_from_views(params: dict[str, Any], ctx: JobContext) -> JobResult:
    from backend.avatar.geometry.sculpt import NormalEstimatorMissing
    from backend.avatar.io.views import ViewsFormatError, read_views
    from backend.avatar.pipeline import build_avatar, config_from_options, result_arrays, write_outputs

    try:
        config = config_from_options(
            **{
                k: params[k]
                for k in (
                    "grid",
                    "init_iters",
                    "refine_iters",
                    "texture_size",
                    "texture_iters",
                    "unwrap",
                    "normals",
                    "render_scale",
                    "body_model_path",
                )
                if k in params
            }
        )
    except (TypeError, ValueError) as exc:
        raise JobInputError(str(exc)) from exc
    out_dir = Path(ctx.work_dir) / "avatar"
    body = None
    if "synthetic" in params:
        from backend.avatar.eval.synthetic import SHAPE_PRESETS, SyntheticConfig, make_synthetic

        spec = dict(params["synthetic"] or {})
        if spec.get("shape", "average") not in SHAPE_PRESETS:
            raise JobInputError(
                f"unknown synthetic shape {spec.get('shape')!r}; known: {sorted(SHAPE_PRESETS)}"
            )
        ctx.progress(0.0, "making a synthetic character", stage="synthetic")
        views, char = make_synthetic(
            SyntheticConfig(
                shape=spec.get("shape", "average"),
                resolution=int(spec.get("resolution", 512)),
                skirt=bool(spec.get("skirt", True)),
                hair=bool(spec.get("hair", True)),
            ),
            Path(ctx.work_dir) / "views",
        )
        body = char.body
    elif "views" in params:
        try:
            views = read_views(params["views"])
        except ViewsFormatError as exc:
            raise JobInputError(str(exc)) from exc
    else:
        raise JobInputError("avatar.from_views needs params.views (a views folder) or params.synthetic")

    last = [0.0]

    def progress(stage: str, fraction: float, message: str) -> None:
        ctx.check_cancelled()
        now = time.monotonic()
        if now - last[0] > 0.5 or fraction >= 1.0:  # rate-limit events; every iteration checks cancel
            ctx.progress(fraction, message, stage=stage)
            last[0] = now

    try:
        result = build_avatar(views, config, progress, body=body)
    except NormalEstimatorMissing as exc:
        raise JobInputError(str(exc)) from exc
    files = write_outputs(result, out_dir, config)
    ctx.progress(1.0, "avatar ready", stage="export")
    return JobResult(
        data={
            "timings_s": result.timings,
            "info": result.info,
            "joint_names": result.joint_names,
            "part_names": result.part_names,
            "vertices": len(result.vertices),
            "faces": len(result.faces),
        },
        arrays=result_arrays(result),
        files={name: path for name, path in files.items() if name != "avatar_arrays.npz"},
    )
