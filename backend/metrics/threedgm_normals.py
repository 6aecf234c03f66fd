"""Normal maps to score against the clips' ground truth: the generator's normals and the dataset's
``normal.npy`` for the same views, written as two folders ``avatar-studio eval`` reads.

For ``count`` dataset views (spread over the dataset), avatar ``i`` (z from ``seed``) is rendered
for view ``i``'s camera and posed body, as the trainer's FID renders are (backend/threedgm/evaluate.py),
and its normal map (:mod:`backend.threedgm.normals`) is written to ``pred/<item>.png``; the view's
ground-truth normals
(the clips' camera-axes ``normal.npy`` of that person, cropped and area-resized exactly as the
dataset crops the image, renormalised) go to ``gt/<item>.png``. Both are in the **camera axes**
(OpenCV; the crop changes K, not the axes), rgb = (n + 1) / 2, alpha = where the map has a normal
(the generator's opacity >= 0.5; the person's mask covering >= half the pixel). Then::

    avatar-studio eval --normals OUT/pred OUT/gt            # normal accuracy (angles, % within)
    avatar-studio eval --fid OUT/gt OUT/pred                # Normal-FID (En3D): FID of the maps

(the FID reads the RGB: the background is the zero normal's gray on both sides). The clips dataset
must have the ``normal`` pass (``clips render``'s default passes include it).

    python -m backend.metrics.threedgm_normals --run RUN --data DATA --out OUT [--count 64] [--seed 0]

writes both folders and prints the normal accuracy as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from backend.threedgm.dataset import ClipsDataset, collate, crop_box, crop_resize
from backend.threedgm.evaluate import spread
from backend.threedgm.generator import BodyBatch, Generator
from backend.threedgm.normals import generator_normals, to_camera


class NormalDataError(ValueError):
    """The dataset has no ground-truth normals (the message says how to render them)."""


def ground_truth_normals(data: ClipsDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """((3,S,S) camera-axes unit normals, 0 off the person; (S,S) bool mask) of dataset item
    ``index``: the clip's normal map of that person, cropped as :class:`ClipsDataset` crops the image."""
    clip_id, cam_name, f, p = data.items[index]
    cam = data._read(clip_id).cameras[cam_name]
    if cam.normal is None:
        raise NormalDataError(
            f"{data.root}: clip {clip_id} camera {cam_name} has no normal.npy; render the dataset with "
            "the normal pass (`clips render`'s default passes have it; a --spec's \"passes\" must list it)"
        )
    x0, y0, side = crop_box(cam.annotations["bbox"][f, p], data.margin)
    mask = torch.from_numpy((np.asarray(cam.instance[f]) == p + 1).astype(np.float32))[None]
    normal = torch.from_numpy(np.asarray(cam.normal[f], dtype=np.float32)).permute(2, 0, 1) * mask
    n = crop_resize(normal, x0, y0, side, data.size, 0.0)
    cover = crop_resize(mask, x0, y0, side, data.size, 0.0)[0]
    norm = n.norm(dim=0, keepdim=True)
    keep = (cover >= 0.5) & (norm[0] > 1e-3)
    n = torch.where(keep[None], n / norm.clamp(min=1e-6), torch.zeros_like(n))
    return n, keep


def _write(path: Path, normals: torch.Tensor, mask: torch.Tensor) -> None:
    rgb = np.clip(np.round((normals.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    alpha = (mask.numpy() * 255).astype(np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA").save(path)


@torch.no_grad()
def write_normal_sets(
    G: Generator, data: ClipsDataset, out: str | Path, count: int = 64, seed: int = 0, batch: int = 8
) -> dict[str, Path]:
    """``out/pred`` (the generator's normals) and ``out/gt`` (the clips'), one PNG per view each."""
    out = Path(out)
    pred_dir, gt_dir = out / "pred", out / "gt"
    pred_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    device = next(G.parameters()).device
    indices = spread(count, len(data))
    z = torch.randn((len(indices), G.cfg.z_dim), generator=torch.Generator().manual_seed(seed))
    for s in range(0, len(indices), batch):
        chunk = indices[s : s + batch]
        gts = [ground_truth_normals(data, i) for i in chunk]  # first: a dataset without normals fails early
        items = collate([data[i] for i in chunk])
        items = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in items.items()}
        body = BodyBatch(items["verts"], items["transforms"], items["root"])
        planes = G.synthesis(G.map(z[s : s + batch].to(device), items["cond"]))
        nm = generator_normals(G, planes, items["K"], items["R"], items["t"], body, data.size)
        cam = to_camera(nm.normals.float(), items["R"]).cpu()
        for j, i in enumerate(chunk):
            name = f"{i:06d}.png"
            _write(pred_dir / name, cam[j], cam[j].norm(dim=0) > 0.5)
            _write(gt_dir / name, *gts[j])
    return {"pred": pred_dir, "gt": gt_dir}


def main(argv: list[str] | None = None) -> int:
    from backend.metrics.images import EvalInputError
    from backend.metrics.normals import normal_accuracy_folders
    from backend.threedgm.dataset import DatasetError
    from backend.threedgm.sample import CheckpointError, load_run

    parser = argparse.ArgumentParser(prog="python -m backend.metrics.threedgm_normals", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a 3dgm train run folder")
    parser.add_argument("--data", type=Path, required=True, help="a clips dataset with the normal pass")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=64, help="views (spread over the dataset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run, args.device)
        data = ClipsDataset(args.data, run.config.generator.out_res, run.config.generator.warp_vertices)
        dirs = write_normal_sets(run.G, data, args.out, args.count, args.seed)
        scores = normal_accuracy_folders(dirs["pred"], dirs["gt"]).as_dict()
    except (CheckpointError, DatasetError, NormalDataError, EvalInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"normals": scores, "pred": str(dirs["pred"]), "gt": str(dirs["gt"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
