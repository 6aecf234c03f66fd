"""Job kinds ``body.preview`` and ``body.mesh``: parameter parsing around the body/render code.

``body.preview`` params (all optional):
    motion   procedural name ("walk", "turn", "wave", "a-pose", "t-pose"; default "a-pose"), an
             AMASS npz path on the backend, an AMASS payload (``poses``, ``trans``, ...) or an
             SMPL-X parameter payload (``global_orient``, ``body_pose``, ...)
    cameras  "orbit:N" (default "orbit:8") or a CameraPath payload (K, R, t, width, height, ...)
    betas    list of shape coefficients (override the motion's)
    size     [W, H] or "WxH" (default 512x512; a CameraPath's own size wins)
    frames   number of frames (default: max(motion frames, camera frames))
    fps      resample the motion to this frame rate
    passes   subset of rgb, mask, depth, normal, pose;  color "parts"|"grey";  gender; mp4 (bool)
Result: files ``<pass>/0001.png``... and ``rgb.mp4``; arrays ``camera_K``/``camera_R``/``camera_t``
(one camera per frame), ``joints_2d`` (F,127,2), ``joints_visible`` (F,127); data with sizes,
fps, ``depth_range`` [near, far] for decoding the 16-bit depth PNGs and the keypoint names.

``body.mesh`` params: betas, expression, gender, and either ``motion`` (as above) or ``pose`` (an
SMPL-X parameter payload), ``frames`` (limit). Result arrays: ``rest_vertices`` (V,3),
``faces`` (F,3) int32, ``weights`` (V,55), ``parents`` (55,) int32, ``joints_rest`` (55,3),
``part_labels`` (V,) int32, ``posed_vertices`` (N,V,3), ``joint_transforms`` (N,55,4,4);
data: joint_names, part_names, n_frames, fps, model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError, JobResult

DEFAULT_MOTION = "a-pose"


def _parse_size(size: Any) -> tuple[int, int]:
    if size is None:
        return 512, 512
    try:
        if isinstance(size, str):
            w, h = (int(v) for v in size.lower().split("x"))
        else:
            w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise JobInputError(f"size must be [W, H] or 'WxH', got {size!r}") from None
    if not (0 < w <= 4096 and 0 < h <= 4096):
        raise JobInputError(f"size out of range: {w}x{h}")
    return w, h


def load_motion(spec: Any, n_frames: int | None = None, fps: float | None = None) -> Any:
    """A :class:`backend.body.motion.Motion` from a name, an npz path or a payload dict."""
    from backend.body.motion import Motion, MotionFormatError, load_amass, resample
    from backend.body.procedural import procedural_motion

    spec = DEFAULT_MOTION if spec is None else spec
    try:
        if isinstance(spec, str):
            if spec.endswith(".npz"):
                if not Path(spec).is_file():
                    raise JobInputError(f"motion file not found: {spec}")
                motion = load_amass(spec)
            else:
                motion = procedural_motion(spec, n_frames)
        elif isinstance(spec, Mapping):
            if "poses" in spec:
                # An AMASS file's arrays sent inline: reuse the one AMASS reader.
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "motion.npz"
                    with open(path, "wb") as fh:
                        np.savez(fh, **{k: np.asarray(v) for k, v in spec.items()})
                    motion = load_amass(path)
            elif "global_orient" in spec:
                motion = Motion.from_payload(dict(spec))
            else:
                raise JobInputError("motion payload needs AMASS 'poses'/'trans' or SMPL-X 'global_orient'")
        else:
            raise JobInputError(f"motion must be a name, an npz path or a payload, got {type(spec).__name__}")
    except KeyError as exc:
        raise JobInputError(str(exc.args[0]) if exc.args else str(exc)) from None
    except (MotionFormatError, ValueError) as exc:
        if isinstance(exc, JobInputError):
            raise
        raise JobInputError(f"bad motion: {exc}") from exc
    if fps is not None and float(fps) != motion.fps:
        motion = resample(motion, float(fps))
    return motion


def _cameras(spec: Any) -> Any:
    from protocol.cameras import CameraPath

    if spec is None:
        return "orbit:8"
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        try:
            return CameraPath.from_payload(spec)
        except ValueError as exc:
            raise JobInputError(str(exc)) from exc
    raise JobInputError(f"cameras must be 'orbit:N' or a CameraPath payload, got {type(spec).__name__}")


def body_preview(params: dict[str, Any], ctx: JobContext) -> JobResult:
    from backend.preview.pipeline import KEYPOINT_NAMES, PreviewConfig, render_preview

    width, height = _parse_size(params.get("size"))
    frames = params.get("frames")
    motion = load_motion(params.get("motion"), int(frames) if frames else None, params.get("fps"))
    try:
        config = PreviewConfig(
            motion=motion, cameras=_cameras(params.get("cameras")), width=width, height=height,
            frames=int(frames) if frames else None,
            passes=tuple(params.get("passes", ("rgb", "mask", "depth", "normal", "pose"))),
            betas=np.asarray(params["betas"], dtype=np.float64) if params.get("betas") is not None else None,
            gender=str(params.get("gender", motion.gender or "neutral")),
            color=str(params.get("color", "parts")), mp4=bool(params.get("mp4", True)),
            hands=bool(params.get("hands", True)), face=bool(params.get("face", True)),
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
            "camera_t": cams.t.astype(np.float64), "joints_2d": result.joints_2d,
            "joints_visible": result.joints_visible.astype(np.uint8),
        },
        files=result.files,
    )


def body_mesh(params: dict[str, Any], ctx: JobContext) -> JobResult:
    import torch

    from backend.body.loading import load_body_model
    from backend.body.model import BodyParams

    gender = str(params.get("gender", "neutral"))
    try:
        model = load_body_model(gender, params.get("model_path"))
    except (ValueError, FileNotFoundError) as exc:
        raise JobInputError(str(exc)) from exc
    ctx.progress(0.1, "body model loaded", stage="mesh")
    ctx.check_cancelled()
    frames = params.get("frames")
    if params.get("pose") is not None:
        if not isinstance(params["pose"], Mapping):
            raise JobInputError("pose must be an SMPL-X parameter payload")
        try:
            body_params = BodyParams.from_arrays(params["pose"], num_betas=model.num_betas,
                                                 num_expression=model.num_expression)
        except (ValueError, RuntimeError) as exc:
            raise JobInputError(f"bad pose payload: {exc}") from exc
        fps = float(params["pose"].get("fps", 30.0))
    else:
        motion = load_motion(params.get("motion"), int(frames) if frames else None, params.get("fps"))
        body_params = motion.to_params(num_betas=model.num_betas, num_expression=model.num_expression)
        fps = motion.fps
    if frames:
        n = min(int(frames), body_params.n_frames)
        for name in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
                     "leye_pose", "reye_pose", "transl"):
            setattr(body_params, name, getattr(body_params, name)[:n])
    for key, size in (("betas", model.num_betas), ("expression", model.num_expression)):
        if params.get(key) is not None:
            values = torch.as_tensor(np.asarray(params[key], dtype=np.float32).reshape(-1)[:size])
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
            "model": "stand-in" if model.config.is_standin else str(model.model_file),
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
