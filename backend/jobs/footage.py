"""Job kind ``footage.insert`` (contract: protocol/kinds_footage.py; docs/footage.md); the
decomposition job is :mod:`backend.jobs.footage_decompose`.

``footage.insert`` reads and checks every input (the shot, its camera, depth, occluder mattes, the
avatar, the motion or track) before it writes anything, so bad input fails with one clear
message and no files. The shot is then lifted into the layers the route composites into
(:func:`shot_layers`, through :func:`backend.jobs.footage_decompose.decompose_shot`:
:func:`backend.footage.decompose.decompose` removes the people already in it
and fills the scene behind them, estimates depth when asked; its template is written under
``insert/layers/``), and the route runs: ``3d`` (:func:`backend.footage.insert.insert_3d`) or
``neural`` (:func:`backend.footage.neural_route.insert_neural_route`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params


def shot_layers(p: Any, footage: Any, camera: Any, depth: np.ndarray | None, occluders: np.ndarray | None,
                person_masks: np.ndarray | None, ctx: JobContext) -> tuple[Any, Any]:
    """The layers the character is composited into (the scene with the people already in the shot
    removed, the depth behind them, the occluders) and the decomposition they came from."""
    from backend.footage.insert import ShotLayers
    from backend.jobs.footage_decompose import decompose_shot

    layers = decompose_shot(p, footage, camera, depth, person_masks, ctx, span=(0.01, 0.09))
    scene = ShotLayers(scene=layers.scene, depth=layers.depth, occluders=occluders, plate=footage.frames)
    return scene, layers


def _read_inputs(p: Any, scratch: Path) -> dict[str, Any]:
    from backend.body.motion import MotionFormatError
    from backend.clips.avatars import AvatarError, load_avatar_person
    from backend.footage.avatar_motion import fit_to_frames, pose_for_footage, track_for_frames
    from backend.footage.source import FootageError, read_depth, read_footage, read_masks, shot_camera
    from backend.jobs.body import load_motion
    from backend.jobs.confine import private_copy

    given: dict[str, str] = {}
    try:
        video = private_copy(p.video, scratch, "video", given)
        footage = read_footage(video, p.frame_start, p.frames, p.fps)
        camera = shot_camera(p.camera, footage)
        depth_path = private_copy(p.depth, scratch, "depth", given)
        depth = read_depth(depth_path, footage) if depth_path is not None else None
        occ_path = private_copy(p.occluder_masks, scratch, "occluders", given)
        occluders = read_masks(occ_path, footage, "occluder_masks") if occ_path is not None else None
        people_path = private_copy(p.person_masks, scratch, "person_masks", given)
        people = read_masks(people_path, footage, "person_masks") if people_path is not None else None
        avatar = load_avatar_person(private_copy(p.avatar, scratch, "avatar", given))
        n, fps = len(footage), footage.fps
        if p.track is not None:
            posed = pose_for_footage(avatar, track_for_frames(p.track, footage.numbers), place=None)
        else:
            motion = fit_to_frames(load_motion(p.motion, n, fps), n, fps)
            posed = pose_for_footage(avatar, motion, place=[float(v) for v in p.place],
                                     heading_deg=float(p.heading))
    except (FootageError, AvatarError, MotionFormatError) as exc:
        message = str(exc)
        for copy, name in given.items():  # never show the private scratch path
            message = message.replace(copy, name)
        raise JobInputError(message.replace(str(scratch), "<input>")) from None
    if p.lighting == "sh" and p.sh is None:
        raise JobInputError("params.sh: lighting 'sh' needs the 9 x 3 coefficients")
    return {"footage": footage, "camera": camera, "depth": depth, "occluders": occluders,
            "person_masks": people, "avatar": avatar, "posed": posed}


def footage_insert(params: Any, ctx: JobContext) -> JobResult:
    from backend.footage.decompose import write_template
    from backend.footage.insert import InsertConfig, insert_3d
    from backend.footage.neural_route import insert_neural_route
    from backend.footage.source import FootageError

    p = typed_params("footage.insert", params)
    started = time.perf_counter()
    ctx.progress(0.0, "reading the shot", stage="read")
    work = Path(ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix=".inputs-") as scratch:
        inputs = _read_inputs(p, Path(scratch))
    footage, camera, posed = inputs["footage"], inputs["camera"], inputs["posed"]
    ctx.check_cancelled()
    layers, decomposed = shot_layers(p, footage, camera, inputs["depth"], inputs["occluders"],
                                     inputs["person_masks"], ctx)
    sources = {"depth_source": decomposed.depth_source, "people": decomposed.people}
    read_s = time.perf_counter() - started
    config = InsertConfig(place=tuple(float(v) for v in p.place), heading=float(p.heading),
                          lighting=p.lighting, sh=None if p.sh is None else np.asarray(p.sh, np.float32),
                          shadow=float(p.shadow),
                          motion_blur=int(p.motion_blur), antialias=int(p.antialias), mp4=bool(p.mp4))
    out_dir = work / "insert"

    def progress(fraction: float, message: str) -> None:
        ctx.progress(0.1 + 0.89 * fraction, message, stage="insert")

    try:
        if p.route == "neural":
            outcome = insert_neural_route(layers, camera, posed, inputs["avatar"], p, out_dir,
                                          footage.numbers, footage.fps, progress, ctx.check_cancelled)
        else:
            outcome = insert_3d(layers, camera, posed, inputs["avatar"], config, out_dir, footage.numbers,
                                footage.fps, progress, ctx.check_cancelled)
    except FootageError as exc:
        raise JobInputError(str(exc)) from None
    # The template only when the decomposition changed something (people removed, depth
    # estimated): else its video/ and scene/ would be the input frames again, written for nothing.
    layer_files = {}
    if decomposed.people != "none" or decomposed.depth_source == "estimator":
        layer_files = write_template(out_dir / "layers", footage, camera, decomposed,
                                     {"inpaint": p.inpaint, "timings_s": decomposed.timings_s})
    timings = {"read": round(read_s, 4), **{k: round(v, 4) for k, v in outcome.timings_s.items()}}
    data = {
        "frames": len(footage), "frame_start": footage.numbers[0], "width": footage.width,
        "height": footage.height, "fps": footage.fps, **sources, "timings_s": timings,
        "route": p.route, "lighting": outcome.lighting.get("mode", p.lighting),
        "visible_fraction": round(outcome.visible_fraction, 6),
        "folder": "insert",
    }
    summary = {**data, "frame_numbers": list(footage.numbers), "place": list(config.place),
               "heading": config.heading, "shadow": config.shadow, "motion_blur": config.motion_blur,
               "antialias": config.antialias, "lighting_fit": outcome.lighting, "sh": outcome.sh,
               "ground_y": posed.ground_y,
               "motion": "track" if p.track is not None else _motion_name(p.motion),
               "layers": {"composite": "composite/%06d.png",
                          "character": "character/%06d.png (RGBA, straight alpha)",
                          "shadow": "shadow/%06d.png (darkening)",
                          "occlusion": "occlusion/%06d.png (matte)"}}
    from backend.footage.write import InsertWriter

    summary_writer = InsertWriter(out_dir, footage.width, footage.height, footage.fps, False)
    summary_writer.write_json(summary)
    files = {f"insert/{name}": path for name, path in {**outcome.files, **summary_writer.files}.items()}
    files.update({f"insert/layers/{name}": path for name, path in layer_files.items()})
    ctx.progress(1.0, f"{len(footage)} frames inserted", stage="insert")
    sh = np.zeros((9, 3), np.float32) if p.lighting == "flat" else np.asarray(outcome.sh, np.float32)
    # the neural route's outcome.sh is zeros: the decoder paints the light, there is no SH
    return JobResult(
        data=data,
        arrays={"camera_K": camera.K, "camera_R": camera.R, "camera_t": camera.t,
                "root": posed.root.astype(np.float32), "sh": sh,
                "character_pixels": outcome.character_pixels.astype(np.int32),
                "occluded_pixels": outcome.occluded_pixels.astype(np.int32)},
        files=files,
    )


def _motion_name(motion: Any) -> str:
    if isinstance(motion, str):
        return motion
    given = getattr(motion, "given", None)
    return Path(given).name if given else "payload"
