"""The built extension zip installs with Blender's own installer, enables, registers every class,
imports its vendored protocol (not the checkout's), and unregisters cleanly.

Each install runs in a fresh Blender-environment Python with ``BLENDER_USER_RESOURCES`` pointing at
a temporary folder, so nothing touches the real user configuration and the checkout's ``protocol``
is not on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

from conftest import REPO_ROOT, backend_python

INSTALL_SCRIPT = r"""
import json, sys
import bpy, addon_utils

zip_path = sys.argv[1]
connection = sys.argv[2] if len(sys.argv) > 2 else None
result = {}
repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
name = "bl_ext.user_default.avatar_studio"
result["enabled"] = name in bpy.context.preferences.addons
module = sys.modules.get(name)
result["classes"] = [c.__name__ for c in module.CLASSES]
result["registered"] = [c.__name__ for c in module.CLASSES if c.is_registered]
result["protocol_module"] = module.wire.protocol.__name__
result["client_module"] = module.wire.client_module().__name__
result["operators"] = sorted(op for op in dir(bpy.ops.avatar_studio))
result["scene_props"] = hasattr(bpy.types.Scene, "avatar_studio")
result["prefs"] = bpy.context.preferences.addons[name].preferences.bl_rna.identifier
result["handler_installed"] = any(getattr(h, "__module__", "").startswith(name)
                                  for h in bpy.app.handlers.load_post)
result["timer"] = bpy.app.timers.is_registered(module.bridge.timer_callback)
result["repo_dir"] = repo.directory
if connection:
    # The installed add-on (its vendored protocol) runs a job against a real backend.
    import time
    the_bridge = module.bridge.get_bridge()
    the_bridge.download_root_override = connection + ".downloads"
    the_bridge.connect(connection)
    deadline = time.monotonic() + 60
    item = None
    while time.monotonic() < deadline:
        the_bridge.pump()
        if item is None and the_bridge.connected:
            item = the_bridge.submit(bpy.context.scene, "system.sleep", {"seconds": 0.3})
        if item is not None and (item.imported or item.state == "failed"):
            break
        time.sleep(0.02)
    result["job_state"] = item.state if item is not None else the_bridge.status_text()
    result["job_message"] = item.message if item is not None else ""
    the_bridge.disconnect()
import glob, os
site = os.path.join(bpy.utils.user_resource("EXTENSIONS"), ".local", "lib", "python*", "site-packages")
result["wheel_extracted"] = bool(glob.glob(os.path.join(site, "zmq", "__init__.py")))
addon_utils.disable(name, default_set=True)
result["after_disable_registered"] = [c.__name__ for c in module.CLASSES if c.is_registered]
result["after_disable_scene_props"] = hasattr(bpy.types.Scene, "avatar_studio")
result["after_disable_handler"] = any(getattr(h, "__module__", "").startswith(name)
                                      for h in bpy.app.handlers.load_post)
result["after_disable_timer"] = bpy.app.timers.is_registered(module.bridge.timer_callback)
print("RESULT " + json.dumps(result))
"""


def build_zip(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [backend_python(), "-m", "backend.addon_build", "--out", str(out), "--json", *extra],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def install(
    zip_path: Path, user_dir: Path, expect_refusal: bool = False, connection: Path | None = None
) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    script = user_dir.parent / "install_script.py"
    script.write_text(INSTALL_SCRIPT)
    # cwd away from the checkout: the installed add-on must not see the repository's protocol.
    done = subprocess.run(
        [sys.executable, str(script), str(zip_path), *([str(connection)] if connection else [])],
        cwd=user_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if expect_refusal:
        assert done.returncode != 0
        return {"output": done.stdout + done.stderr}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"install failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def check_installed(result: dict) -> None:
    assert result["enabled"]
    assert len(result["classes"]) >= 20
    assert result["registered"] == result["classes"]
    assert result["protocol_module"] == "bl_ext.user_default.avatar_studio.protocol"
    assert result["client_module"] == "bl_ext.user_default.avatar_studio.protocol.client"
    for op in (
        "connect",
        "add_body",
        "render_preview",
        "cancel_job",
        "reattach_job",
        "import_job",
        "load_amass",
        "start_backend",
        "stop_backend",
    ):
        assert op in result["operators"]
    assert result["scene_props"] and result["handler_installed"] and result["timer"]
    assert result["prefs"] == "AVS_AddonPreferences"
    assert result["after_disable_registered"] == []
    assert not result["after_disable_scene_props"]
    assert not result["after_disable_handler"] and not result["after_disable_timer"]


def test_zip_installs_registers_and_unregisters(tmp_path: Path, backend_server) -> None:
    built = build_zip(tmp_path / "dist", "--no-wheels")
    assert built.returncode == 0, built.stderr
    (entry,) = json.loads(built.stdout)["zips"]
    zip_path = Path(entry["zip"])
    assert entry["wheels"] == [] and zip_path.name == "avatar_studio-0.1.0.zip"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {"blender_manifest.toml", "__init__.py", "protocol/client.py", "protocol/cameras.py"} <= names
    assert not any("__pycache__" in n for n in names)
    result = install(zip_path, tmp_path / "user", connection=backend_server.connection_file)
    check_installed(result)
    assert result["job_state"] == "succeeded" and "saved in" in result["job_message"]


def test_zips_with_the_linux_wheels(tmp_path: Path) -> None:
    """The zip for this Python bundles the pyzmq wheel that Blender's installer extracts here; the
    zip for the other Blender Python is refused with Blender's own message (needs PyPI or a cache)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    other = "3.11" if python != "3.11" else "3.13"
    built = build_zip(
        tmp_path / "dist",
        *("--platform", "linux-x64", "--python", python, "--python", other),
        *("--data-dir", str(Path(os.environ.get("AVATAR_STUDIO_TEST_CACHE", tmp_path / "cache")))),
    )
    if built.returncode != 0 and "pip could not fetch" in built.stderr:
        pytest.skip(f"no network for pip download: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    zips = {Path(z["zip"]).stem.rsplit("-", 1)[-1]: z for z in json.loads(built.stdout)["zips"]}
    assert set(zips) == {"py311", "py313"}
    mine = zips["py" + python.replace(".", "")]
    assert len(mine["wheels"]) == 1 and "manylinux" in mine["wheels"][0]
    with zipfile.ZipFile(mine["zip"]) as archive:
        manifest = archive.read("blender_manifest.toml").decode()
    assert f'"./{mine["wheels"][0]}"' in manifest
    result = install(Path(mine["zip"]), tmp_path / "user")
    check_installed(result)
    assert result["wheel_extracted"], "Blender's installer did not extract the bundled pyzmq wheel"
    refused = install(
        Path(zips["py" + other.replace(".", "")]["zip"]), tmp_path / "user2", expect_refusal=True
    )
    assert "isn't compatible" in refused["output"]


def test_wheel_selection_and_manifest_rendering() -> None:
    from backend import addon_build

    linux311 = addon_build.WheelTarget("linux-x64", "3.11")
    linux313 = addon_build.WheelTarget("linux-x64", "3.13")
    mac_arm = addon_build.WheelTarget("macos-arm64", "3.13")
    abi3 = "pyzmq-27.3.0-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl"
    assert addon_build.wheel_matches(abi3, linux313, "27.3.0")
    assert not addon_build.wheel_matches(abi3, linux311, "27.3.0")  # abi3 from 3.12 on
    assert not addon_build.wheel_matches(abi3, linux313, "26.0.0")  # other version
    assert addon_build.wheel_matches("pyzmq-27.3.0-cp311-cp311-manylinux_2_28_x86_64.whl", linux311, "27.3.0")
    assert not addon_build.wheel_matches("pyzmq-27.3.0-cp311-cp311-win_amd64.whl", linux311, "27.3.0")
    assert addon_build.wheel_matches("pyzmq-27.3.0-cp312-abi3-macosx_10_15_universal2.whl", mac_arm, "27.3.0")
    template = (REPO_ROOT / "blender_addon" / "blender_manifest.toml").read_text()
    rendered = addon_build.render_manifest(template, [abi3], "9.8.7")
    assert f'"./wheels/{abi3}"' in rendered and 'version = "9.8.7"' in rendered
    assert "wheels" not in tomllib.loads(addon_build.render_manifest(template, [], "1.0.0"))


def test_offline_build_without_a_wheel_fails_clearly(tmp_path: Path) -> None:
    built = build_zip(
        tmp_path / "dist",
        "--offline",
        "--platform",
        "windows-x64",
        "--python",
        "3.11",
        "--data-dir",
        str(tmp_path / "empty-cache"),
        "--wheel-dir",
        str(tmp_path),
    )
    assert built.returncode == 2
    assert "no pyzmq" in built.stderr and "windows-x64/cp311" in built.stderr
