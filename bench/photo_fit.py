"""One-photo body-fit benchmark: ``backend.fitting.photo.fit_photo`` on our own render from the
assumed photo camera (the table of docs/fitting.md, "One photo").

    .venv/bin/python bench/photo_fit.py [--size 192] [--layouts none,coco17] [--noise 0.5]
                                        [--schedule default|quick] [--motion walk] [--frame 10] [--json]

The truth: the stand-in body with fixed betas, the ``--motion``'s frame ``--frame``, turned 20
degrees, 3 m in front of the camera and off-centre. Per layout (``none`` = silhouette only) one fit;
prints the 22 body joints' 2D reprojection error against the truth's, the 3D joint error after
aligning the root and after a similarity alignment (PA), the IoU, the depth and the wall time.
Monocular depth is ambiguous, so the raw 3D error is not the measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.body.procedural import procedural_motion  # noqa: E402
from backend.fitting import Stage  # noqa: E402
from backend.fitting.photo import PhotoFitConfig, fit_photo, procrustes_error, root_aligned_error  # noqa: E402
from backend.fitting.silhouette import project  # noqa: E402
from backend.fitting.synthetic import pose_body, render_photo  # noqa: E402

BETAS = [0.8, -0.6, 0.5, 0.3, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0]
FREE = ("global_orient", "transl", "body_pose", "betas")
QUICK = (Stage("orient", FREE[:2], 20, 0.25, 0.03, 1.0, keypoint_sigma=0.5),
         Stage("pose", FREE[:3], 40, 0.5, 0.03, 0.3, keypoint_sigma=0.3),
         Stage("shape", FREE, 50, 1.0, 0.02, 0.05),
         Stage("refine", FREE, 10, 1.0, 0.005, 0.01, raster=True))  # tests/fitting's schedule


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--layouts", default="none,coco17")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--schedule", choices=("default", "quick"), default="default")
    ap.add_argument("--motion", default="walk")
    ap.add_argument("--frame", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    body_pose = np.asarray(procedural_motion(args.motion).body_pose)[args.frame]
    truth = pose_body({"gender": "neutral", "betas": BETAS, "global_orient": [0.0, 0.35, 0.0],
                       "body_pose": body_pose.tolist(), "transl": [0.15, -0.1, -3.0]})
    rows = []
    for name in args.layouts.split(","):
        layout = None if name == "none" else name
        mask, keypoints, camera = render_photo(truth, args.size, layout=layout, keypoint_noise_px=args.noise,
                                               seed=1)
        config = PhotoFitConfig(stages=QUICK) if args.schedule == "quick" else PhotoFitConfig()
        began = time.perf_counter()
        result = fit_photo(mask, keypoints, layout, config)
        seconds = time.perf_counter() - began
        K, R, t = (torch.as_tensor(a[None], dtype=torch.float64) for a in camera)

        def to_2d(joints: np.ndarray, K=K, R=R, t=t) -> np.ndarray:
            return project(torch.as_tensor(joints[:22], dtype=torch.float64), K, R, t)[0].numpy()

        aligned = root_aligned_error(result.joints, truth.joints)
        rows.append({
            "layout": name, "size": args.size, "schedule": args.schedule,
            "joints_2d_px": float(np.linalg.norm(to_2d(result.joints) - to_2d(truth.joints), axis=1).mean()),
            "root_aligned_mm": float(aligned.mean() * 1000),
            "root_aligned_max_mm": float(aligned.max() * 1000),
            "pa_mm": float(procrustes_error(result.joints, truth.joints).mean() * 1000),
            "iou": result.diagnostics["mean_iou"], "depth_m": -result.params["transl"][2],
            "keypoint_error_px": result.diagnostics.get("mean_keypoint_error_px"), "seconds": seconds,
        })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['layout']:9} {r['size']} px {r['schedule']:8} 2D {r['joints_2d_px']:.2f} px  "
                  f"root-aligned {r['root_aligned_mm']:.0f} mm (max {r['root_aligned_max_mm']:.0f})  "
                  f"PA {r['pa_mm']:.0f} mm  IoU {r['iou']:.3f}  depth {r['depth_m']:.2f} m  "
                  f"{r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
