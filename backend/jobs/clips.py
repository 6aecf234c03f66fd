"""Job kind ``clips.render``: a synthetic dataset (``backend.clips``) rendered as a job.

The contract (``protocol/kinds.py``) holds the job's knobs and the server's bounds; they become one
clip spec (:func:`spec_object`), checked by the one spec parser, :meth:`ClipSpec.parse`, before
anything is rendered. The dataset is rendered into the job's scratch folder with the library's own
:func:`render_dataset` (each clip into a temp folder renamed into place), and every file of it is
returned under ``dataset/``: the artifacts of the job *are* the dataset folder (docs/clips.md),
stored under the server's artifact quota. Progress goes per chunk of frames; a cancel is honoured
between chunks (at most 8 frames of one camera), and the clip being rendered is removed, so a clip
is complete or absent.

Motion files are the client's paths, confined to the input roots by the contract's hook: they are
read once through the check into the scratch folder and the spec names those copies; the dataset's
JSON files then name the motions as the client gave them (never a server path).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backend.jobs.api import JobContext, JobInputError, JobResult, typed_params
from backend.ray_cluster import RAY_ENV
from protocol.kinds import CLIP_MAX_IMAGES, CLIP_MAX_PIXELS

DEFAULT_FRAMES, DEFAULT_SIZE, DEFAULT_FPS = 8, (256, 256), 30.0
DATASET = "dataset"  # the artifacts' folder
HEARTBEAT_S = 5.0  # on Ray, progress repeated this often while no clip finishes (the watchdog)


def _paths(cameras: list[Any]) -> list[Mapping[str, Any]]:
    return [c for c in cameras if isinstance(c, Mapping)]


def spec_object(p: Any, motion_sources: list[str]) -> dict[str, Any]:
    """The clip spec (docs/clips.md) the typed params describe. Frames, size and fps default to the
    camera paths' own (the first path's) when cameras are given as paths; frames and fps else to the
    explicit people's (``bodies``: the spec's ``people.explicit``)."""
    paths = _paths(p.cameras)
    first = paths[0] if paths else {}
    body = p.bodies[0] if p.bodies else {}  # explicit people: their frames and fps, after the paths'
    frames = p.frames or (len(first["K"]) if paths
                          else len(body["global_orient"]) if body else DEFAULT_FRAMES)
    width, height = p.size or ((first["width"], first["height"]) if paths else DEFAULT_SIZE)
    fps = p.fps or float(first.get("fps", body.get("fps", DEFAULT_FPS)))
    people = p.people if isinstance(p.people, list) else [p.people, p.people]
    cameras = [c if isinstance(c, str) else {"kind": "path", "path": c} for c in p.cameras]
    return {
        "clips": p.clips, "frames": frames, "width": width, "height": height, "fps": fps, "seed": p.seed,
        "people": {"explicit": p.bodies} if p.bodies else {"count": people},
        "motion": {"sources": motion_sources}, "cameras": cameras,
        "passes": list(p.passes),
    }


def _copy_motions(motions: list[Any], folder: Path) -> tuple[list[str], dict[str, str]]:
    """Procedural names as they are; files (confined by the contract's hook) read once through the
    check into ``folder``. Returns the spec's sources and {copy path: the client's path}."""
    sources, given = [], {}
    for i, motion in enumerate(motions):
        if isinstance(motion, str):
            sources.append(motion)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        copy = folder / f"{i:02d}-{Path(motion.given).name}"
        copy.write_bytes(motion.read_bytes())
        sources.append(str(copy.resolve()))
        given[str(copy.resolve())] = motion.given
    return sources, given


def _relabel(value: Any, given: dict[str, str]) -> Any:
    if isinstance(value, str):
        return given.get(value, value)
    if isinstance(value, list):
        return [_relabel(v, given) for v in value]
    if isinstance(value, dict):
        return {k: _relabel(v, given) for k, v in value.items()}
    return value


def _name_motions_as_given(dataset: Path, given: dict[str, str]) -> None:
    """Replace the scratch copies' paths in the dataset's JSON files by the client's own paths."""
    if not given:
        return
    for path in [dataset / "spec.json", dataset / "manifest.json", *dataset.glob("clips/*/clip.json")]:
        value = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(_relabel(value, given), indent=1, allow_nan=False), encoding="utf-8")


def check_budget(spec: Any) -> None:
    """What one job may render at most (protocol/kinds.py), before anything is rendered."""
    images = spec.clips * spec.n_cameras * spec.frames
    if images > CLIP_MAX_IMAGES:
        raise JobInputError(f"params: {spec.clips} clips x {spec.n_cameras} cameras x {spec.frames} frames = "
                            f"{images} images; one job renders at most {CLIP_MAX_IMAGES}")
    if images * spec.width * spec.height > CLIP_MAX_PIXELS:
        raise JobInputError(f"params: {images} images of {spec.width}x{spec.height} pixels; one job renders "
                            f"at most {CLIP_MAX_PIXELS} pixels")


def _render_on_ray(spec: Any, dataset: Path, address: str, poll: Callable[[], None],
                   on_clip: Callable[[str, bool], None], on_frames: Callable[[int], None]) -> dict[str, Any]:
    """The dataset through :func:`render_dataset_ray` on the server's cluster (connected once per
    worker process, :func:`attach`). Progress comes per finished clip; ``poll`` runs every 0.2 s
    while clips render (a cancel then cancels the pending tasks; running ones remove their temp
    folder, so no partial clip is left)."""
    from backend.clips.distributed import render_dataset_ray
    from backend.ray_cluster import attach

    attach(address)
    return render_dataset_ray(spec, dataset, address=address, on_clip=on_clip, on_frames=on_frames,
                              poll=poll)


def clips_render(params: Any, ctx: JobContext) -> JobResult:
    from backend.clips.dataset import render_dataset
    from backend.clips.spec import ClipSpec, SpecError

    p = typed_params("clips.render", params)
    work = Path(ctx.work_dir)
    sources, given = _copy_motions(p.motions, work / "motions")
    try:
        spec = ClipSpec.parse(spec_object(p, sources))
    except SpecError as exc:
        raise JobInputError(str(_relabel(str(exc), given))) from None
    check_budget(spec)
    total = spec.clips * spec.frames * spec.n_cameras
    done = [0, 0]  # images, clips

    def on_frames(n: int) -> None:
        done[0] += n
        ctx.progress(done[0] / total, f"clip {min(done[1] + 1, spec.clips)}/{spec.clips}: "
                     f"{done[0]}/{total} images", stage="render")
        ctx.check_cancelled()  # between chunks; the clip being rendered is removed

    def on_clip(clip_id: str, skipped: bool) -> None:
        done[1] += 1
        ctx.progress(done[0] / total, f"clip {clip_id} written ({done[1]}/{spec.clips})", stage="render")

    def count(n: int) -> None:  # on Ray, frames arrive with their clip: one event, on_clip's
        done[0] += n

    beat = [time.monotonic()]

    def poll() -> None:  # on Ray, between clips: the cancel, and a heartbeat for the watchdog
        ctx.check_cancelled()
        if time.monotonic() - beat[0] > HEARTBEAT_S:
            beat[0] = time.monotonic()
            ctx.progress(done[0] / total, f"{done[1]}/{spec.clips} clips written", stage="render")

    ctx.progress(0.0, f"{spec.clips} clip(s), {total} images", stage="render")
    dataset = work / DATASET
    try:
        if os.environ.get(RAY_ENV):  # `serve --ray`: one Ray task per clip, the same files
            manifest = _render_on_ray(spec, dataset, os.environ[RAY_ENV], poll, on_clip, count)
        else:
            manifest = render_dataset(spec, dataset, on_clip=on_clip, on_frames=on_frames)
    except SpecError as exc:  # e.g. people that cannot be placed (sampled before anything is written)
        raise JobInputError(str(_relabel(str(exc), given))) from None
    _name_motions_as_given(dataset, given)
    files = {}
    for root, _dirs, filenames in os.walk(dataset):
        for name in filenames:
            path = Path(root) / name
            files[f"{DATASET}/{path.relative_to(dataset).as_posix()}"] = path
    counts = manifest["counts"]
    return JobResult(
        data={
            "clips": counts["clips"], "frames": spec.frames, "cameras": spec.n_cameras,
            "images": counts["images"], "annotations": counts["annotations"], "folder": DATASET,
            "body_model": manifest["clips"][0]["body_model"] if manifest["clips"] else "",
            "width": spec.width, "height": spec.height, "fps": spec.fps, "passes": list(spec.passes),
        },
        files=files,
    )

