"""Job kinds ``avatar.from_text`` and ``avatar.from_image``: a prompt (and a photo) -> a rigged avatar.

Stages (each reports progress under its own name and checks cancel before it starts):

1. ``load``: the ControlNet pipeline through the model registry (backend/models/load.py): the
   ``base-diffusion`` role + one ControlNet role per condition kind (+ the ``vae`` override). A
   role that is not on this machine fails the job at once with the registry's
   :class:`~backend.models.registry.ModelMissingError` (role, model, ``avatar-studio models
   download ROLE``), before anything slow runs.
2. ``conditions``: the body (``body`` param, default the neutral stand-in in an A-pose) rendered
   from K ring cameras, the first in front of it (backend/generate/conditions.py).
3. ``generate``: the K views in one batch with cross-frame attention (backend/generate/multiview.py);
   with a photo (``avatar.from_image``) the photo is the anchor view, view 0, the front camera.
   Progress per denoising step; a cancel stops the run between steps.
4. ``views``: masks (the silhouette refined by colour), normals (the body's render, the
   normal-estimator role, or none) and the views folder with the body's SMPL-X parameters
   (backend/generate/to_views.py); the views are sent as previews, one event each.
5. the avatar.from_views pipeline (backend/avatar/pipeline.py: sculpt, texture, rig) on that folder.

Params and result: protocol/kinds.py (``avatar-studio submit --help-kind avatar.from_text``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params
from backend.jobs.avatar import avatar_job_result

# quality -> defaults of the params left out: view size, denoising steps and the avatar stages.
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"size": 384, "steps": 20, "grid": 48, "init_iters": 60, "refine_iters": 80,
              "render_scale": 0.5, "texture_size": 512, "texture_iters": 30},
    "standard": {"size": 512, "steps": 25, "grid": 64, "init_iters": 100, "refine_iters": 160,
                 "render_scale": 0.5, "texture_size": None, "texture_iters": 60},  # None: the views' match
    "high": {"size": 512, "steps": 30, "grid": 96, "init_iters": 150, "refine_iters": 300,
             "render_scale": 0.75, "texture_size": 2048, "texture_iters": 100},
}
AVATAR_KNOBS = ("grid", "init_iters", "refine_iters", "render_scale", "texture_size", "texture_iters")
CONTROLNET_ROLE = {"pose": "controlnet-openpose", "depth": "controlnet-depth", "normal": "controlnet-normal"}

# Share of the whole job each stage gets; the avatar pipeline's own fractions fill AVATAR_SPAN.
STAGE_SPANS = {"load": (0.0, 0.03), "fit": (0.03, 0.08), "conditions": (0.08, 0.1), "generate": (0.1, 0.35),
               "views": (0.35, 0.4)}  # fit: avatar.from_image only
AVATAR_SPAN = (0.4, 1.0)


def a_pose() -> dict[str, Any]:
    """The neutral body in an A-pose (arms ~57 degrees down): the default body to dress."""
    body_pose = [0.0] * 63
    body_pose[15 * 3 + 2] = -1.0  # left shoulder (joint 16 -> body_pose row 15), about z
    body_pose[16 * 3 + 2] = 1.0  # right shoulder
    return {"gender": "neutral", "global_orient": [0.0, 0.0, 0.0], "body_pose": body_pose,
            "transl": [0.0, 0.0, 0.0]}


def first_frame(body: dict[str, Any] | None) -> dict[str, Any]:
    """The SMPL-X payload's frame 0 as flat lists (conditions take one frame), or the A-pose."""
    if body is None:
        return a_pose()
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, np.ndarray):
            out[key] = (value[0] if value.ndim == 2 else value).astype(np.float64).tolist()
        elif key == "gender":
            out[key] = str(value)
    out.setdefault("gender", "neutral")
    return out


def settings(p: Any) -> dict[str, Any]:
    """The quality preset with the given params over it."""
    chosen = dict(QUALITY_PRESETS[p.quality])
    for key in ("size", "steps", *AVATAR_KNOBS):
        if getattr(p, key) is not None:
            chosen[key] = getattr(p, key)
    if chosen["size"] % 8:
        raise JobInputError(f"params.size: must be a multiple of 8 (the VAE's factor), got {chosen['size']}")
    return chosen


def read_photo(image: Any) -> np.ndarray:
    """(H,W,3) uint8 of the photo param (a confined file: read through its check), or a local path;
    (H,W,4) when it has transparency (the alpha is the person's mask)."""
    from PIL import Image, UnidentifiedImageError

    data = image.read_bytes() if hasattr(image, "read_bytes") else Path(image).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return np.asarray(im.convert("RGBA" if alpha else "RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise JobInputError(f"params.image: not a readable image ({exc})") from None


class Stages:
    """Progress per stage mapped into the job's overall fraction; cancel checked at every report
    (every denoising step and avatar iteration), events rate-limited within a stage."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.last = 0.0
        self.stage = ""

    def report(self, stage: str, fraction: float, message: str, span: tuple[float, float] | None = None,
               force: bool = False, preview: np.ndarray | None = None) -> None:
        self.ctx.check_cancelled()
        lo, hi = span or STAGE_SPANS[stage]
        now = time.monotonic()
        # A new stage, a preview and 100 % always go out; ticks within a stage at most 2 a second.
        if force or stage != self.stage or preview is not None or fraction >= 1.0 or now - self.last > 0.5:
            self.stage = stage
            self.ctx.progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message, stage=stage,
                              preview=preview)
            self.last = now

    def start(self, stage: str, message: str) -> None:
        self.report(stage, 0.0, message, force=True)

    def avatar(self) -> Callable[[str, float, str], None]:
        """The avatar pipeline's callback (its fraction is already over its whole run)."""
        return lambda stage, fraction, message: self.report(stage, fraction, message, AVATAR_SPAN)


def generate_avatar(kind: str, params: Any, ctx: JobContext) -> JobResult:
    from backend.avatar.geometry.sculpt import NormalEstimatorMissing
    from backend.avatar.io.views import read_views
    from backend.avatar.pipeline import build_avatar, config_from_options, write_outputs
    from backend.generate.conditions import body_conditions
    from backend.generate.masks import refine_masks
    from backend.generate.multiview import DEFAULT_NEGATIVE, generate_views
    from backend.generate.to_views import write_generated_views
    from backend.models.load import load_controlnet_pipeline
    from backend.models.registry import ModelRegistry

    p = typed_params(kind, params)
    chosen = settings(p)
    photo = read_photo(p.image) if kind == "avatar.from_image" else None
    work = Path(ctx.work_dir)
    stages = Stages(ctx)
    timings: dict[str, float] = {}

    stages.start("load", "loading the diffusion models")
    t = time.perf_counter()
    roles = tuple(CONTROLNET_ROLE[k] for k in p.conditions)
    pipe = load_controlnet_pipeline(roles, registry=ModelRegistry.load())  # ModelMissingError: clean
    timings["load"] = time.perf_counter() - t

    anchor = None
    if photo is not None:  # the body fitted to the photo, seen by the photo's camera (view 0)
        from backend.jobs.photo_body import photo_body

        stages.start("fit", "fitting the body to the photo")
        t = time.perf_counter()
        anchor = photo_body(photo, p, chosen["size"], lambda f, m: stages.report("fit", f, m))
        timings["fit"] = time.perf_counter() - t

    stages.start("conditions", f"rendering the body from {p.views} cameras")
    t = time.perf_counter()
    body = anchor.body if anchor is not None and anchor.body is not None else first_frame(p.body)
    conditions = body_conditions(body, p.views, width=chosen["size"], height=chosen["size"],
                                 anchor_camera=None if anchor is None else anchor.camera)
    timings["conditions"] = time.perf_counter() - t

    stages.start("generate", f"generating {p.views} views ({chosen['steps']} steps)")
    t = time.perf_counter()
    try:
        generated = generate_views(
            pipe, conditions, p.prompt,
            negative_prompt=DEFAULT_NEGATIVE if p.negative_prompt is None else p.negative_prompt,
            seed=p.seed, guidance=p.guidance, steps=chosen["steps"], scheduler=p.scheduler,
            kinds=tuple(p.conditions), image=None if anchor is None else anchor.rgb, anchor=0,
            window=p.window,
            progress=lambda step, steps: stages.report("generate", step / steps, f"step {step}/{steps}"),
        )  # fmt: skip
    except ValueError as exc:
        raise JobInputError(str(exc)) from exc
    del pipe  # the diffusion models' memory goes before the avatar stages
    timings["generate"] = time.perf_counter() - t

    stages.start("views", "masks, normals and the views folder")
    t = time.perf_counter()
    views_dir = work / "views"
    images, view_images, masks = generated.uint8(), generated.images, None
    if anchor is not None:  # view 0 is the photo itself (not its VAE round trip), with its own mask
        masks = refine_masks(generated.images, conditions.mask)
        if anchor.mask is not None:
            masks[0] = anchor.mask
        images[0] = anchor.rgb
        view_images = generated.images.copy()
        view_images[0] = anchor.rgb.astype(np.float32) / 255.0
    write_generated_views(views_dir, view_images, conditions, masks=masks, info=generated.info,
                          normals="body" if p.normals == "body" else "none")
    for i, name in enumerate(conditions.names):
        stages.report("views", (i + 1) / len(images), f"view {name}", preview=images[i])
    timings["views"] = time.perf_counter() - t

    try:
        config = config_from_options(
            **{k: chosen[k] for k in AVATAR_KNOBS}, normals={"body": "views"}.get(p.normals, p.normals)
        )
        result = build_avatar(read_views(views_dir), config, stages.avatar())
    except (TypeError, ValueError, NormalEstimatorMissing) as exc:
        raise JobInputError(str(exc)) from exc
    files = write_outputs(result, work / "avatar", config)
    ctx.progress(1.0, "avatar ready", stage="export")

    view_files = {f"views/{f.relative_to(views_dir).as_posix()}": f
                  for f in sorted(views_dir.rglob("*")) if f.is_file()}
    generated_info = {**generated.info, "prompts": generated.prompts, "quality": p.quality,
                      "size": chosen["size"], "timings_s": {k: round(v, 3) for k, v in timings.items()},
                      "image_guided": photo is not None,
                      **({"body_fit": anchor.record} if anchor is not None else {})}
    extra = {"generated": generated_info, "views_folder": "views"}
    return avatar_job_result(result, files, extra, view_files)


def avatar_from_text(params: Any, ctx: JobContext) -> JobResult:
    return generate_avatar("avatar.from_text", params, ctx)


def avatar_from_image(params: Any, ctx: JobContext) -> JobResult:
    return generate_avatar("avatar.from_image", params, ctx)
