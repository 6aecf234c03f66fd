"""Shared fixtures for tests that run inside the Blender environment (.venv-blender, real bpy).

Each helper module appends its own fixtures below; keep this header minimal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # protocol/ and blender_addon/ are imported from the checkout during development.
    sys.path.insert(0, str(REPO_ROOT))

bpy = pytest.importorskip("bpy", reason="Blender tests run in the Blender environment (.venv-blender)")


def backend_python() -> str:
    """The backend's Python (a different environment from Blender's), for starting a real backend."""
    return os.environ.get("AVATAR_STUDIO_BACKEND_PYTHON", str(REPO_ROOT / ".venv" / "bin" / "python"))
