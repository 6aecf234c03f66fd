"""Avatar from Selected: render the selected meshes into a views folder, then ``avatar.from_views``.

The operator only sets up the views (cameras, helper copies) and returns; the K views are rendered
one per call of :func:`pump_renders` (a ``bpy.app.timers`` timer in Blender; tests call it), so the
UI never waits for more than one small render. When the last view is written the job is submitted
with no SMPL-X (the backend fits the body) and imported by the avatar importer, posed as the views
(``meta["views_pose"]``) so it lands on the selected character.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from .. import bridge, job_params
from ..selected_views import SelectedViews, ViewSettings
from . import gates

AVATAR = job_params.AVATAR
RENDER_INTERVAL_S = 0.05


@dataclass
class RenderTask:
    views: SelectedViews
    scene_name: str
    params: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


_tasks: list[RenderTask] = []
progress: dict[str, Any] = {"done": 0, "total": 0, "message": ""}


def inputs_folder(the_bridge: Any) -> Path | None:
    """``<data-dir>/inputs`` of the connected local backend (its connection file's folder)."""
    source = the_bridge.connection_override
    if source is None:
        from ..preferences import connection_file, get_preferences

        prefs = get_preferences()
        if prefs is not None and prefs.connection_mode == "ADDRESS":
            return None  # a remote backend: the user names a folder inside its --input-root
        source = connection_file(prefs)
    if isinstance(source, str | Path):
        return Path(source).parent / "inputs"
    return None


def pending() -> int:
    return len(_tasks)


def pump_renders() -> float | None:
    """Render one view of the oldest task; submit it when complete. Timer callback: returns the
    next interval, or None (unregister) when nothing is left."""
    if not _tasks:
        return None
    task = _tasks[0]
    try:
        finished = task.views.step()
    except Exception as exc:  # a render failed: drop the task, say why, keep Blender going
        _tasks.pop(0)
        task.views.cleanup()
        progress["message"] = f"Avatar from Selected failed: {exc}"
        return RENDER_INTERVAL_S if _tasks else None
    progress.update(done=task.views.done, total=task.views.total,
                    message=f"rendered view {task.views.done}/{task.views.total}")
    if finished:
        _tasks.pop(0)
        scene = bpy.data.scenes.get(task.scene_name)
        if scene is not None and bridge.get_bridge().connected:
            bridge.get_bridge().submit(scene, "avatar.from_views", task.params, meta=task.meta)
            progress["message"] = "views written; avatar.from_views submitted"
        else:
            progress["message"] = f"views written to {task.views.folder}; not connected, nothing submitted"
    return RENDER_INTERVAL_S if _tasks else None


class AVS_OT_avatar_from_selected(bpy.types.Operator):
    """Render the selected meshes from cameras around them (RGB, mask, normals), fit an SMPL-X body
    to the views on the backend and bring back a textured, rigged avatar standing in their place"""

    bl_idname = "avatar_studio.avatar_from_selected"
    bl_label = "Avatar from Selected"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    name: StringProperty(name="Name", default="Avatar")
    engine: EnumProperty(
        name="Render",
        items=[("WORKBENCH", "Workbench", "Fast flat colours (material, vertex or texture colour)"),
               ("CYCLES", "Cycles", "Path traced colours (slower)")],
        default="WORKBENCH",
    )
    views_per_ring: IntProperty(name="Views per Ring", default=6, min=2, max=32)
    # 384: the character 2.3x the pixels of 256 (the sculpt renders at half of it); Workbench renders
    # it in ~0.1 s (docs/addon.md, "Avatar from Selected")
    resolution: IntProperty(name="Resolution", default=384, min=32, max=2048)
    quality: EnumProperty(
        name="Quality",
        items=[("DRAFT", "Draft", "Small grid and few iterations"),
               ("STANDARD", "Standard", "Backend defaults")],
        default="DRAFT",
    )
    # 0: the quality preset's value (these exist so scripts and tests can size the job)
    grid: IntProperty(name="Grid", default=0, min=0, max=512)
    iterations: IntProperty(name="Iterations", default=0, min=0, max=100_000,
                            description="sculpt init/refine and texture iterations (0: preset)")
    texture_size: IntProperty(name="Texture Size", default=0, min=0, max=2048)
    views_folder: StringProperty(
        name="Views Folder", subtype="DIR_PATH", default="",
        description="Where to write the views (must be inside the backend's input roots); "
                    "empty: the local backend's <data-dir>/inputs",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not gates.poll_connected(cls):
            return False
        if not bridge.get_bridge().has_job_kind("avatar.from_views"):
            cls.poll_message_set("this backend has no avatar.from_views job")
            return False
        if not any(o.type == "MESH" for o in context.selected_objects):
            cls.poll_message_set("select the character's mesh objects")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        objects = [o for o in context.selected_objects if o.type == "MESH"]
        given = self.views_folder
        root = Path(bpy.path.abspath(given)) if given else inputs_folder(bridge.get_bridge())
        if root is None:
            self.report({"ERROR"}, "a remote backend: set Views Folder to a folder inside its --input-root")
            return {"CANCELLED"}
        folder = root / f"from-selected-{time.strftime('%Y%m%d-%H%M%S')}-{len(_tasks)}"
        params: dict[str, Any] = {**job_params.AVATAR_QUALITY[self.quality], AVATAR.views: str(folder)}
        if self.grid:
            params[AVATAR.grid] = self.grid
        if self.iterations:
            params.update({AVATAR.init_iters: self.iterations, AVATAR.refine_iters: self.iterations,
                           AVATAR.texture_iters: self.iterations})
        if self.texture_size:
            params[AVATAR.texture_size] = self.texture_size
        job_params.validate("avatar.from_views", params)
        settings = ViewSettings(views_per_ring=self.views_per_ring, resolution=self.resolution,
                                engine=self.engine)
        try:
            views = SelectedViews(objects, folder, settings, scene=context.scene)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _tasks.append(RenderTask(views, context.scene.name, params, {"name": self.name, "views_pose": True}))
        if not bpy.app.timers.is_registered(pump_renders):
            bpy.app.timers.register(pump_renders, first_interval=RENDER_INTERVAL_S)
        self.report({"INFO"}, f"rendering {views.total} views of {len(objects)} object(s), "
                              "then avatar.from_views")
        return {"FINISHED"}


CLASSES = (AVS_OT_avatar_from_selected,)
