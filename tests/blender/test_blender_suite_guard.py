"""The Blender suite fails (never skips) when ``bpy`` is missing, so a CI that lost its Blender
environment cannot pass it by skipping everything."""

from __future__ import annotations

import os
import subprocess

from conftest import REPO_ROOT, backend_python


def test_the_suite_fails_without_bpy() -> None:
    # The backend's Python has pytest but no bpy.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [backend_python(), "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
         str(REPO_ROOT / "tests" / "blender" / "test_cameras_blender.py")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    output = done.stdout + done.stderr
    assert done.returncode not in (0, 5), output[-2000:]  # 5: "no tests collected" (all skipped)
    assert "the Blender suite needs bpy" in output, output[-2000:]
