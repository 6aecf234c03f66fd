"""Headless Blender session that runs the add-on's vertical slice and saves a .blend.

    .venv-blender/bin/python examples/headless_slice.py --out out/slice.blend

Starts a backend (``<backend python> -m backend serve`` on ``--data-dir``) unless ``--connection``
names a running one, enables the add-on from this checkout, and runs the steps of
``examples/blender_console_slice.py`` (add a body, shape it, animate it, two cameras, preview,
pose on the backend) through the add-on's operators, pumping the bridge (timers do not run in
``bpy``-as-a-module). ``--avatar DIR`` also imports an ``avatar-studio avatar`` output folder
through the bridge, in steps like a job's result; ``--footage DIR`` (an ``avatar-studio footage
make-plate`` folder) then puts the plate on the sequencer, keys its camera, and inserts that
avatar into it through the Footage panel (``footage.insert`` on the backend), the composite and
its layers coming back as strips above the plate. Writes the .blend and prints a JSON summary of
what it contains, with the longest pump (wall and CPU time: every pump, imports included, should
stay under 30 ms) and the slowest import steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "examples"))

import bpy  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/slice.blend"), help="the .blend to write")
    parser.add_argument(
        "--connection",
        type=Path,
        default=None,
        help="connection.json of a running backend (default: start one)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data dir of the backend this script starts (default: <out dir>/backend-data)",
    )
    parser.add_argument(
        "--backend-python",
        default=os.environ.get("AVATAR_STUDIO_BACKEND_PYTHON", str(REPO_ROOT / ".venv" / "bin" / "python")),
    )
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--preview-width", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole slice")
    parser.add_argument(
        "--avatar",
        type=Path,
        default=None,
        help="an `avatar-studio avatar --out` folder to import too (avatar_arrays.npz + avatar.json)",
    )
    parser.add_argument(
        "--footage",
        type=Path,
        default=None,
        help="an `avatar-studio footage make-plate` folder: insert the --avatar into it (needs --avatar)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    import addon_utils  # Blender's own module: importable once bpy is

    bpy.ops.wm.read_homefile(use_empty=True)
    if addon_utils.enable("blender_addon", default_set=True, handle_error=None) is None:
        print("could not enable the add-on", file=sys.stderr)
        return 1
    from blender_console_slice import slice_steps

    from blender_addon import bridge, local_backend

    started_backend = False
    if args.connection is None:
        data_dir = (args.data_dir or out.parent / "backend-data").resolve()
        pid = local_backend.start(args.backend_python, "", data_dir)
        started_backend = True
        connection = data_dir / "connection.json"
        print(f"started a backend (pid {pid}) on {data_dir}")
    else:
        connection = args.connection
    the_bridge = bridge.get_bridge()
    the_bridge.download_root_override = out.parent / f"{out.stem}_results"
    the_bridge.connect(connection)
    scene = bpy.context.scene
    deadline = time.monotonic() + args.timeout
    try:
        for step in slice_steps(scene, frames=args.frames, preview_width=args.preview_width):
            print(f"slice: {step.name}", flush=True)
            step.run()
            while not step.done():
                the_bridge.pump()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"step {step.name!r} did not finish: {the_bridge.status_text()}")
                time.sleep(0.02)
        if args.avatar is not None:
            import_avatar_folder(the_bridge, scene, args.avatar, deadline)
        if args.footage is not None and args.avatar is not None:
            # The avatar as a folder on the backend: a backend this script started reads
            # <data-dir>/inputs, so a copy goes there; demo.sh's backend has --input-root on its folder.
            avatar_on_backend = args.avatar.resolve()
            if started_backend:
                avatar_on_backend = data_dir / "inputs" / "demo-avatar"
                shutil.copytree(args.avatar, avatar_on_backend, dirs_exist_ok=True)
            insert_into_plate(the_bridge, scene, args.footage, avatar_on_backend, deadline)
    except (RuntimeError, TimeoutError) as exc:
        for level, text in the_bridge.log:
            print(f"  {level}: {text}", file=sys.stderr)
        print(f"slice failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if started_backend:
            local_backend.stop()
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    strips = scene.sequence_editor.strips if scene.sequence_editor else []
    clock = the_bridge.clock
    summary = {
        "blend": str(out),
        "bodies": [o.name for o in scene.objects if o.type == "ARMATURE"],
        "meshes": {o.name: len(o.data.vertices) for o in scene.objects if o.type == "MESH"},
        "strips": [{"name": s.name, "channel": s.channel, "frames": len(s.elements)} for s in strips],
        "jobs": [{"kind": j.kind, "state": j.state, "job_id": j.job_id} for j in scene.avatar_studio.jobs],
        # Every pump, imports included, is meant to stay under bridge.PUMP_LIMIT_S (30 ms): wall
        # time (what the UI would feel, including waits for a busy machine's CPU), the process's
        # CPU time, the part of it the garbage collector took (process-wide collections that
        # happened to run inside a pump, see blender_addon/pump_clock.py) and the CPU time of
        # the pump's own work; and the slowest single import steps.
        "max_pump_ms": round(clock.max_wall_s * 1000, 2),
        "max_pump_cpu_ms": round(clock.max_cpu_s * 1000, 2),
        "max_gc_in_pump_ms": round(clock.max_gc_s * 1000, 2),
        "max_pump_work_cpu_ms": round(clock.max_work_cpu_s * 1000, 2),
        "longest_import_step_ms": round(the_bridge.results.longest_step_s * 1000, 2),
        "slowest_import_steps": [
            {"kind": kind, "stage": stage, "wall_ms": round(wall * 1000, 2), "cpu_ms": round(cpu * 1000, 2)}
            for kind, stage, wall, cpu in sorted(the_bridge.results.step_costs, key=lambda c: -c[2])[:5]
        ],
    }
    print(json.dumps(summary, indent=2))
    return 0


def import_avatar_folder(the_bridge: Any, scene: Any, folder: Path, deadline: float) -> None:
    """Import an avatar built by the CLI through the bridge, in steps like a job's result (the
    same importer the Jobs panel uses), pumping until it is in."""
    data = json.loads((folder / "avatar.json").read_text())
    files = {"avatar_arrays.npz": folder / "avatar_arrays.npz"}
    meta = {"name": "Avatar"}
    the_bridge.import_local(scene, "avatar.from_views", "cli-avatar", data, {}, files, meta=meta)
    print("slice: import the CLI's avatar", flush=True)
    while the_bridge.import_progress("cli-avatar") is not None:
        the_bridge.pump()
        if time.monotonic() > deadline:
            stage = the_bridge.import_progress("cli-avatar")
            raise TimeoutError(f"the avatar import did not finish: {stage}")
        time.sleep(0.02)
    arm_obj = scene.objects.get("Avatar")
    if arm_obj is None:
        raise RuntimeError("the avatar import failed (see the log)")
    arm_obj.location.x += 1.5  # beside the body from the slice, not inside it
    mesh_obj = next(c for c in arm_obj.children if c.type == "MESH")
    print(f"imported avatar: {len(mesh_obj.data.vertices)} vertices, {len(arm_obj.data.bones)} bones")


def insert_into_plate(the_bridge: Any, scene: Any, plate: Path, avatar: Path, deadline: float) -> None:
    """The Footage panel on a CG plate: the plate's PNGs as an image strip on a free channel from
    frame 1, its camera.json as the scene camera, the avatar folder ``avatar`` (a path the backend
    reads: inside its input roots), a procedural walk placed where the plate expects it, the
    plate's depth; pumps the staging and the bridge until the layers are strips."""
    from blender_addon import footage_settings
    from blender_addon.importers.clip import camera_from_path
    from blender_addon.operators import footage as footage_ops
    from protocol.cameras import CameraPath

    path = CameraPath.from_json((plate / "camera.json").read_text())
    frames = sorted((plate / "plate").glob("*.png"))
    editor = scene.sequence_editor_create()
    channel = 1 + max((s.channel for s in editor.strips_all), default=0)
    strip = editor.strips.new_image(name="Plate", filepath=str(frames[0]), channel=channel, frame_start=1)
    for png in frames[1:]:
        strip.elements.append(png.name)
    scene.render.fps, scene.render.fps_base = round(path.fps), 1.0
    scene.frame_start, scene.frame_end = 1, len(frames)
    camera_from_path(scene, path, "Plate Camera")
    settings = scene.avatar_studio.footage
    settings.strip_name = strip.name
    settings.avatar_source, settings.avatar_dir = footage_settings.AVATAR_FOLDER, str(avatar)
    settings.motion = "walk"
    settings.depth_source, settings.depth_path = footage_settings.DEPTH_PATH, str((plate / "depth").resolve())
    settings.place_from_cursor = False
    settings.place = (-0.9, 0.0, 0.0)  # Blender axes: where make-plate's walk starts, behind the pillar
    settings.heading = 90.0
    print("slice: insert the avatar into the plate (Footage panel)", flush=True)
    if bpy.ops.avatar_studio.footage_insert(kind="footage.insert") != {"FINISHED"}:
        raise RuntimeError("the Footage panel refused the insert (see the log)")
    while footage_ops.pump_staging() is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"staging the footage did not finish: {footage_ops.progress}")
    item = footage_ops.last_footage_job(scene)
    if item is None:
        raise RuntimeError(f"the footage job was not submitted: {footage_ops.progress}")
    while not (item.imported or item.state in ("failed", "cancelled")):
        if item.message.startswith(("download failed", "import failed")):
            raise RuntimeError(f"footage.insert results: {item.message} (see the log)")
        the_bridge.pump()
        if time.monotonic() > deadline:
            raise TimeoutError(f"footage.insert did not finish: {the_bridge.status_text()}")
        time.sleep(0.02)
    if item.state != "succeeded":
        raise RuntimeError(f"footage.insert {item.state}: {item.error}")
    layers = [s.name for s in editor.strips_all if s.get("avatar_studio_job") == item.job_id]
    print(f"footage: {len(layers)} layer strips above the plate", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
