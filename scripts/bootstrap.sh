#!/usr/bin/env bash
# Creates both Python environments from nothing (idempotent): the backend's (.venv, Python 3.11,
# torch) and Blender's (.venv-blender, bpy as a module). Blender's Python is not the backend's, as in
# real life, so the add-on is tested against a real backend in another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

# System libraries that headless Blender (bpy) needs, and ffmpeg-free video via imageio-ffmpeg's wheel.
BLENDER_APT_PKGS=(libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libxext6 libsm6 libice6 libgl1
                  libegl1 libegl-mesa0 libgl1-mesa-dri)
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${BLENDER_APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi
fi

find_python() {  # find_python 3.11 -> the real interpreter path of that minor version, or nothing
  local v=$1 c exe
  # pyenv shims only run the version pyenv selects, so ask each candidate for its real executable.
  for c in "python$v" "$(pyenv root 2>/dev/null)"/versions/"$v"*/bin/"python$v" /usr/bin/"python$v" /usr/local/bin/"python$v"; do
    exe=$(PYENV_VERSION=$(pyenv versions --bare 2>/dev/null | grep "^$v" | tail -1) "$c" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
    [ -n "$exe" ] && [ -x "$exe" ] && { echo "$exe"; return 0; }
  done
  return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import torch, backend' >/dev/null 2>&1; then
  PY311=$(find_python 3.11) || { echo "Python 3.11 is required for the backend" >&2; exit 1; }
  log "backend env: $PY311 -> .venv (torch 2.14.1, project with [dev])"
  "$PY311" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
  .venv/bin/pip install -q -e '.[dev]'
  sha256sum pyproject.toml | cut -d' ' -f1 > .venv/.pyproject-sha256  # just installed: nothing to re-sync
fi
# Re-sync the project's dependencies whenever pyproject.toml changed since the last install.
PYPROJECT_HASH=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat .venv/.pyproject-sha256 2>/dev/null)" != "$PYPROJECT_HASH" ]; then
  log "backend env: syncing dependencies with pyproject.toml"
  .venv/bin/pip install -q -e '.[dev]'
  echo "$PYPROJECT_HASH" > .venv/.pyproject-sha256
fi

if [ ! -x .venv-blender/bin/python ] || ! .venv-blender/bin/python -c 'import bpy, zmq' >/dev/null 2>&1; then
  rm -rf .venv-blender
  if PY313=$(find_python 3.13); then
    log "blender env: $PY313 -> .venv-blender (bpy 5.2.3)"
    "$PY313" -m venv .venv-blender
    BPY_SPEC=(bpy==5.2.3 numpy)
  else
    PY311=$(find_python 3.11)
    log "blender env: no Python 3.13; $PY311 -> .venv-blender (bpy 5.0.1, numpy<2)"
    "$PY311" -m venv .venv-blender
    BPY_SPEC=(bpy==5.0.1 'numpy<2')
  fi
  .venv-blender/bin/pip install -q --upgrade pip >/dev/null
  .venv-blender/bin/pip install -q "${BPY_SPEC[@]}" pyzmq pytest pytest-timeout
fi
log "environments ready"
