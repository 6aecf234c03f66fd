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

try:
    import bpy
except ImportError as exc:  # fail, never skip: a CI without Blender must not pass this suite by skipping it
    raise RuntimeError(
        "the Blender suite needs bpy: run it with the Blender environment, e.g. "
        ".venv-blender/bin/python -m pytest tests/blender -p no:cacheprovider"
    ) from exc


def backend_python() -> str:
    """The backend's Python (a different environment from Blender's), for starting a real backend."""
    return os.environ.get("AVATAR_STUDIO_BACKEND_PYTHON", str(REPO_ROOT / ".venv" / "bin" / "python"))


# --- add-on helper fixtures (blender_addon; tests/blender/test_addon_*.py) -----------------------


class BackendProcess:
    """A real backend subprocess (``python -m backend serve --data-dir DIR``) on 127.0.0.1."""

    def __init__(self, data_dir: Path, command: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.command = command or [backend_python(), "-m", "backend", "serve", "--data-dir", str(data_dir)]
        self.connection_file = data_dir / "connection.json"
        self.process = None
        self.log_path = data_dir / "backend-test.log"

    def start(self, timeout: float = 60.0) -> None:
        import subprocess
        import time

        self.connection_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while not self.connection_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"backend exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend wrote no connection file in {timeout} s: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the server (its worker processes die with it or are orphaned, as in a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a stuck server is killed
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def backend_server(tmp_path: Path):
    """A started backend on a fresh data dir; stopped after the test."""
    server = BackendProcess(tmp_path / "backend-data")
    server.data_dir.mkdir(parents=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def avatar_addon():
    """The add-on enabled from the checkout (as Blender would: via addon_utils), disabled at the end."""
    import addon_utils

    module = addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    assert module is not None, "the add-on failed to enable"
    yield module
    addon_utils.disable("blender_addon", default_set=True)


@pytest.fixture
def clean_scene(avatar_addon):
    """An emptied scene (objects, data, strips, jobs) and a disconnected bridge."""
    import addon_utils

    from blender_addon import bridge

    if not hasattr(bpy.types.Scene, "avatar_studio"):
        # A test before this one read Blender's factory settings (test_cameras_blender.py does),
        # which disables every add-on: enable it again, as the session fixture did.
        assert addon_utils.enable("blender_addon", default_set=True, handle_error=None) is not None

    def clear() -> None:
        bridge.reset_bridge()
        scene = bpy.context.scene
        if scene.sequence_editor is not None:
            for strip in list(scene.sequence_editor.strips):
                scene.sequence_editor.strips.remove(strip)
        for obj in list(bpy.data.objects):
            bpy.data.objects.remove(obj)
        for collection in (bpy.data.meshes, bpy.data.armatures, bpy.data.actions, bpy.data.cameras,
                           bpy.data.images):
            for block in list(collection):
                collection.remove(block)
        scene.avatar_studio.jobs.clear()
        # The panels' settings back to their defaults (a test that sets a run folder or a photo
        # must not hand it to the next test).
        for group_prop in scene.avatar_studio.bl_rna.properties:
            if group_prop.type != "POINTER" or group_prop.identifier == "rna_type":
                continue
            group = getattr(scene.avatar_studio, group_prop.identifier)
            for prop in group.bl_rna.properties:
                if prop.identifier != "rna_type" and not prop.is_readonly:
                    group.property_unset(prop.identifier)
        scene.frame_start, scene.frame_end, scene.frame_current = 1, 250, 1
        # Render settings other tests change (test_cameras_blender.py: pixel aspect, percentage).
        render = scene.render
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        render.resolution_percentage = 100

    clear()
    yield bpy.context.scene
    clear()


# A server whose messages may be at most SMALL_MESSAGE_BYTES: artifacts above that must come in
# ranges (the server answers a whole-artifact request with an error naming ranges).
SMALL_MESSAGE_BYTES = 3 << 19  # 1.5 MiB: the server keeps 1 MiB of each reply for the envelope
_SMALL_LIMIT_SERVER = """
import sys
from pathlib import Path
from backend.server.app import Server, ServerConfig
from protocol.session import Limits
config = ServerConfig(data_dir=Path(sys.argv[1]), limits=Limits(max_message_bytes=int(sys.argv[2])))
server = Server(config)
server.start()
server.serve_forever()
"""


@pytest.fixture
def small_message_backend(tmp_path: Path):
    """A started backend that refuses messages over SMALL_MESSAGE_BYTES; stopped after the test."""
    data_dir = tmp_path / "small-backend-data"
    data_dir.mkdir(parents=True)
    server = BackendProcess(
        data_dir, [backend_python(), "-c", _SMALL_LIMIT_SERVER, str(data_dir), str(SMALL_MESSAGE_BYTES)]
    )
    server.start()
    yield server
    server.stop()
