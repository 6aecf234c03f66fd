"""The add-on's vertical slice from Blender's Python console: what the panel's buttons do, in code.

In Blender (add-on installed and enabled, a backend running or the preferences set to start one)::

    exec(open("/path/to/avatar-studio/examples/blender_console_slice.py").read())
    start_slice()            # returns at once; the add-on's timer runs the steps, watch the Jobs panel

Steps: connect, add an SMPL-X body (``body.mesh``), set a shape (``Apply Shape``), key a short wave
motion on the rig, add two cameras, render a preview (``body.preview``: strips in the sequencer),
pose the body on the backend (``body.mesh`` with the motion: a second body driven by the backend's
joint transforms). Each step runs an operator, then waits (without blocking Blender) until the job
it started has been imported. ``examples/headless_slice.py`` runs the same steps with ``bpy`` as a
module, pumping the bridge itself.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import bpy
import numpy as np


def addon_module() -> ModuleType:
    """The enabled Avatar Studio add-on (installed extension or development checkout)."""
    for name, module in sys.modules.items():
        if (name.endswith(".avatar_studio") or name == "blender_addon") and hasattr(module, "bridge"):
            return module
    raise RuntimeError("enable the Avatar Studio add-on first")


@dataclass
class Step:
    name: str
    run: Callable[[], None]
    done: Callable[[], bool]


def _last_job_done(scene: bpy.types.Scene) -> bool:
    jobs = scene.avatar_studio.jobs
    if not jobs:
        return False
    item = jobs[len(jobs) - 1]
    if item.state in ("failed", "cancelled"):
        raise RuntimeError(f"{item.kind} job {item.state}: {item.error}")
    return item.state == "succeeded" and item.imported


def wave_motion(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 165) SMPL-X pose and (frames, 3) translation: raise the right arm and wave."""
    pose = np.zeros((frames, 55, 3))
    names = addon_module().smplx_rig.JOINT_NAMES
    for f in range(frames):
        phase = 2 * math.pi * f / max(frames - 1, 1)
        # Rotations about the body's z (forward) axis: the right arm lies along -x in the rest T pose,
        # so a negative angle lifts it; the left arm (+x) comes down by the same sign.
        pose[f, names.index("right_shoulder")] = (0.0, 0.0, -0.9)
        pose[f, names.index("left_shoulder")] = (0.0, 0.0, -1.2)
        pose[f, names.index("right_elbow")] = (0.0, 0.0, -0.5 - 0.4 * math.sin(phase))  # the wave
        pose[f, names.index("spine2")] = (0.1 * math.sin(phase), 0.0, 0.0)
        pose[f, names.index("left_knee")] = (0.3 * (1 - math.cos(phase)), 0.0, 0.0)
    transl = np.zeros((frames, 3))
    transl[:, 2] = np.linspace(0.0, 0.2, frames)  # a step forward (protocol +z = the body's front)
    return pose.reshape(frames, -1), transl


def add_camera(
    scene: bpy.types.Scene,
    name: str,
    location: tuple[float, float, float],
    target: tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> bpy.types.Object:
    from mathutils import Vector

    cam = bpy.data.objects.get(name) or bpy.data.objects.new(name, bpy.data.cameras.new(name))
    if cam.name not in scene.collection.objects:
        scene.collection.objects.link(cam)
    cam.location = location
    cam.rotation_mode = "QUATERNION"
    cam.rotation_quaternion = (Vector(target) - Vector(location)).to_track_quat("-Z", "Y")
    return cam


def slice_steps(
    scene: bpy.types.Scene, *, frames: int = 12, body_name: str = "SMPLX", preview_width: int = 128
) -> list[Step]:
    addon = addon_module()
    the_bridge = addon.bridge.get_bridge()
    state: dict[str, bpy.types.Object] = {}

    def add_body() -> None:
        bpy.ops.avatar_studio.add_body(name=body_name)

    def shape() -> None:
        arm_obj = scene.objects[scene.avatar_studio.jobs[len(scene.avatar_studio.jobs) - 1].target]
        state["body"] = arm_obj
        bpy.context.view_layer.objects.active = arm_obj
        arm_obj.avatar_studio_body.betas[0] = 1.0  # taller
        arm_obj.avatar_studio_body.betas[1] = -0.8
        bpy.ops.avatar_studio.apply_shape()

    def animate_and_render() -> None:
        arm_obj = state["body"]
        pose, transl = wave_motion(frames)
        addon.importers.action.apply_pose_action(arm_obj, pose, transl, frame_start=1, name="Wave")
        scene.frame_start, scene.frame_end = 1, frames
        cams = [add_camera(scene, "Front", (0.0, -4.5, 1.1)), add_camera(scene, "Side", (4.0, -2.0, 1.3))]
        scene.render.resolution_x, scene.render.resolution_y = 640, 480
        scene.camera = cams[0]
        scene.avatar_studio.preview_width = preview_width
        for obj in scene.objects:
            obj.select_set(obj == arm_obj or obj in cams)
        bpy.context.view_layer.objects.active = arm_obj
        bpy.ops.avatar_studio.render_preview()

    def pose_on_backend() -> None:
        bpy.context.view_layer.objects.active = state["body"]
        bpy.ops.avatar_studio.pose_on_backend()

    return [
        Step("connect", lambda: None, lambda: the_bridge.connected),
        Step("add body", add_body, lambda: _last_job_done(scene)),
        Step("shape", shape, lambda: _last_job_done(scene)),
        Step("animate + preview", animate_and_render, lambda: _last_job_done(scene)),
        Step("pose on backend", pose_on_backend, lambda: _last_job_done(scene)),
    ]


def start_slice(**kwargs: object) -> None:
    """Run the steps from a timer (Blender's UI stays live); progress prints to the console."""
    scene = bpy.context.scene
    addon = addon_module()
    addon.bridge.get_bridge().connect()
    steps = slice_steps(scene, **kwargs)
    position = {"index": 0, "started": False}

    def tick() -> float | None:
        step = steps[position["index"]]
        if not position["started"]:
            print(f"avatar-studio slice: {step.name}")
            step.run()
            position["started"] = True
        if step.done():
            position["index"] += 1
            position["started"] = False
            if position["index"] == len(steps):
                print("avatar-studio slice: done")
                return None
        return 0.2

    bpy.app.timers.register(tick, first_interval=0.2)
