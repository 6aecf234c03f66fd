"""``python -m backend.body``: generate the stand-in body or describe the body model in use.

python -m backend.body generate [--data-dir DIR] [--json]
python -m backend.body info [--model PATH] [--gender G] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _generate(args: argparse.Namespace) -> dict[str, object]:
    from .standin import GENDERS, ensure_standin

    start = time.perf_counter()
    paths = {g: str(ensure_standin(g, args.data_dir)) for g in GENDERS}
    return {"files": paths, "seconds": round(time.perf_counter() - start, 2)}


def _info(args: argparse.Namespace) -> dict[str, object]:
    from .model import BodyModel, BodyModelConfig

    model = BodyModel(BodyModelConfig(model_path=args.model, gender=args.gender, data_dir=args.data_dir))
    rest = model.rest_vertices().detach()
    return {
        "model_file": str(model.model_file),
        "stand_in": model.is_standin,
        "vertices": int(rest.shape[0]),
        "faces": int(model.faces.shape[0]),
        "joints": len(model.joint_names),
        "height_m": round(float(rest[:, 1].max() - rest[:, 1].min()), 4),
        "parts": list(model.part_names),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.body", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data dir (default: $AVATAR_STUDIO_DATA_DIR)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="generate (or find cached) stand-in bodies for all genders")
    info = sub.add_parser("info", help="load a body model and describe it")
    info.add_argument("--model", type=Path, default=None, help="licensed SMPLX_*.npz (default: stand-in)")
    info.add_argument("--gender", default="neutral", choices=["neutral", "male", "female"])
    args = parser.parse_args(argv)
    result = _generate(args) if args.command == "generate" else _info(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
