#!/usr/bin/env bash
# The real-weights check on a CUDA machine (not part of CI; docs/generate.md, "GPU check"): one
# avatar from a prompt through the avatar.from_text job, with per-stage seconds and peak VRAM.
#
#   avatar-studio models download base-diffusion      # once per role the run needs (see below)
#   avatar-studio models download controlnet-openpose
#   bash scripts/gpu_check.sh [--prompt "..."] [--models FILE] [--out DIR] [--views 8]
#                             [--quality standard] [--seed 0] [--param NAME=JSON ...]
#
# Exits 2 naming every missing role (and the download command) or saying there is no CUDA device,
# before anything is loaded. Extra options: scripts/gpu_check.py --help.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${AVATAR_STUDIO_BACKEND_PYTHON:-$root/.venv/bin/python}"
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" "$root/scripts/gpu_check.py" "$@"
