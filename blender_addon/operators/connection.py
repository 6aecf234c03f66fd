"""Connect to / disconnect from a backend; start / stop a local one; report from timers."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from .. import bridge, local_backend
from ..preferences import data_dir, get_preferences


class AVS_OT_connect(bpy.types.Operator):
    """Connect to the backend named in the preferences (returns at once; the status shows progress)"""

    bl_idname = "avatar_studio.connect"
    bl_label = "Connect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not bridge.get_bridge().connected

    def execute(self, context: bpy.types.Context) -> set[str]:
        the_bridge = bridge.get_bridge()
        if get_preferences(context) is not None:
            the_bridge.connection_override = None  # follow the preferences again
        the_bridge.connect()
        return {"FINISHED"}


class AVS_OT_disconnect(bpy.types.Operator):
    """Stop talking to the backend (jobs keep running there and can be re-attached)"""

    bl_idname = "avatar_studio.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bridge.get_bridge().want_connection

    def execute(self, context: bpy.types.Context) -> set[str]:
        bridge.get_bridge().disconnect()
        return {"FINISHED"}


class AVS_OT_start_backend(bpy.types.Operator):
    """Start a backend on this machine with the configured Python or command, then connect to it"""

    bl_idname = "avatar_studio.start_backend"
    bl_label = "Start Local Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not local_backend.is_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get_preferences(context)
        python = (
            prefs.backend_python
            if prefs is not None and prefs.backend_python
            else local_backend.python_hint()
        )
        command = prefs.backend_command if prefs is not None else "avatar-studio"
        folder = data_dir(prefs)
        try:
            pid = local_backend.start(bpy.path.abspath(python) if python else "", command, folder)
        except local_backend.LocalBackendError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        the_bridge = bridge.get_bridge()
        the_bridge.connect(folder / "connection.json")
        self.report({"INFO"}, f"started a backend (pid {pid}) on {folder}")
        return {"FINISHED"}


class AVS_OT_stop_backend(bpy.types.Operator):
    """Stop the backend this Blender started"""

    bl_idname = "avatar_studio.stop_backend"
    bl_label = "Stop Local Backend"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return local_backend.is_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        local_backend.stop()
        self.report({"INFO"}, "stopped the local backend")
        return {"FINISHED"}


class AVS_OT_show_report(bpy.types.Operator):
    """Show a message from the bridge in the info area (timers cannot report themselves)"""

    bl_idname = "avatar_studio.show_report"
    bl_label = "Avatar Studio Report"
    bl_options = {"INTERNAL"}  # noqa: RUF012 - Blender reads a plain set

    level: EnumProperty(items=[("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")])
    message: StringProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        self.report({self.level}, self.message)
        return {"FINISHED"}


CLASSES = (AVS_OT_connect, AVS_OT_disconnect, AVS_OT_start_backend, AVS_OT_stop_backend, AVS_OT_show_report)
