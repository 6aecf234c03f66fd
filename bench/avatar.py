"""Benchmark of the avatar stage (issue 5): GS and ET times at the defaults, and quality.

A synthetic character (stand-in body, skirt, hair, procedural texture) is rendered at 512x512 from 8
training and 4 held-out cameras; the avatar is built from the training views at the default config;
then: time of geometric sculpting (GS) and explicit texturing (ET), mean symmetric Chamfer distance
and normal consistency against the character's visible surface, PSNR and SSIM of the textured
render on the held-out views (full frame over the black background, and PSNR inside the person's
mask). Printed next to En3D's published figures.

    .venv/bin/python bench/avatar.py [--grid N] [--iters N] [--init-iters N] [--texture-size N]
                                     [--resolution 512] [--json] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EN3D = {"sculpt_s": 15.0, "texture_s": 10.0, "hardware": "RTX 3090, grid 256, 1500+500 iters, 512 renders"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int)
    ap.add_argument("--iters", type=int)
    ap.add_argument("--init-iters", type=int)
    ap.add_argument("--texture-size", type=int)
    ap.add_argument("--texture-iters", type=int)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--shape", default="average")
    ap.add_argument("--out", type=Path, help="keep the views and the avatar files here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import numpy as np
    import torch

    from backend.avatar.eval.metrics import geometry_scores, psnr, ssim
    from backend.avatar.eval.synthetic import SyntheticConfig, make_synthetic
    from backend.avatar.pipeline import build_avatar, config_from_options, write_outputs
    from backend.avatar.texture.optimise import render_textured

    t0 = time.perf_counter()
    views_dir = args.out / "views" if args.out else None
    views, char = make_synthetic(SyntheticConfig(shape=args.shape, resolution=args.resolution), views_dir)
    t_synth = time.perf_counter() - t0
    cfg = config_from_options(
        grid=args.grid,
        init_iters=args.init_iters,
        refine_iters=args.iters,
        texture_size=args.texture_size,
        texture_iters=args.texture_iters,
    )
    last = [0.0]

    def progress(stage: str, fraction: float, message: str) -> None:
        if not args.json and time.monotonic() - last[0] > 15:
            print(f"  [{fraction * 100:5.1f}%] {stage}: {message}", file=sys.stderr, flush=True)
            last[0] = time.monotonic()

    result = build_avatar(views, cfg, progress, body=char.body)
    if args.out:
        write_outputs(result, args.out / "avatar", cfg)
    geo = geometry_scores(
        result.mesh_vertices,
        result.mesh_faces,
        char.vertices,
        char.faces,
        100_000,
        char.visible_surface_filter(),
    )
    tex = result.texture.astype(np.float32) / 255
    full, masked, ss = [], [], []
    for view in views.split("test"):
        out = render_textured(result.vertices, result.faces, result.uvs, tex, view)
        gt = view.rgba[..., :3]
        full.append(psnr(out[..., :3], gt))
        masked.append(psnr(out[..., :3], gt, (view.rgba[..., 3] > 0.5) | (out[..., 3] > 0.5)))
        ss.append(ssim(out[..., :3], gt))
    t = result.timings
    gs, et = t["sculpt"], t["parts"] + t["uv"] + t["texture"]
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0],
        },
        "config": {
            "grid": cfg.sculpt.grid_resolution,
            "init_iters": cfg.sculpt.init_iters,
            "refine_iters": cfg.sculpt.refine_iters,
            "render_px": int(args.resolution * cfg.sculpt.render_scale),
            "texture": cfg.texture.texture_size,
            "texture_iters": cfg.texture.iterations,
            "views": f"{len(views.split('train'))} train + {len(views.split('test'))} held out at "
            f"{args.resolution}px",
        },
        "seconds": {
            "synthetic_views": t_synth,
            "gs": gs,
            "gs_init": t["sculpt_init"],
            "gs_refine": t["sculpt_refine"],
            "et": et,
            "rig": t["rig"],
            "gs_plus_et": gs + et,
        },
        "quality": {
            "chamfer_cm": geo.chamfer * 100,
            "normal_consistency": geo.normal_consistency,
            "psnr_db": float(np.mean(full)),
            "psnr_masked_db": float(np.mean(masked)),
            "ssim": float(np.mean(ss)),
        },
        "mesh": {"vertices": len(result.vertices), "faces": len(result.faces), **result.info},
        "en3d": EN3D,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=float))
        return 0
    s, q = report["seconds"], report["quality"]
    print(
        f"avatar bench: {report['config']}  (load avg {report['machine']['load_avg_1min']:.1f} on "
        f"{report['machine']['cpus']} CPUs)"
    )
    print(f"{'':28}{'ours (CPU)':>14}{'En3D (RTX 3090)':>18}{'target':>10}")
    print(f"{'GS sculpting, s':28}{s['gs']:14.1f}{EN3D['sculpt_s']:18.1f}")
    print(f"{'ET texturing, s':28}{s['et']:14.1f}{EN3D['texture_s']:18.1f}")
    print(
        f"{'GS + ET, s':28}{s['gs_plus_et']:14.1f}{EN3D['sculpt_s'] + EN3D['texture_s']:18.1f}{'<= 180':>10}"
    )
    print(f"{'Chamfer, cm':28}{q['chamfer_cm']:14.2f}{'-':>18}{'<= 1.0':>10}")
    print(f"{'normal consistency':28}{q['normal_consistency']:14.3f}{'-':>18}{'>= 0.90':>10}")
    print(f"{'held-out PSNR, dB':28}{q['psnr_db']:14.2f}{'-':>18}{'>= 26':>10}")
    print(f"{'  (inside the mask)':28}{q['psnr_masked_db']:14.2f}")
    print(f"{'held-out SSIM':28}{q['ssim']:14.3f}{'-':>18}{'>= 0.90':>10}")
    print("En3D publishes no Chamfer/PSNR for this stage (FID 2.73, Normal-FID 5.62 are generative metrics).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
