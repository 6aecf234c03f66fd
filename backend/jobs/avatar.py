"""Job kind ``avatar.from_views``: sculpt, texture and rig an avatar from a views folder.

Params and results are declared in the contract (protocol/kinds.py; ``avatar-studio submit
--help-kind avatar.from_views``): ``views`` (a views folder inside the server's input roots) or
``synthetic`` (make a synthetic character first), and the pipeline's knobs. The body is the
server's ``smplx`` model role, else the stand-in. Result arrays use split vertices (one vertex per
distinct position+UV), in the canonical bind pose (SMPL-X zero pose, the glb's too), plus the views'
pose: ``vertices_posed = LBS(vertices + pose_offsets, weights, pose_transforms)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params


def _read_views(views: Any, work_dir: Path) -> Any:
    """Read a views folder; a confined one is first copied file by file through the check, so the
    pipeline reads only what lay inside the input roots."""
    from backend.avatar.io.views import ViewsFormatError, read_views

    folder = views.copy_into(work_dir / "views-in") if hasattr(views, "copy_into") else Path(views)
    try:
        return read_views(folder)
    except ViewsFormatError as exc:
        # Name the client's folder, not the private copy.
        raise JobInputError(str(exc).replace(str(folder), str(getattr(views, "given", views)))) from None


# The avatar pipeline's stage knobs: the same contract fields in every kind that ends in it
# (avatar.from_views, avatar.from_noise, avatar.from_image_inversion).
STAGE_OPTIONS = ("grid", "init_iters", "refine_iters", "texture_size", "texture_iters", "unwrap", "normals",
                 "render_scale")


def stage_config(p: Any) -> Any:
    """The pipeline's ``AvatarConfig`` from a job's typed params (None = the pipeline's default);
    a value the pipeline refuses fails the job as a :class:`JobInputError`."""
    from backend.avatar.pipeline import config_from_options

    try:
        return config_from_options(**{name: getattr(p, name) for name in STAGE_OPTIONS})
    except (TypeError, ValueError) as exc:
        raise JobInputError(str(exc)) from exc


def avatar_from_views(params: Any, ctx: JobContext) -> JobResult:
    from backend.avatar.geometry.sculpt import NormalEstimatorMissing
    from backend.avatar.pipeline import build_avatar, write_outputs

    p = typed_params("avatar.from_views", params)
    config = stage_config(p)
    out_dir = Path(ctx.work_dir) / "avatar"
    body = None
    if p.synthetic is not None:
        from backend.avatar.eval.synthetic import SyntheticConfig, make_synthetic

        ctx.progress(0.0, "making a synthetic character", stage="synthetic")
        views, char = make_synthetic(SyntheticConfig(**p.synthetic), Path(ctx.work_dir) / "views")
        body = char.body
    else:
        views = _read_views(p.views, Path(ctx.work_dir))

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
    return avatar_job_result(result, files)


def avatar_job_result(result: Any, files: dict[str, Path], extra_data: dict[str, Any] | None = None,
                      extra_files: dict[str, Path] | None = None) -> JobResult:
    """The result of every avatar kind from an ``AvatarResult``: the summary, the contract's arrays
    and the written files (the arrays' own npz is left out: the arrays travel as arrays)."""
    from backend.avatar.pipeline import result_arrays

    return JobResult(
        data={
            "timings_s": result.timings,
            "info": result.info,
            "joint_names": result.joint_names,
            "part_names": result.part_names,
            "vertices": len(result.vertices),
            "faces": len(result.faces),
            **(extra_data or {}),
        },
        arrays=result_arrays(result),
        files={**{name: path for name, path in files.items() if name != "avatar_arrays.npz"},
               **(extra_files or {})},
    )
