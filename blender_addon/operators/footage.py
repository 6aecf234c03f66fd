"""Footage operators: insert the avatar into the shot (footage.insert), decompose the shot
(footage.decompose), cancel.

The operator builds the params at once (``footage_export.prepare``: the strip, the camera per
footage frame, the motion), then the files a local backend needs inside its input roots are
linked or copied a few MiB per call of :func:`pump_staging` (a ``bpy.app.timers`` timer in
Blender; tests and scripts call it), and the job is submitted through the bridge when they are in
place. Progress and cancel are the Jobs panel's; the result comes back as strips above the footage
(``importers/footage.py``).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import bpy
from bpy.props import EnumProperty

from .. import bridge, footage_export
from . import gates
from .from_selected import inputs_folder

STAGING_INTERVAL_S = 0.05
STAGING_BUDGET_S = 0.010  # per timer call: a copy step is 8 MiB (a few ms)


class _Task:
    def __init__(self, prepared: footage_export.Prepared, scene_name: str) -> None:
        self.prepared = prepared
        self.scene_name = scene_name
        self.steps = prepared.staging.steps()


_tasks: list[_Task] = []
progress: dict[str, Any] = {"message": ""}


def pending() -> int:
    return len(_tasks)


def _submit(task: _Task) -> None:
    scene = bpy.data.scenes.get(task.scene_name)
    prepared = task.prepared
    if scene is None or not bridge.get_bridge().connected:
        progress["message"] = f"{prepared.kind} not submitted: not connected"
        return
    item = bridge.get_bridge().submit(scene, prepared.kind, prepared.params, meta=prepared.meta,
                                      frame_start=prepared.footage.scene_start)
    scene.avatar_studio.footage.last_job_key = item.request_key
    progress["message"] = f"{prepared.kind} submitted ({prepared.footage.frames} frames)"


def pump_staging(budget_s: float = STAGING_BUDGET_S) -> float | None:
    """Link/copy the oldest task's files for ``budget_s``; submit it when they are in place.
    Timer callback: the next interval, or None (unregister) when nothing is left."""
    if not _tasks:
        return None
    task = _tasks[0]
    deadline = time.perf_counter() + budget_s
    try:
        while True:  # at least one step per call, then until the budget is spent
            progress["message"] = f"staging footage files: {next(task.steps)}"
            if time.perf_counter() >= deadline:
                break
    except StopIteration:
        _tasks.pop(0)
        _submit(task)
    except (OSError, ValueError) as exc:  # a file vanished, the disk is full: say so, drop it
        _tasks.pop(0)
        progress["message"] = f"staging failed: {exc}"
        bridge.get_bridge().report("ERROR", f"footage: staging failed: {exc}")
    return STAGING_INTERVAL_S if _tasks else None


def cancel_staging() -> int:
    """Drop the tasks still staging (their half-staged folders are removed)."""
    dropped = 0
    while _tasks:
        task = _tasks.pop()
        task.steps.close()
        folder = task.prepared.staging.folder
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        dropped += 1
    if dropped:
        progress["message"] = "staging cancelled"
    return dropped


def last_footage_job(scene: bpy.types.Scene) -> Any:
    key = scene.avatar_studio.footage.last_job_key
    jobs = scene.avatar_studio.jobs
    found = next((i for i in jobs if key and i.request_key == key), None)
    return found or next((i for i in reversed(jobs) if i.kind in footage_export.FOOTAGE_KINDS), None)


def start(context: bpy.types.Context, kind: str) -> footage_export.Prepared:
    """Prepare the panel's job and queue its staging (tests call this, then :func:`pump_staging`)."""
    scene = context.scene
    prepared = footage_export.prepare(scene, scene.avatar_studio.footage,
                                      inputs_folder(bridge.get_bridge()), kind)
    _tasks.append(_Task(prepared, scene.name))
    if not bpy.app.timers.is_registered(pump_staging):
        bpy.app.timers.register(pump_staging, first_interval=0.0)
    return prepared


class AVS_OT_footage_insert(bpy.types.Operator):
    """Insert the avatar into the footage: rendered through the shot's camera, lit from the plate,
    with a shadow and depth-aware occlusion; the composite and its layers come back as strips"""

    bl_idname = "avatar_studio.footage_insert"
    bl_label = "Insert Avatar"

    kind: EnumProperty(
        name="Job",
        items=[("footage.insert", "Insert", "Insert the avatar (footage.insert)"),
               ("footage.decompose", "Decompose", "Only the shot's layers (footage.decompose)")],
        default="footage.insert",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return gates.poll_connected(cls) and gates.poll_job_kind(cls, "footage.insert",
                                                                 "this backend has no footage jobs")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            prepared = start(context, self.kind)
        except (footage_export.FootageExportError, ValueError, OSError) as exc:
            # scene_export.ExportError and the contract's ParamError are ValueErrors too
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        footage = prepared.footage
        last = footage.first + footage.frames - 1
        self.report({"INFO"}, f"{self.kind}: footage frames {footage.first}-{last} "
                              f"(scene {footage.scene_start}-{footage.scene_end})")
        return {"FINISHED"}


class AVS_OT_footage_cancel(bpy.types.Operator):
    """Cancel the footage job: files still being staged, or the job on the backend"""

    bl_idname = "avatar_studio.footage_cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        item = last_footage_job(context.scene)
        if pending() or (item is not None and item.job_id and item.state in ("queued", "running")):
            return True
        cls.poll_message_set("no footage job running")
        return False

    def execute(self, context: bpy.types.Context) -> set[str]:
        if cancel_staging():
            self.report({"INFO"}, "footage staging cancelled")
            return {"FINISHED"}
        item = last_footage_job(context.scene)
        if item is not None and item.job_id:
            bridge.get_bridge().cancel(item.job_id)
            self.report({"INFO"}, f"cancelling {item.kind} job {item.job_id[:8]}")
        return {"FINISHED"}


CLASSES = (AVS_OT_footage_insert, AVS_OT_footage_cancel)
