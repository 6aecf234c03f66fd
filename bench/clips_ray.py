"""Clips on Ray: the same dataset rendered by 1 and by 2 Ray workers (one CPU each), the speed-up.

    .venv/bin/python bench/clips_ray.py [--size 512] [--frames 24] [--clips 12] [--repeats 2] [--tmp /dev/shm]

For each worker count a private local cluster is started with that many CPUs (``ray.init(num_cpus=N)``),
its workers are warmed up on a small dataset of the same size (Python and torch imports, numba
compilation, body model load: seconds per worker process, paid once per process on a real cluster
too), then the dataset (one person walking, ``ring:1``, every pass, full ground truth written) is
rendered ``--repeats`` times into a fresh folder through :func:`render_dataset_ray`, timed from the
submission of the first task to the manifest on disk; best of the repeats. One clip per task, each
task asks for one CPU and renders on one thread pair (render + encoder), as ``--ray-cpus-per-task 1``.
Also reported: frames/s per worker, the load average before and after (this machine is shared).

Pinning (default; ``--no-pin`` to turn it off): before each cluster starts, the driver confines
itself to the first N cores (``sched_setaffinity``), and Ray's processes, spawned by it, inherit
that. Without it the 1-worker case is not one core: ``render_clip`` runs a render thread and an
encoder thread, which the kernel spreads over both cores, so "1 worker" borrows the second core
and the ratio understates per-core scaling. With it, ``workers_1.frames_per_s`` is the rate of one
core, the figure docs/clips.md scales to a cluster.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.chdir(REPO)  # Ray workers import `backend` from the driver's working directory

from backend.clips.distributed import connect, render_dataset_ray  # noqa: E402
from backend.clips.spec import ClipSpec  # noqa: E402


def spec_for(size: int, frames: int, clips: int, seed: int) -> ClipSpec:
    return ClipSpec.parse({"clips": clips, "frames": frames, "width": size, "height": size, "seed": seed,
                           "people": {"count": 1}, "motion": {"sources": ["walk"]}, "cameras": ["ring:1"]})


def timed(spec: ClipSpec, root: Path) -> float:
    out = root / f"run-{time.monotonic_ns()}"
    start = time.perf_counter()
    render_dataset_ray(spec, out)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tmp", type=Path, default=None,
                        help="where the datasets are written (default: the system temp folder; /dev/shm "
                             "takes the disk out: two workers write ~300 MB/s at 512x512)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let each cluster use every core (see above)")
    args = parser.parse_args()
    spec = spec_for(args.size, args.frames, args.clips, seed=1)
    total = args.clips * args.frames
    load_before = [round(x, 2) for x in os.getloadavg()]
    seconds: dict[int, float] = {}
    all_cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        for workers in (1, 2):
            os.sched_setaffinity(0, all_cores[:workers] if args.pin else all_cores)
            with connect("local", num_cpus=workers):
                timed(spec_for(args.size, 4, 2 * workers, seed=0), root)  # warm every worker
                seconds[workers] = min(timed(spec, root) for _ in range(args.repeats))
    os.sched_setaffinity(0, all_cores)
    results = {"size": args.size, "clips": args.clips, "frames_per_clip": args.frames, "frames": total,
               "cpus": len(all_cores), "pinned": args.pin, "written_to": tempfile.gettempdir()
               if args.tmp is None else str(args.tmp), "load_before": load_before,
               **{f"workers_{n}": {"seconds": round(s, 3), "frames_per_s": round(total / s, 1)}
                  for n, s in seconds.items()},
               "speedup_2_over_1": round(seconds[1] / seconds[2], 3),
               "load_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
