"""Footage benchmark: insert an avatar into CG plates with known ground truth; quality and speed.

    .venv/bin/python bench/footage.py [--size 512] [--frames 48] [--repeats 2] [--models models.toml]

Plates (backend/footage/cgplate.py): a tiled ground, a pillar between the camera and the path the
avatar walks (it passes behind it), sky; rendered by our rasterizer with and without the avatar by
the same camera, static or dollying. The ``footage.insert`` job function runs on the plate without
the avatar, from files (numbered PNGs, depth .npy, CameraPath JSON, avatar folder), writing every
layer, composite.mp4 and footage.json; the composite is scored against the render with the avatar:
PSNR and SSIM over the whole frame and in the character's region (pixels the avatar covers in
the truth or the composite; SSIM over the region's box), LPIPS through the ``lpips`` model role
(:func:`backend.models.load_metrics.load_lpips`: the ``lpips`` package's AlexNet LPIPS, backbone
from the role's local file, never downloaded; over the frame, and its spatial map averaged in the
region dilated by 8 px) when the role is configured, else said so with how to provide it, and occlusion: the
pillar's pixels in front of the character unchanged (fraction exact) and the IoU of the occlusion
matte against the truth's. Runs: ``known light`` (the plate's SH given, no shadow: the route's
exactness), ``fitted light`` (SH fitted to the plate), ``defaults`` (fitted light + shadow 0.6:
the truth has no cast shadow, so the shadow counts as error there). Speed: frames per second of
the whole job (read, render, composite, write) at ``--size``, best of ``--repeats`` (and its CPU
time per frame, this process and ffmpeg's: what a loaded machine does not change), against the
render-only rate (the avatar through ``render_passes``, one pass per frame, nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.avatar.eval.metrics import psnr, ssim  # noqa: E402
from backend.footage.cgplate import CGPlate, make_plate, write_body_avatar, write_plate  # noqa: E402
from backend.jobs.footage import footage_insert  # noqa: E402
from backend.render import get_rasterizer  # noqa: E402
from backend.render.camera import CameraBatch  # noqa: E402
from backend.render.passes import Mesh, render_passes  # noqa: E402

PLACE, HEADING, FPS = (-1.1, 0.0, 0.0), 90.0, 30.0


class Ctx:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        return None

    def check_cancelled(self) -> None:
        return None


def load_lpips() -> tuple[Any, str]:
    """The ``lpips`` role's model, or None and why not (the registry's how-to: which file, where)."""
    from backend.models.load_metrics import load_lpips as load_role
    from backend.models.registry import ModelMissingError

    try:
        metric = load_role(device="cpu")
    except ImportError:
        return None, "LPIPS skipped: the `lpips` package is not installed (pip install -e '.[metrics]')"
    except ModelMissingError as exc:
        return None, f"LPIPS skipped: {exc}"
    return metric, f"LPIPS: the lpips role, {metric.net} backbone"


def lpips_score(model: Any, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean LPIPS over frames (uint8 (F,H,W,3)), 8 at a time; in ``mask`` (F,H,W) when given."""
    return float(torch.cat([
        model.distance(a[i:i + 8], b[i:i + 8], mask=None if mask is None else mask[i:i + 8])
        for i in range(0, len(a), 8)
    ]).mean())


def read_layer(folder: Path, layer: str, n: int) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(folder / layer / f"{i + 1:06d}.png")) for i in range(n)])


def scores(plate: CGPlate, out: Path, lp: Any) -> dict[str, float]:
    from scipy.ndimage import binary_dilation, binary_erosion

    n = len(plate.plate)
    comp = read_layer(out, "composite", n)
    alpha = read_layer(out, "character", n)[..., 3] / 255.0
    matte = read_layer(out, "occlusion", n) / 255.0
    a, b = comp / 255.0, plate.truth / 255.0
    region = (plate.truth_cover > 0) | (alpha > 0)
    ssim_region = []
    for i in range(n):
        ys, xs = np.nonzero(binary_dilation(region[i], iterations=8))
        if len(ys):
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            ssim_region.append(ssim(a[i][box], b[i][box]))
    inside = np.stack([binary_erosion(o >= 1.0) for o in plate.occluder]) & (plate.truth_cover > 0)
    truth_matte = (plate.truth_cover - plate.truth_alpha) >= 0.5
    got_matte = matte >= 0.5
    union = (truth_matte | got_matte).sum()
    out_scores = {
        "psnr": psnr(a, b), "psnr_region": psnr(a, b, region),
        "ssim": float(np.mean([ssim(a[i], b[i]) for i in range(n)])),
        "ssim_region": float(np.mean(ssim_region)) if ssim_region else float("nan"),
        "occluder_exact": (float((comp[inside] == plate.plate[inside]).all(-1).mean())
                           if inside.any() else 1.0),
        "occluder_pixels": int(inside.sum()),
        "matte_iou": float((truth_matte & got_matte).sum() / union) if union else 1.0,
    }
    if lp is not None:
        out_scores["lpips"] = lpips_score(lp, comp, plate.truth)
        near = np.stack([binary_dilation(r, iterations=8) for r in region])
        seen = near.any((1, 2))  # frames where the character is on screen
        out_scores["lpips_region"] = (lpips_score(lp, comp[seen], plate.truth[seen], near[seen])
                                      if seen.any() else float("nan"))
    return out_scores


def run_job(files: dict[str, Path], avatar: Path, work: Path, frames: int,
            **settings: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process and its children (ffmpeg), the job's result)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params = {"video": str(files["video"]), "camera": json.loads(files["camera"].read_text()),
              "avatar": str(avatar), "depth": str(files["depth"]), "fps": FPS, "frames": frames,
              "place": list(PLACE), "heading": HEADING, **settings}
    cpu0, start = os.times(), time.perf_counter()
    result = footage_insert(params, Ctx(work))
    wall, cpu1 = time.perf_counter() - start, os.times()
    cpu = (cpu1.user + cpu1.system + cpu1.children_user + cpu1.children_system
           - cpu0.user - cpu0.system - cpu0.children_user - cpu0.children_system)
    return wall, cpu, result


def render_only_fps(plate: CGPlate, avatar_dir: Path, repeats: int) -> float:
    """The avatar alone through render_passes (rgb, depth, normals), one call per frame, full frame."""
    from backend.clips.avatars import load_avatar_person

    avatar = load_avatar_person(avatar_dir)
    faces = torch.from_numpy(np.array(avatar.faces))
    uv, tex = torch.from_numpy(np.array(avatar.uvs)), torch.from_numpy(np.array(avatar.texture))
    raster = get_rasterizer("auto")
    H, W = plate.plate.shape[1:3]
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for i in range(len(plate.plate)):
            cams = CameraBatch(plate.K[i][None], plate.R[i][None], plate.t[i][None], W, H, 0.01, 1e4)
            mesh = Mesh(verts=torch.from_numpy(plate.posed.vertices[i]), faces=faces, uv=uv, texture=tex)
            with torch.no_grad():
                render_passes(mesh, cams, passes=("rgb", "depth", "normal_world"), shading="none",
                              rasterizer=raster)
        best = min(best, time.perf_counter() - start)
    return len(plate.plate) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", type=Path,
                        help="models.toml naming [models.lpips] (default: the data dir's; docs/models.md)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.models is not None:
        os.environ["AVATAR_STUDIO_MODELS"] = str(args.models.resolve())  # what `--models` does in the CLI
    lp, lp_note = load_lpips()
    print(lp_note, file=sys.stderr)
    results: dict[str, Any] = {"size": args.size, "frames": args.frames, "lpips": lp_note,
                               "load_average_start": os.getloadavg()[0], "plates": {}}
    with tempfile.TemporaryDirectory(prefix="bench-footage-") as tmp:
        root = Path(tmp)
        avatar = write_body_avatar(root / "avatar")
        for name, moving in (("static", False), ("dolly", True)):
            plate = make_plate(avatar, args.frames, args.size, args.size, place=PLACE, heading=HEADING,
                               fps=FPS, moving_camera=moving)
            files = write_plate(plate, root / name, FPS)
            row: dict[str, Any] = {}
            runs = {"known light": {"lighting": "sh", "sh": plate.sh, "shadow": 0.0},
                    "fitted light": {"lighting": "plate", "shadow": 0.0},
                    "defaults": {}}
            for label, settings in runs.items():
                best, best_cpu, result = float("inf"), float("inf"), None
                for _ in range(args.repeats):
                    seconds, cpu, result = run_job(files, avatar, root / "work", args.frames, **settings)
                    best, best_cpu = min(best, seconds), min(best_cpu, cpu)
                assert result is not None
                row[label] = {**scores(plate, root / "work" / "insert", lp), "fps": args.frames / best,
                              "cpu_ms_per_frame": 1000 * best_cpu / args.frames,
                              "timings_s": result.data["timings_s"]}
                numbers = " ".join(f"{k} {v:.4g}" for k, v in row[label].items()
                                   if isinstance(v, float | int))
                print(f"{name:6s} {label:12s} {numbers}", file=sys.stderr)
            seconds, cpu, _ = run_job(files, avatar, root / "work", args.frames, antialias=1)
            row["defaults, antialias 1"] = {"fps": args.frames / seconds,
                                            "cpu_ms_per_frame": 1000 * cpu / args.frames}
            row["render_only_fps"] = render_only_fps(plate, avatar, args.repeats)
            print(f"{name:6s} render only {row['render_only_fps']:.1f} fps; antialias 1 "
                  f"{row['defaults, antialias 1']['fps']:.1f} fps", file=sys.stderr)
            results["plates"][name] = row
    results["load_average_end"] = os.getloadavg()[0]
    text = json.dumps(results, indent=1, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
