"""Job kinds ``avatar.from_noise`` and ``avatar.from_image_inversion``: a trained 3DGM run -> a rigged avatar.

Stages: ``load`` (the run's EMA generator; a folder that is not a run is a JobInputError),
``sample`` (w from the seed and truncation, or PTI of the target view: ``invert``), ``render`` (K
ring views, the marching-cubes mesh, the views folder under ``sample/``), then the avatar.from_views
pipeline (sculpt, texture, rig) on those views. Params and result: protocol/kinds_threedgm.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params
from backend.jobs.avatar import avatar_job_result, stage_config

SAMPLE_SPAN = 0.3  # share of the job before the avatar pipeline


def _run_folder(param: Any, target: Path) -> Path:
    """The run's checkpoint.pt and config.json only (not its logs and sheets, nor a folder that
    holds the job's own), each read through the confinement check into the job's folder; a plain
    path (trusted local callers) is used as is."""
    if not hasattr(param, "roots"):
        return Path(param)
    from backend.jobs.confine import ConfinedFile
    from backend.threedgm.train import CHECKPOINT, CONFIG
    from protocol.kinds import ParamError

    target.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT, CONFIG):
        member = ConfinedFile(Path(param.path) / name, f"{param.given}/{name}", param.roots, param.where)
        try:
            (target / name).write_bytes(member.read_bytes(limit=8 << 30))
        except (ParamError, OSError):
            continue  # load_run names what is missing
    return target


def _load(p: Any, ctx: JobContext) -> Any:
    from backend.threedgm.sample import CheckpointError, load_run

    ctx.progress(0.0, "loading the 3DGM run", stage="load")
    folder = _run_folder(p.checkpoint, Path(ctx.work_dir) / "run")
    try:
        return load_run(folder)
    except CheckpointError as exc:
        given = str(getattr(p.checkpoint, "given", folder))
        raise JobInputError(str(exc).replace(str(folder), given)) from None


def _target(p: Any, run: Any, ctx: JobContext) -> Any:
    """The inversion target from a views folder (or a photo made into one with the body fitted to
    it: backend/jobs/threedgm_photo.py): one view's RGBA, camera and the SMPL-X body,
    cropped square around the mask and resized to the generator's output (as the training crops)."""
    import numpy as np
    import torch

    from backend.jobs.avatar import _read_views
    from backend.threedgm.dataset import camera_vector, crop_box, crop_resize
    from backend.threedgm.generator import BodyBatch
    from backend.threedgm.invert import Target
    from backend.threedgm.sample import pose_body

    if (p.target is None) == (p.image is None):
        raise JobInputError("params: give target (a views folder) or image (a photo), one of them")
    if p.image is not None:  # the body fitted to the photo, in the photo's assumed camera
        from backend.jobs.threedgm_photo import photo_views

        views = photo_views(p, ctx)
    else:
        views = _read_views(p.target, Path(ctx.work_dir))
    chosen = [v for v in views.views if p.target_view is None or v.name == p.target_view]
    if not chosen:
        raise JobInputError(f"target has no view named {p.target_view!r} "
                            f"(it has {', '.join(v.name for v in views.views)})")
    view = chosen[0]
    if not views.smplx:
        raise JobInputError("target carries no SMPL-X parameters (views.json 'smplx'): the inversion "
                            "renders through the body")
    mask = view.rgba[..., 3]
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        raise JobInputError(f"target view {view.name!r} has an empty mask (alpha)")
    S = run.G.cfg.out_res
    bbox = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1])
    x0, y0, side = crop_box(bbox, 0.1)
    bg = run.G.cfg.background
    rgb = torch.from_numpy(view.rgba[..., :3] * 2 - 1).permute(2, 0, 1).float()
    m = torch.from_numpy(mask).float()[None]
    rgb = rgb * m + bg * (1 - m)
    image, mask_c = crop_resize(rgb, x0, y0, side, S, bg), crop_resize(m, x0, y0, side, S, 0.0)
    cam = view.camera
    K = torch.tensor(np.asarray(cam.K, np.float64)).clone()
    s = S / side
    K[0, 0] *= s
    K[1, 1] *= s
    K[0, 2] = (K[0, 2] - x0) * s
    K[1, 2] = (K[1, 2] - y0) * s
    K, R, t = K.float(), torch.tensor(np.asarray(cam.R), dtype=torch.float32), torch.tensor(
        np.asarray(cam.t), dtype=torch.float32)
    params = {k: v for k, v in views.smplx.items() if k != "gender" and v is not None}
    body = pose_body(run.template, params)
    cond = camera_vector(K, R, t, body.root, S)
    target = Target(image[None], mask_c[None], K[None], R[None], t[None], cond[None],
                    BodyBatch(body.verts[None], body.transforms[None], body.root[None]))
    return target, view.name, views.extra.get("body_fit")


def _finish(p: Any, ctx: JobContext, run: Any, sample: Any, info: dict[str, Any]) -> JobResult:
    from backend.avatar.geometry.sculpt import NormalEstimatorMissing
    from backend.avatar.io.views import read_views
    from backend.avatar.pipeline import build_avatar, write_outputs
    from backend.threedgm.sample import extract_mesh, pose_mesh, write_sample

    config = stage_config(p)
    ctx.check_cancelled()
    ctx.progress(0.2, "rendering views and extracting the mesh", stage="render")
    sample_dir = Path(ctx.work_dir) / "sample"
    info = {**info, "init_shape": p.init_shape}
    mesh = extract_mesh(run.G, sample.w, sample.body.rest_verts, p.mesh_resolution)
    files = write_sample(sample, run, sample_dir, size=p.size, info=info, mesh=mesh)
    # the sculpting starts from the density's mesh posed as the views (or from the body)
    init = (pose_mesh(mesh, sample.body, run.template), mesh.faces) if p.init_shape == "density" else None
    views = read_views(files["views"])
    last = [0.0]

    def progress(stage: str, fraction: float, message: str) -> None:
        ctx.check_cancelled()
        now = time.monotonic()
        if now - last[0] > 0.5 or fraction >= 1.0:
            ctx.progress(SAMPLE_SPAN + (1 - SAMPLE_SPAN) * fraction, message, stage=stage)
            last[0] = now

    try:
        result = build_avatar(views, config, progress, init_mesh=init)
    except NormalEstimatorMissing as exc:
        raise JobInputError(str(exc)) from exc
    out = write_outputs(result, Path(ctx.work_dir) / "avatar", config)
    ctx.progress(1.0, "avatar ready", stage="export")
    extra = {f"sample/{name}": path for name, path in files.items() if name != "views"}
    for path in sorted(files["views"].rglob("*")):
        if path.is_file():
            extra[f"sample/views/{path.relative_to(files['views']).as_posix()}"] = path
    summary = json.loads(files["sample.json"].read_text())
    return avatar_job_result(result, out, {"threedgm": summary, "sample_folder": "sample"}, extra)


def _step_progress(ctx: JobContext, w_steps: int, tune_steps: int) -> Any:
    """PTI's per-step callback: cancel checked every step, progress (0.05 -> 0.2) at most twice a
    second, so the Jobs panel and the CLI see the inversion move."""
    count, last = [0], [0.0]
    total = max(1, w_steps + tune_steps)

    def check() -> None:
        ctx.check_cancelled()
        count[0] += 1
        now = time.monotonic()
        if now - last[0] > 0.5:
            i = count[0]
            phase = (f"latent step {i}/{w_steps}" if i <= w_steps
                     else f"tuning step {i - w_steps}/{tune_steps}")
            ctx.progress(0.05 + 0.15 * min(i / total, 1.0), phase, stage="invert")
            last[0] = now

    return check


def avatar_from_noise(params: Any, ctx: JobContext) -> JobResult:
    from backend.threedgm.sample import sample_avatar

    p = typed_params("avatar.from_noise", params)
    start = time.perf_counter()
    run = _load(p, ctx)
    ctx.check_cancelled()
    ctx.progress(0.1, f"sampling seed {p.seed}, truncation {p.truncation}", stage="sample")
    sample = sample_avatar(run, seed=p.seed, truncation=p.truncation, views=p.views)
    info = {"seed": p.seed, "truncation": p.truncation, "views": p.views, "run_step": run.step,
            "sample_seconds": time.perf_counter() - start}
    return _finish(p, ctx, run, sample, info)


def avatar_from_image_inversion(params: Any, ctx: JobContext) -> JobResult:
    from backend.threedgm.invert import InversionConfig, invert
    from backend.threedgm.sample import LoadedRun, sample_avatar

    p = typed_params("avatar.from_image_inversion", params)
    start = time.perf_counter()
    run = _load(p, ctx)
    target, view_name, body_fit = _target(p, run, ctx)
    ctx.progress(0.05, f"inverting view {view_name!r} (PTI)", stage="invert")
    result = invert(run.G, target, InversionConfig(w_steps=p.w_steps, tune_steps=p.tune_steps),
                    check=_step_progress(ctx, p.w_steps, p.tune_steps))
    tuned = LoadedRun(result.G, run.template, run.config, run.step, run.folder)
    sample = sample_avatar(tuned, seed=0, views=p.views, w=result.w)
    info = {"target_view": view_name, "w_steps": p.w_steps, "tune_steps": p.tune_steps,
            "psnr_pivot_db": result.psnr_pivot, "psnr_db": result.psnr, "psnr_person_db": result.psnr_person,
            "views": p.views, "run_step": run.step, "invert_seconds": time.perf_counter() - start,
            **({"body_fit": body_fit} if body_fit is not None else {})}
    return _finish(p, ctx, tuned, sample, info)
