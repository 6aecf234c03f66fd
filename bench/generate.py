"""Multi-view generation benchmark: memory and time of sliding-window cross-frame attention vs K.

    .venv/bin/python bench/generate.py [--size 256] [--views 2,4,8,16] [--repeats 3]
    .venv/bin/python bench/generate.py --unet --size 512 --views 4,8,16     # on a CUDA machine

(a) **attention**: one self-attention layer of SD 1.5's first UNet level (320 channels, 8 heads of
40, ``(size/8)^2`` tokens), a classifier-free-guidance batch of 2K samples; plain per-view
attention, the cross-frame processor with ``window=1`` (anchor + previous view + itself) and with
the window covering every view (full cross-frame attention, O(K^2)). Peak memory: the
dispatcher-level meter (``backend/generate/meter.py``) on CPU, ``max_memory_allocated`` on CUDA.
(b) ``--unet``: one denoising step (ControlNet + UNet) of SD 1.5's architecture with random
weights (no download; fp16 on CUDA) over K views, plain vs cross-frame: time and peak VRAM.
Prints a JSON line per measurement. Best of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: E402

from backend.generate.attention import CrossFrameAttnProcessor, cross_frame_attention  # noqa: E402
from backend.generate.meter import PeakBytes  # noqa: E402

# SD 1.5 (runwayml/stable-diffusion-v1-5 unet/config.json), the architecture the real weights have.
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=768, attention_head_dim=8,
)


def measure(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, int]:
    """Best seconds over ``repeats`` and peak bytes of one call (after a warm-up call)."""
    with torch.no_grad():
        fn()
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            with PeakBytes() as meter:
                fn()
            peak = meter.peak
    return best, peak


def bench_attention(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    attn = Attention(query_dim=320, heads=8, dim_head=40).to(device, dtype).eval()
    tokens = (args.size // 8) ** 2
    for views in args.views:
        x = torch.randn(2 * views, tokens, 320, device=device, dtype=dtype)
        modes = {"plain": AttnProcessor2_0(), "window1": CrossFrameAttnProcessor(views, window=1)}
        if views <= args.full_max:
            modes["full"] = CrossFrameAttnProcessor(views, window=views)
        for mode, proc in modes.items():
            seconds, peak = measure(lambda proc=proc, x=x: proc(attn, x), device, args.repeats)
            print(json.dumps({"bench": "attention", "device": str(device), "size": args.size,
                              "tokens": tokens, "views": views, "mode": mode, "ms": round(seconds * 1e3, 2),
                              "peak_mib": round(peak / 2**20, 1),
                              "peak_mib_per_view": round(peak / 2**20 / views, 2)}), flush=True)


def bench_unet(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    from diffusers import ControlNetModel, UNet2DConditionModel

    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET).to(dtype).eval()
        controlnet = ControlNetModel.from_unet(unet).to(dtype).eval()
    latent = args.size // 8
    for views in args.views:
        batch = 2 * views
        sample = torch.randn(batch, 4, latent, latent, device=device, dtype=dtype)
        text = torch.randn(batch, 77, 768, device=device, dtype=dtype)
        cond = torch.rand(batch, 3, args.size, args.size, device=device, dtype=dtype)
        t = torch.tensor(500, device=device)

        def step(sample: torch.Tensor = sample, text: torch.Tensor = text, cond: torch.Tensor = cond,
                 t: torch.Tensor = t) -> None:
            down, mid = controlnet(sample, t, encoder_hidden_states=text, controlnet_cond=cond,
                                   return_dict=False)
            unet(sample, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                 mid_block_additional_residual=mid)

        for mode in ("plain", "window1"):
            if mode == "plain":
                seconds, peak = measure(step, device, args.repeats)
            else:
                with cross_frame_attention(unet, views, window=1):
                    seconds, peak = measure(step, device, args.repeats)
            print(json.dumps({"bench": "unet_step", "device": str(device), "dtype": str(dtype),
                              "size": args.size, "views": views, "mode": mode, "ms": round(seconds * 1e3, 1),
                              "peak_mib": round(peak / 2**20, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (latents are size/8)")
    parser.add_argument("--views", type=lambda s: [int(v) for v in s.split(",")], default=[2, 4, 8, 16])
    parser.add_argument("--full-max", type=int, default=8, help="largest K for full cross-frame attention")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--unet", action="store_true", help="also one SD 1.5-sized ControlNet + UNet step")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    bench_attention(args, device, dtype)
    if args.unet:
        bench_unet(args, device, dtype)


if __name__ == "__main__":
    main()
