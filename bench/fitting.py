"""Body-fit benchmark: accuracy and wall time of ``backend.fitting.fit_body`` on our own renders.

    .venv/bin/python bench/fitting.py [--size 160] [--views 8] [--layouts none,coco17,smplx127]
                                      [--noise 0.5] [--motion walk] [--frame 10] [--json]

The truth: the stand-in body with fixed betas, the ``--motion``'s frame ``--frame``, turned and
shifted; ``--views`` cameras on a ring (alternating 5 and 25 degrees up) render the masks with our
rasterizer; keypoints are the true ones projected plus ``--noise`` px Gaussian noise. Per layout
(``none`` = silhouettes only) one fit with the default schedule; prints the mean/max joint error
over the 55 joints, the largest beta error, the mean IoU, the keypoint error and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.body.procedural import procedural_motion  # noqa: E402
from backend.fitting import FitConfig, fit_body  # noqa: E402
from backend.fitting.synthetic import pose_body, render_views  # noqa: E402

BETAS = [0.8, -0.6, 0.5, 0.3, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--layouts", default="none,coco17,smplx127")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--motion", default="walk", help="procedural motion the pose comes from")
    ap.add_argument("--frame", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    body_pose = np.asarray(procedural_motion(args.motion).body_pose)[args.frame]
    truth = pose_body({"gender": "neutral", "betas": BETAS, "global_orient": [0.0, 0.5, 0.0],
                       "body_pose": body_pose.tolist(), "transl": [0.1, 0.0, -0.2]})
    rows = []
    for name in args.layouts.split(","):
        layout = None if name == "none" else name
        views = render_views(truth, args.views, args.size, layout=layout, keypoint_noise_px=args.noise)
        start = time.perf_counter()
        result = fit_body(views, FitConfig(layout=layout))
        seconds = time.perf_counter() - start
        err = np.linalg.norm(result.joints - truth.joints, axis=1)
        rows.append({
            "keypoints": name, "views": args.views, "size": args.size,
            "joint_error_mean_mm": round(float(err.mean()) * 1000, 1),
            "joint_error_max_mm": round(float(err.max()) * 1000, 1),
            "beta_error_max": round(float(np.abs(np.array(result.params["betas"]) - BETAS).max()), 2),
            "mean_iou": round(result.diagnostics["mean_iou"], 3),
            "keypoint_error_px": result.diagnostics.get("mean_keypoint_error_px"),
            "seconds": round(seconds, 1),
            "stages_s": {k: round(v, 1) for k, v in result.timings.items()},
        })
        if not args.json:
            r = rows[-1]
            print(f"{name:>9}: joints {r['joint_error_mean_mm']:5.1f} mm "
                  f"(max {r['joint_error_max_mm']:5.1f}), "
                  f"betas max err {r['beta_error_max']:.2f}, IoU {r['mean_iou']:.3f}, {r['seconds']:.1f} s",
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
