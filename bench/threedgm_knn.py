"""The 3DGM warp's nearest-vertex search at the ``base`` scale: brute force against the k-d tree
(backend/threedgm/knn.py), same points, same run, answers checked equal.

    .venv/bin/python bench/threedgm_knn.py [--rays 32] [--samples 96] [--threads 1] [--repeats 2] [--json]

The points are what the generator asks for: the ray samples (``--samples`` strata over the body's
sphere, as ``base``'s 48 + 48) of a ``--rays``² grid from a camera 3 m in front of the full SMPL-X
stand-in (10,475 vertices) in the clips' ``wave`` pose. ``base`` renders 128² rays; the brute force
there is too slow for a CPU benchmark, so the default grid is 32² (98,304 points) and both costs
scale linearly in the points. Reported: seconds of each (best of ``--repeats``), the ratio, the load
average (this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.threedgm.knn import nearest_vertex_brute, nearest_vertex_tree  # noqa: E402
from backend.threedgm.volume import ray_grid, sample_depths  # noqa: E402

Pair = tuple[torch.Tensor, torch.Tensor]


def posed_body() -> tuple[torch.Tensor, torch.Tensor]:
    """(1,10475,3) posed vertices and (1,3) root of the stand-in in the wave pose (frame 0)."""
    from backend.body.loading import load_body_model
    from backend.threedgm.body import BodyTemplate

    template = BodyTemplate(load_body_model("neutral"), 10475)
    pose = np.zeros(63, np.float32)
    pose[15 * 3 + 2], pose[16 * 3 + 2] = -1.0, 1.3  # shoulders: one arm down, one raised
    pose[17 * 3 + 1] = 1.2  # an elbow bent
    zeros3 = np.zeros(3, np.float32)
    body = template.pose({"global_orient": zeros3, "body_pose": pose, "transl": zeros3,
                          "betas": np.zeros(10, np.float32)})
    return body.verts[None], body.root[None]


def ray_points(root: torch.Tensor, rays: int, samples: int) -> torch.Tensor:
    K = torch.tensor([[[rays * 1.4, 0, rays / 2], [0, rays * 1.4, rays / 2], [0, 0, 1.0]]])
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]  # looking down -z from +z, y up
    t = -(R[0] @ (root[0] + torch.tensor([0.0, 0.0, 3.0])))[None]
    origins, dirs = ray_grid(K, R, t, torch.tensor([[0.0, 0.0, rays, rays]]), rays)
    depths = sample_depths(origins, root, 1.1, samples)
    return (origins[:, :, None] + dirs[:, :, None] * depths[..., None]).reshape(1, -1, 3)


def best(fn: Callable[[], Pair], repeats: int) -> tuple[float, Pair]:
    times: list[float] = []
    out: Pair | None = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rays", type=int, default=32)
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    verts, root = posed_body()
    points = ray_points(root, args.rays, args.samples)
    load_before = os.getloadavg()[0]
    t_tree, tree = best(lambda: nearest_vertex_tree(points, verts), args.repeats)
    t_brute, brute = best(lambda: nearest_vertex_brute(points, verts), args.repeats)
    equal = bool(torch.equal(tree[0], brute[0]) and torch.equal(tree[1], brute[1]))
    result = {"points": int(points.shape[1]), "vertices": int(verts.shape[1]), "threads": args.threads,
              "brute_s": round(t_brute, 3), "tree_s": round(t_tree, 3), "ratio": round(t_brute / t_tree, 1),
              "equal": equal, "load_before": load_before, "load_after": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>12}: {v}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
