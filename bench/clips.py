"""Clips benchmark: frames of full ground truth written per second, against render-only.

    .venv/bin/python bench/clips.py [--size 512] [--frames 48] [--repeats 3] [--threads N]

One process, one person (the stand-in body walking), one camera (``ring:1``), the spec's default
passes: (a) **full ground truth**: sampling the clip (motion, look, placement, camera), posing,
rendering depth + normals + instance/amodal masks + parts, the lit RGB (SH environment, key light
with its shadow map, ground, contact darkening, background), keypoints with visibility, boxes,
camera-frame SMPL-X, and writing everything (PNG, .npy, .npz, COCO fragment) into a clip folder
renamed into place; (b) the same without the RGB pass (what the shading, shadow map and PNGs
cost); (c) **render only**: the same frames through ``render_passes`` (the old Lambert RGB and the
same passes, in memory, nothing written).
Best of ``--repeats`` runs after a warm-up (numba compilation, body model load).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.body.loading import load_body_model  # noqa: E402
from backend.clips.dataset import render_one  # noqa: E402
from backend.clips.render import BACKGROUND  # noqa: E402
from backend.clips.sample import plan_clip, pose  # noqa: E402
from backend.clips.spec import DEFAULT_PASSES as PASSES  # noqa: E402
from backend.clips.spec import ClipSpec  # noqa: E402
from backend.render import get_rasterizer  # noqa: E402
from backend.render.bands import default_threads  # noqa: E402
from backend.render.camera import CameraBatch  # noqa: E402
from backend.render.passes import Mesh, render_passes  # noqa: E402
from backend.render.threads import torch_threads  # noqa: E402


def spec_for(size: int, frames: int, passes: tuple[str, ...], seed: int) -> ClipSpec:
    return ClipSpec.parse({"clips": 1, "frames": frames, "width": size, "height": size, "seed": seed,
                           "people": {"count": 1}, "motion": {"sources": ["walk"]}, "cameras": ["ring:1"],
                           "passes": list(passes)})


def full(spec: ClipSpec, root: Path, threads: int) -> float:
    clips = root / f"run-{time.monotonic_ns()}"
    clips.mkdir()
    start = time.perf_counter()
    render_one(spec, 0, clips, threads=threads)
    elapsed = time.perf_counter() - start
    shutil.rmtree(clips)
    return elapsed


def render_only(spec: ClipSpec, threads: int) -> float:
    plan = plan_clip(spec, 0)
    model = load_body_model("neutral")
    person = plan.people[0]
    verts = torch.from_numpy(pose(model, person.params)[0])
    cam = plan.cameras[0]
    mesh_args = {"faces": torch.as_tensor(model.faces), "vertex_colors": torch.as_tensor(person.colors),
                 "part_labels": torch.as_tensor(model.part_labels().astype(np.int64))}
    rasterizer = get_rasterizer("auto")
    start = time.perf_counter()
    with torch.no_grad(), torch_threads(1):
        for lo in range(0, spec.frames, 8):
            hi = min(spec.frames, lo + 8)
            cams = CameraBatch(cam.K[lo:hi], cam.R[lo:hi], cam.t[lo:hi], spec.width, spec.height, spec.near,
                               spec.far)
            render_passes(Mesh(verts=verts[lo:hi], **mesh_args), cams,
                          passes=["face_id", "depth", "rgb", "normal_cam", "part"], rasterizer=rasterizer,
                          background=BACKGROUND, threads=threads)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="render threads (default: all CPUs)")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    spec = spec_for(args.size, args.frames, PASSES, seed=1)
    no_png = spec_for(args.size, args.frames, tuple(p for p in PASSES if p != "rgb"), seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        full(spec_for(args.size, 4, PASSES, 0), root, threads)  # warm-up: JIT, body model, PNG
        render_only(spec_for(args.size, 4, PASSES, 0), threads)
        results = {}
        for name, run in (("full_ground_truth", lambda: full(spec, root, threads)),
                          ("full_without_png", lambda: full(no_png, root, threads)),
                          ("render_only", lambda: render_only(spec, threads))):
            best = min(run() for _ in range(args.repeats))
            results[name] = {"seconds": round(best, 3), "frames_per_s": round(args.frames / best, 1)}
    results["ratio_full_to_render_only"] = round(
        results["full_ground_truth"]["frames_per_s"] / results["render_only"]["frames_per_s"], 3)
    print(json.dumps({"size": args.size, "frames": args.frames, "threads": threads, **results}, indent=1))


if __name__ == "__main__":
    main()
