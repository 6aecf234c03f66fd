"""Headless Blender session that runs the add-on's vertical slice and saves a .blend.

    .venv-blender/bin/python examples/headless_slice.py --out out/slice.blend

Starts a backend (``<backend python> -m backend serve`` on ``--data-dir``) unless ``--connection``
names a running one, enables the add-on from this checkout, and runs the steps of
``examples/blender_console_slice.py`` (add a body, shape it, animate it, two cameras, preview,
pose on the backend) through the add-on's operators, pumping the bridge (timers do not run in
``bpy``-as-a-module). ``--avatar DIR`` also imports an ``avatar-studio avatar`` output folder
through the bridge, in steps like a job's result. Writes the .blend and prints a JSON summary of
what it contains, with the longest pump (wall and CPU time: every pump, imports included, should
stay under 30 ms) and the slowest import steps.
"""

from __future__ import annotations

import argparse
import json
import os
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


if __name__ == "__main__":
    raise SystemExit(main())
