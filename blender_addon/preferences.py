"""Add-on preferences: how to reach the backend, and how to start one locally."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

# The add-on's package name: "blender_addon" in a checkout, "bl_ext.<repo>.avatar_studio" when
# installed as an extension. Preferences are registered under it.
ADDON_ID = __package__ or "blender_addon"


class AVS_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    connection_mode: EnumProperty(
        name="Connect With",
        items=[
            ("FILE", "Connection File", "Read address and key from the backend's connection.json"),
            ("ADDRESS", "Address + Key", "Type the backend's address and key (e.g. a remote GPU box)"),
        ],
        default="FILE",
    )
    connection_file: StringProperty(
        name="Connection File",
        description="The backend's connection.json (empty: <data dir>/connection.json)",
        subtype="FILE_PATH",
    )
    address: StringProperty(name="Address", description="e.g. tcp://127.0.0.1:5555", default="")
    key: StringProperty(name="Key", description="The backend's signing key", subtype="PASSWORD")
    data_dir: StringProperty(
        name="Data Folder",
        description="Backend data folder (job store, artifacts, connection file). Empty: the default",
        subtype="DIR_PATH",
    )
    backend_python: StringProperty(
        name="Backend Python",
        description="Python of the backend environment; runs 'python -m backend serve'",
        subtype="FILE_PATH",
    )
    backend_command: StringProperty(
        name="Backend Command",
        description="Used when no backend Python is set",
        default="avatar-studio",
    )
    download_dir: StringProperty(
        name="Downloads",
        description="Where job results are saved (empty: next to the .blend, else the temp folder)",
        subtype="DIR_PATH",
    )
    auto_connect: BoolProperty(
        name="Connect Automatically",
        default=True,
        description="Keep trying to (re)connect while the add-on is enabled",
    )

    def draw(self, context: bpy.types.Context) -> None:
        from . import bridge

        layout = self.layout
        layout.prop(self, "connection_mode", expand=True)
        if self.connection_mode == "FILE":
            layout.prop(self, "connection_file")
        else:
            layout.prop(self, "address")
            layout.prop(self, "key")
        layout.prop(self, "auto_connect")
        box = layout.box()
        box.label(text="Local Backend")
        box.prop(self, "data_dir")
        box.prop(self, "backend_python")
        box.prop(self, "backend_command")
        row = box.row()
        row.operator("avatar_studio.start_backend", icon="PLAY")
        row.operator("avatar_studio.stop_backend", icon="PAUSE")
        layout.prop(self, "download_dir")
        layout.label(text=bridge.get_bridge().status_text(), icon=bridge.get_bridge().status_icon())


def get_preferences(context: bpy.types.Context | None = None) -> AVS_AddonPreferences | None:
    ctx = context or bpy.context
    addon = ctx.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def data_dir(prefs: AVS_AddonPreferences | None) -> Path:
    from .wire import protocol

    if prefs is not None and prefs.data_dir:
        return Path(bpy.path.abspath(prefs.data_dir))
    return Path(protocol.default_data_dir())


def connection_file(prefs: AVS_AddonPreferences | None) -> Path:
    if prefs is not None and prefs.connection_file:
        return Path(bpy.path.abspath(prefs.connection_file))
    return data_dir(prefs) / "connection.json"


CLASSES = (AVS_AddonPreferences,)
