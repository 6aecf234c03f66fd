"""Avatar Studio: SMPL-X bodies, previews and (later) avatars and clips from an avatar-studio backend.

A Blender 4.2+ extension (see blender_manifest.toml). It never imports torch or the backend: it
talks to the backend over the wire protocol only (``protocol`` vendored in the extension zip).
Register order: properties, preferences, operators, panels; then the bridge's timer and its
``load_post`` handler. Unregister undoes it in reverse and closes the connection.
"""

from __future__ import annotations

import bpy

__version__ = "0.1.0"

from . import bridge, operators, panels, preferences, props

CLASSES: tuple[type, ...] = (*props.CLASSES, *preferences.CLASSES, *operators.CLASSES, *panels.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register_properties()
    bridge.register()


def unregister() -> None:
    bridge.unregister()
    props.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
