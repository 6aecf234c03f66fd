"""Random Avatar from the Avatar panel (avatar.from_noise): a trained 3DGM run's avatar for the seed
and truncation, imported by the avatar.from_views importer when the job succeeds (its result is
that kind's)."""

from __future__ import annotations

from typing import Any

import bpy

from .. import job_params
from ..avatar_panel import RANDOM_KIND
from . import gates
from .avatar_generate import execute_submit, submit_avatar_job


def submit_random_avatar(scene: bpy.types.Scene, overrides: dict[str, Any] | None = None) -> Any:
    """Submit avatar.from_noise from the scene's Avatar settings; ``overrides`` are extra contract
    params (tests use the smallest stages); returns the job item."""
    settings = scene.avatar_studio.avatar
    checkpoint = bpy.path.abspath(settings.threedgm_checkpoint).rstrip("/\\")
    params = {**job_params.random_avatar_params(settings, checkpoint), **(overrides or {})}
    return submit_avatar_job(scene, RANDOM_KIND, params, "Random Avatar")


class AVS_OT_random_avatar(bpy.types.Operator):
    """A random avatar from the trained 3DGM run (seed, truncation): views rendered by the generator,
    then sculpted, textured and rigged on the backend"""

    bl_idname = "avatar_studio.random_avatar"
    bl_label = "Random Avatar"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not gates.poll_connected(cls):
            return False
        if not context.scene.avatar_studio.avatar.threedgm_checkpoint.strip():
            cls.poll_message_set("set a trained 3DGM run folder")
            return False
        return gates.poll_job_kind(cls, RANDOM_KIND)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return execute_submit(self, lambda: submit_random_avatar(context.scene),
                              "random avatar requested (see Jobs)")


CLASSES = (AVS_OT_random_avatar,)
