#!/usr/bin/env bash
# The test command of the README: sets up both environments if needed, lints, then runs the backend
# suite (Python 3.11 + torch) and the Blender suite (real bpy, talking to a real backend subprocess).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1

export AVATAR_STUDIO_BACKEND_PYTHON="$PWD/.venv/bin/python"
# Tests never touch the user's data dir.
export AVATAR_STUDIO_DATA_DIR="${AVATAR_STUDIO_DATA_DIR:-$(mktemp -d -t avatar-studio-test-XXXX)}"

status=0
echo "== ruff"
.venv/bin/ruff check . || status=1

echo "== backend tests (.venv, Python 3.11)"
.venv/bin/python -m pytest -q tests --ignore=tests/blender "$@" || status=1

echo "== blender tests (.venv-blender, bpy)"
.venv-blender/bin/python -m pytest -q tests/blender -p no:cacheprovider "$@" || status=1

exit $status
