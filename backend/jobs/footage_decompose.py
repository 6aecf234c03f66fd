"""Job kind ``footage.decompose`` (contract: protocol/kinds_footage.py; docs/footage.md "Layers"):
read the shot (:mod:`backend.footage.source`), lift it into MIMO's layers
(:func:`backend.footage.decompose.decompose`) and return the template folder as the job's files
(``template/...``), with the camera per frame as arrays.

Everything is read and checked before anything is written: an unreadable video, a camera path that
does not cover the frames, depth or masks of the wrong size or count fail the job with one clear
line (:class:`JobInputError`) and leave no template behind. Path params are read from private
copies (:func:`backend.jobs.confine.private_copy`: nothing outside the input roots is followed),
removed when the job ends. A missing model role fails as the registry's :class:`ModelMissingError`
(role, model, download command), before any frame is processed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params

TEMPLATE = "template"  # the artifacts' folder (data.folder)
# Without a camera param the layers still carry one: static, at the origin looking down +z, with
# Blender's default lens (50 mm on a 36 mm sensor, fitted to the wider side).
DEFAULT_LENS_MM, DEFAULT_SENSOR_MM = 50.0, 36.0


def assumed_camera(footage: Any) -> Any:
    """A static ShotCamera for a shot given without one (data.camera_source = "assumed")."""
    from backend.footage.source import ShotCamera

    n, w, h = len(footage), footage.width, footage.height
    f = DEFAULT_LENS_MM / DEFAULT_SENSOR_MM * max(w, h)
    K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    return ShotCamera(np.repeat(K[None], n, 0), np.repeat(np.eye(3)[None], n, 0), np.zeros((n, 3)))


def decompose_shot(p: Any, footage: Any, camera: Any, depth: np.ndarray | None,
                   person_masks: np.ndarray | None, ctx: JobContext, span: tuple[float, float]) -> Any:
    """:func:`backend.footage.decompose.decompose` inside a job (``footage.decompose``, and
    ``footage.insert`` before it composites): with the params' segment/depth-estimator/inpaint
    choices, its progress mapped onto ``span`` (start, width) of the job's, cancellable, and bad
    input (:class:`FootageError`, :class:`InpaintError`) failing as one :class:`JobInputError`."""
    from backend.footage.decompose import decompose
    from backend.footage.inpaint import InpaintError
    from backend.footage.source import FootageError

    start, width = span

    def progress(fraction: float, message: str, stage: str) -> None:
        ctx.progress(start + width * fraction, message, stage=stage)

    try:
        return decompose(footage, camera, depth=depth, person_masks=person_masks, segment=p.segment,
                         depth_estimator=p.depth_estimator, inpaint=p.inpaint, progress=progress,
                         cancelled=ctx.check_cancelled)
    except (FootageError, InpaintError) as exc:
        raise JobInputError(str(exc)) from None


def _given(value: Any) -> str | None:
    """A path param as the client wrote it (never the server's resolved path)."""
    return None if value is None else str(getattr(value, "given", value))


def footage_decompose(params: Any, ctx: JobContext) -> JobResult:
    from backend.footage.decompose import write_template
    from backend.footage.source import FootageError, read_depth, read_footage, read_masks, shot_camera
    from backend.jobs.confine import private_copy
    from protocol.kind_types import ParamError

    p = typed_params("footage.decompose", params)
    work = Path(ctx.work_dir)
    inputs = work / "inputs"
    try:
        ctx.progress(0.0, "reading the shot", stage="read")
        try:
            footage = read_footage(private_copy(p.video, inputs, "video"), p.frame_start, p.frames, p.fps)
            camera = shot_camera(p.camera, footage) if p.camera is not None else None
            depth_path = private_copy(p.depth, inputs, "depth")
            depth = read_depth(depth_path, footage) if depth_path is not None else None
            masks_path = private_copy(p.person_masks, inputs, "person_masks")
            masks = read_masks(masks_path, footage, "person_masks") if masks_path is not None else None
        except ParamError as exc:
            raise JobInputError(str(exc)) from None
        ctx.check_cancelled()
        layers = decompose_shot(p, footage, camera, depth, masks, ctx, span=(0.05, 0.85))
    except FootageError as exc:
        raise JobInputError(str(exc)) from None
    finally:
        shutil.rmtree(inputs, ignore_errors=True)

    ctx.progress(0.9, "writing the template", stage="write")
    shot = camera if camera is not None else assumed_camera(footage)
    config = {
        "camera_source": "given" if camera is not None else "assumed",
        "inpaint": p.inpaint,
        "sources": {name: _given(getattr(p, name)) for name in ("video", "depth", "person_masks")},
        "timings_s": layers.timings_s,
    }
    folder = work / TEMPLATE
    try:
        files = write_template(folder, footage, shot, layers, config)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a half-written template is no template
        raise
    ctx.progress(1.0, f"{len(files)} files", stage="write")
    return JobResult(
        data={
            "frames": len(footage), "frame_start": footage.numbers[0], "width": footage.width,
            "height": footage.height, "fps": footage.fps, "depth_source": layers.depth_source,
            "people": layers.people, "timings_s": layers.timings_s, "removed_pixels": layers.removed_pixels,
            "propagated_fraction": layers.propagated_fraction, "propagation": layers.method,
            "camera_source": config["camera_source"], "folder": TEMPLATE,
        },
        arrays={"camera_K": shot.K.astype(np.float64), "camera_R": shot.R.astype(np.float64),
                "camera_t": shot.t.astype(np.float64)},
        files={f"{TEMPLATE}/{name}": path for name, path in files.items()},
    )
