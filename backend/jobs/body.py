"""Job kinds ``body.preview`` and ``body.mesh``: typed params (protocol/kinds.py) to the body and
render code. The params and results are declared (and documented) in the contracts; ``python -m
protocol.kinds`` or ``avatar-studio submit --help-kind body.mesh`` prints them.

Both use the body of the server's ``smplx`` model role (models.toml) when configured, else the
generated stand-in; a client cannot name a model file. Motion specs (a name, an AMASS ``.npz`` or
``.bvh`` inside the input roots, an AMASS or SMPL-X payload) go through the one
:func:`backend.body.procedural.load_motion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params


def load_motion(spec: Any, n_frames: int | None = None, fps: float | None = None) -> Any:
    """:func:`backend.body.procedural.load_motion`, its errors as :class:`JobInputError`."""
    from backend.body.procedural import load_motion as load

    try:
        return load(spec, fps=fps, n_frames=n_frames)
    except KeyError as exc:
        raise JobInputError(str(exc.args[0]) if exc.args else str(exc)) from None
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, JobInputError):
            raise
        raise JobInputError(f"bad motion: {exc}") from None


def _cameras(spec: Any) -> Any:
    from protocol.cameras import CameraPath

    if isinstance(spec, Mapping):
        try:
            return CameraPath.from_payload(spec)
        except ValueError as exc:
            raise JobInputError(f"params.cameras: {exc}") from None
    return spec  # "orbit:N", checked by the contract


def body_preview(params: Any, ctx: JobContext) -> JobResult:
    p = typed_params("body.preview", params)
    width, height = p.size
    motion = load_motion(p.motion, p.frames, p.fps)  # before torch is imported: bad input fails fast

    from backend.preview.pipeline import KEYPOINT_NAMES, PreviewConfig, render_preview
    try:
        config = PreviewConfig(
            motion=motion, cameras=_cameras(p.cameras), width=width, height=height, frames=p.frames,
            passes=tuple(p.passes),
            betas=np.asarray(p.betas, dtype=np.float64) if p.betas is not None else None,
            gender=p.gender or motion.gender or "neutral", color=p.color, mp4=p.mp4, hands=p.hands,
            face=p.face,
        )
        ctx.check_cancelled()
        result = render_preview(config, Path(ctx.work_dir),
                                progress=lambda f, m: ctx.progress(f, m, stage="render"),
                                check_cancelled=ctx.check_cancelled)
    except ValueError as exc:
        if isinstance(exc, JobInputError):
            raise
        raise JobInputError(str(exc)) from exc
    cams = result.cameras
    return JobResult(
        data={
            "frames": result.n_frames, "width": cams.width, "height": cams.height, "fps": result.fps,
            "frame_start": 1, "passes": list(config.passes), "depth_range": list(result.depth_range),
            "depth_encoding": "uint16 PNG: 0 = background, else near + (v - 1) / 65534 * (far - near)",
            "normal_encoding": "RGB = (n + 1) / 2, camera axes x right, y down, z forward (OpenCV)",
            "keypoint_names": list(KEYPOINT_NAMES), "near": cams.near, "far": cams.far, **result.info,
        },
        arrays={
            "camera_K": cams.K.astype(np.float64), "camera_R": cams.R.astype(np.float64),
            "camera_t": cams.t.astype(np.float64), "joints_2d": result.joints_2d.astype(np.float32),
            "joints_visible": result.joints_visible.astype(np.uint8),
        },
        files=result.files,
    )


def body_mesh(params: Any, ctx: JobContext) -> JobResult:
    import torch

    from backend.body.loading import load_body_model
    from backend.body.model import BodyParams
    from protocol.smplx import PER_FRAME_FIELDS

    p = typed_params("body.mesh", params)
    motion = None if p.pose is not None else load_motion(p.motion, p.frames, p.fps)  # fail fast
    try:
        model = load_body_model(p.gender)  # the smplx role's body, else the stand-in
    except (ValueError, FileNotFoundError) as exc:
        raise JobInputError(str(exc)) from exc
    ctx.progress(0.1, "body model loaded", stage="mesh")
    ctx.check_cancelled()
    if motion is None:
        try:
            body_params = BodyParams.from_arrays(p.pose, num_betas=model.num_betas,
                                                 num_expression=model.num_expression)
        except (ValueError, RuntimeError) as exc:
            raise JobInputError(f"params.pose: {exc}") from exc
        fps = float(p.pose.get("fps", 30.0))
    else:
        body_params = motion.to_params(num_betas=model.num_betas, num_expression=model.num_expression)
        fps = motion.fps
    if p.frames:
        n = min(p.frames, body_params.n_frames)
        for name in PER_FRAME_FIELDS:
            setattr(body_params, name, getattr(body_params, name)[:n])
    for key, size in (("betas", model.num_betas), ("expression", model.num_expression)):
        given = getattr(p, key)
        if given is not None:
            values = torch.as_tensor(np.asarray(given, dtype=np.float32).reshape(-1)[:size])
            vec = torch.zeros(size)
            vec[: values.shape[0]] = values
            setattr(body_params, key, vec)
    ctx.check_cancelled()
    with torch.no_grad():
        out = model(body_params)
    ctx.progress(0.9, f"posed {body_params.n_frames} frames", stage="mesh")
    return JobResult(
        data={
            "joint_names": list(model.joint_names), "part_names": list(model.part_names),
            "n_frames": body_params.n_frames, "fps": fps, "n_vertices": int(out.rest_vertices.shape[0]),
            "model": "stand-in" if model.is_standin else "licensed",
            "units": "metres, protocol world (Y up)",
        },
        arrays={
            "rest_vertices": out.rest_vertices.numpy().astype(np.float32),
            "faces": model.faces.astype(np.int32),
            "weights": model.skinning_weights.detach().numpy().astype(np.float32),
            "parents": model.parents.astype(np.int32),
            "joints_rest": out.rest_joints.numpy().astype(np.float32),
            "part_labels": model.part_labels().astype(np.int32),
            "posed_vertices": out.vertices.numpy().astype(np.float32),
            "joint_transforms": out.transforms.numpy().astype(np.float32),
        },
    )
