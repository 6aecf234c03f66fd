"""poll() gates shared by the operators: one wording of each reason an operator is greyed out."""

from __future__ import annotations

import bpy

from .. import bridge, scene_export


def connected() -> bool:
    return bridge.get_bridge().connected


def poll_connected(operator: type[bpy.types.Operator]) -> bool:
    """True when a backend is connected; otherwise tells the user why the button is disabled."""
    if not connected():
        operator.poll_message_set("connect to a backend first")
        return False
    return True


def poll_connected_with_body(operator: type[bpy.types.Operator], context: bpy.types.Context) -> bool:
    """:func:`poll_connected`, and an SMPL-X body is active or selected."""
    if not poll_connected(operator):
        return False
    if scene_export.find_smplx_armature(context) is None:
        operator.poll_message_set("select an SMPL-X body")
        return False
    return True
