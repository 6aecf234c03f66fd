"""One training step of the 3DGM's ``base`` config on this machine, with overrides that fit a CPU:
time and peak memory (what docs/benchmarks.md records; nothing here is a GPU number).

    .venv/bin/python bench/threedgm_base_step.py [--steps 2] [--volume-res 32] [--out-res 128] \
        [--batch 1] [--threads 2] [--size 256] [--json]

Everything else is ``base`` as configured: w 512 / 8 mapping layers, 256² x 32-channel planes from
256-channel synthesis, 48 stratified + 48 importance samples per ray, the full SMPL-X body (10,475
vertices, the k-d tree search), patches head 64² and hands / feet 32² rays, the 64 -> 512-channel
discriminators, R1 on the first step. The data: one clip of one walking person, ``ring:2`` cameras,
one frame, rendered at ``--size`` by the clips library into a temporary folder. The first step pays
for R1 (every 16th step); each step's seconds come from the run's log.jsonl. The trainer's final
checkpoint (~700 MB with both optimisers) and sample sheet are skipped: they are not the step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from backend.clips.dataset import render_dataset  # noqa: E402
from backend.clips.spec import ClipSpec  # noqa: E402
from backend.threedgm.config import BASE  # noqa: E402
from backend.threedgm.dataset import ClipsDataset  # noqa: E402
from backend.threedgm.train import Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--volume-res", type=int, default=32)
    parser.add_argument("--out-res", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="clips render size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = replace(BASE, batch=args.batch, checkpoint_every=10**9, log_every=1,
                     generator=replace(BASE.generator, volume_res=args.volume_res, out_res=args.out_res))
    with tempfile.TemporaryDirectory(prefix="3dgm-base-") as tmp:
        spec = {"clips": 1, "frames": 1, "width": args.size, "height": args.size, "seed": 1,
                "people": {"count": [1, 1]}, "motion": {"sources": ["walk"]}, "cameras": ["ring:2"],
                "passes": ["rgb", "instance"]}
        render_dataset(ClipSpec.parse(spec), Path(tmp) / "ds")
        data = ClipsDataset(Path(tmp) / "ds", config.generator.out_res, config.generator.warp_vertices)
        t0 = time.perf_counter()
        trainer = Trainer(data, Path(tmp) / "run", config, device="cpu")
        build_s = time.perf_counter() - t0
        # the step only: no checkpoint (~700 MB with both optimisers) and no sample sheet at the end
        trainer.save = lambda *a, **k: None  # type: ignore[method-assign]
        params_g = sum(p.numel() for p in trainer.G.parameters())
        params_d = sum(p.numel() for p in trainer.D_rgb.parameters()) + sum(
            p.numel() for p in trainer.D_sil.parameters())
        trainer.train(args.steps)
        logs = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    result = {
        "config": {"volume_res": args.volume_res, "out_res": args.out_res, "batch": args.batch,
                   "samples": f"{BASE.generator.samples}+{BASE.generator.samples_importance}",
                   "warp_vertices": BASE.generator.warp_vertices, "plane_res": BASE.generator.plane_res},
        "threads": args.threads,
        "params_G": params_g,
        "params_D": params_d,
        "build_s": round(build_s, 1),
        "step_s": [round(float(x["seconds"]), 1) for x in logs if "seconds" in x],
        "losses": [{k: round(float(x[k]), 3) for k in ("loss_d", "loss_g") if k in x} for x in logs],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
