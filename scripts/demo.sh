#!/usr/bin/env bash
# The main job end to end on the embedded defaults (no GPU, no downloaded weights):
# a backend process, diagnostics over the wire, a body preview, an avatar from synthetic views,
# a small clips dataset with ground truth on a local Ray cluster (checked, with its vis sheet),
# the avatar inserted into a CG plate with an occluder (3D route: layers, shadow, occlusion), and
# a headless Blender session that drives the add-on (the Footage panel included: the layers come
# back as strips in the sequencer) and writes a .blend with the results.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-out/demo}"
bash scripts/bootstrap.sh
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
DATA="$OUT/backend"
CLI=(.venv/bin/avatar-studio)
CONN="$DATA/connection.json"
export AVATAR_STUDIO_DATA_DIR="$DATA"
export AVATAR_STUDIO_BACKEND_PYTHON="$PWD/.venv/bin/python"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start the backend (data dir $DATA)"
rm -f "$CONN"
# --input-root: the add-on may name files under the demo folder (the avatar, the plate) in its jobs
"${CLI[@]}" serve --data-dir "$DATA" --input-root "$OUT" > "$OUT/backend.log" 2>&1 &
BACKEND_PID=$!
trap 'kill $BACKEND_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$CONN" ] && break; sleep 0.1; done
[ -s "$CONN" ] || { cat "$OUT/backend.log"; echo "backend did not start" >&2; exit 1; }

step "system.info over the wire"
"${CLI[@]}" submit system.info --connection "$CONN" --wait --out "$OUT/system-info"

step "system.sleep with progress"
"${CLI[@]}" submit system.sleep --connection "$CONN" --params '{"seconds": 1.0}' --wait --out "$OUT/system-sleep"

step "body preview: stand-in SMPL-X body walking, 4-camera orbit (RGB, mask, depth, normals, OpenPose)"
"${CLI[@]}" preview --motion walk --cameras orbit:4 --frames 8 --size 256x256 --out "$OUT/preview"

step "avatar from views: a synthetic character, then sculpt + UV texture + rig (CPU defaults)"
"${CLI[@]}" avatar make-synthetic --out "$OUT/views"
"${CLI[@]}" avatar --views "$OUT/views" --out "$OUT/avatar"

step "clips: 3 clips of 2 people x 4 ring cameras with ground truth, rendered on a local Ray cluster"
"${CLI[@]}" clips render --people 2 --motion walk --cameras ring:4 --frames 8 --clips 3 --size 256x256 \
  --seed 1 --out "$OUT/clips" --ray local
"${CLI[@]}" clips check "$OUT/clips"
"${CLI[@]}" clips vis "$OUT/clips" --clip 000000 --out "$OUT/clips/sheet.png"

step "footage: a CG plate with a pillar in front of the walk, the avatar inserted (3D route)"
"${CLI[@]}" footage make-plate --avatar "$OUT/avatar" --frames 24 --size 512x384 --out "$OUT/plate"
"${CLI[@]}" footage insert --video "$OUT/plate/plate" --camera "$OUT/plate/camera.json" --fps 30 \
  --depth "$OUT/plate/depth" --avatar "$OUT/avatar" --motion walk --place=-0.9,0,0 --heading 90 \
  --out "$OUT/insert"

step "headless Blender: the add-on's slice against this backend (Footage panel included), saved as a .blend"
.venv-blender/bin/python examples/headless_slice.py --connection "$CONN" --out "$OUT/demo.blend" \
  --avatar "$OUT/avatar" --footage "$OUT/plate"

step "done"
echo "results in $OUT: preview/, avatar/avatar.glb, clips/ (sheet.png), insert/ (composite.mp4, layers), demo.blend"
