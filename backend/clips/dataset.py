"""Render a whole dataset: clips into temp folders renamed into place, resume, workers, manifest.

A clip is rendered into ``<out>/clips/.tmp-<id>-<pid>`` and renamed to ``<out>/clips/<id>`` once
complete, so a clip folder is complete or absent; rerunning the same spec into the same folder
skips the clips already there (a folder of a different spec is refused). Clip ``i`` depends only
on the spec and ``i`` (:func:`backend.clips.spec.clip_seed`), so 1 or N workers write the same bytes.
The manifest and the COCO file are written last, atomically, from the clips' own ``clip.json`` and
``coco.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend import __version__
from backend.clips.coco import merge_fragments
from backend.clips.spec import FORMAT, VERSION, ClipSpec, SpecError, clip_id

MANIFEST = "manifest.json"
COCO_FILE = "coco_person_keypoints.json"
SPEC_FILE = "spec.json"


def _atomic_json(path: Path, value: Any, indent: int | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=indent, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def render_one(spec: ClipSpec, index: int, clips_dir: Path, threads: int | None = None,
               on_frames: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Sample and render clip ``index`` into ``clips_dir/<id>`` via a temp folder."""
    from backend.clips.render import render_clip
    from backend.clips.sample import plan_clip

    final = clips_dir / clip_id(index)
    tmp = clips_dir / f".tmp-{clip_id(index)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        entry = render_clip(plan_clip(spec, index), tmp, spec.passes, threads=threads, on_frames=on_frames)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def _worker(spec_json: dict[str, Any], index: int, clips_dir: str, threads: int) -> str:
    spec = ClipSpec.parse(spec_json)
    render_one(spec, index, Path(clips_dir), threads=threads)
    return clip_id(index)


def prepare(spec: ClipSpec, out: Path) -> list[int]:
    """Check the spec can be rendered and the folder is this spec's; returns the clips to render.

    The first clip is sampled before anything is written, so a spec whose people cannot be placed
    fails with nothing on disk.
    """
    from backend.clips.sample import plan_clip

    out = Path(out)
    spec_json = spec.to_json_dict()
    existing = out / SPEC_FILE
    if existing.is_file():
        if json.loads(existing.read_text(encoding="utf-8")) != spec_json:
            raise SpecError(f"{out} holds a dataset of another spec ({existing}); use a new folder")
    elif out.exists() and any(out.iterdir()):
        raise SpecError(f"{out} exists and is not a clips dataset folder; use a new or empty folder")
    todo = [i for i in range(spec.clips) if not (out / "clips" / clip_id(i)).is_dir()]
    if todo and not existing.is_file():
        plan_clip(spec, todo[0])  # PlacementError / motion errors before anything is written
    return todo


def begin(spec: ClipSpec, out: Path,
          on_clip: Callable[[str, bool], None] = lambda cid, skipped: None) -> list[int]:
    """Everything before the clips render (shared with the Ray driver, ``distributed.py``): check,
    write ``spec.json``, drop a killed run's temp folders, report the clips already there.
    Returns the clips to render."""
    todo = prepare(spec, out)
    clips_dir = out / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    if not (out / SPEC_FILE).is_file():
        _atomic_json(out / SPEC_FILE, spec.to_json_dict(), indent=2)
    for stale in clips_dir.glob(".tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    for i in range(spec.clips):
        if i not in todo:
            on_clip(clip_id(i), True)
    return todo


def render_dataset(spec: ClipSpec, out: Path, *, workers: int = 1,
                   on_clip: Callable[[str, bool], None] = lambda cid, skipped: None,
                   on_frames: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Render every missing clip of ``spec`` into ``out``; returns the manifest."""
    out = Path(out)
    todo = begin(spec, out, on_clip)
    clips_dir = out / "clips"
    spec_json = spec.to_json_dict()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers <= 1:
        for i in todo:
            render_one(spec, i, clips_dir, on_frames=on_frames)
            on_clip(clip_id(i), False)
    else:
        threads = max(1, cpus // workers)
        with mp.get_context("spawn").Pool(workers) as pool:
            results = [pool.apply_async(_worker, (spec_json, i, str(clips_dir), threads)) for i in todo]
            for i, result in zip(todo, results, strict=True):
                result.get()
                on_frames(spec.frames * spec.n_cameras)
                on_clip(clip_id(i), False)
    return write_manifest(spec, out)


def write_manifest(spec: ClipSpec, out: Path) -> dict[str, Any]:
    """``manifest.json`` and the dataset's COCO file, from the clips' own files."""
    clips_dir = out / "clips"
    entries, fragments = [], []
    for i in range(spec.clips):
        folder = clips_dir / clip_id(i)
        entries.append(json.loads((folder / "clip.json").read_text(encoding="utf-8")))
        fragments.append(json.loads((folder / "coco.json").read_text(encoding="utf-8")))
    manifest = {
        "format": FORMAT, "version": VERSION, "generator": f"avatar-studio {__version__}",
        "seed": spec.seed, "spec": spec.to_json_dict(), "clips": entries,
        "counts": {"clips": len(entries), "images": sum(len(f["images"]) for f in fragments),
                   "annotations": sum(len(f["annotations"]) for f in fragments)},
        "coco": COCO_FILE,
    }
    _atomic_json(out / COCO_FILE, merge_fragments(fragments, {"description": f"{FORMAT} v{VERSION}",
                                                               "version": str(VERSION)}))
    _atomic_json(out / MANIFEST, manifest, indent=1)
    return manifest
