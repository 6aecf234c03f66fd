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


def poll_job_kind(operator: type[bpy.types.Operator], kind: str, missing: str | None = None) -> bool:
    """True when the connected backend offers the job ``kind`` (from its hello reply); otherwise
    ``missing`` (default: the kind by name) tells the user why. Call after :func:`poll_connected`."""
    if not bridge.get_bridge().has_job_kind(kind):
        operator.poll_message_set(missing or f"this backend has no {kind} job")
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
