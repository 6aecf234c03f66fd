"""Generate Avatar from the Avatar panel's prompt or photo (avatar.from_text / avatar.from_image).

The generated views arrive as images while the job runs (:mod:`..view_previews`); the rigged,
textured avatar is imported by the avatar.from_views importer when the job succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bpy

from .. import bridge, job_params
from ..avatar_settings import FROM_PHOTO, SOURCE_KIND
from . import gates


def submit_avatar_job(scene: bpy.types.Scene, kind: str, params: dict[str, Any], name: str) -> Any:
    """Check ``params`` against the contract of ``kind`` here (a clear error before anything is
    sent), submit the job to be imported when it succeeds, and remember it as the Avatar panel's
    last job; returns the job item. Shared by Generate Avatar and Random Avatar."""
    job_params.validate(kind, params)
    item = bridge.get_bridge().submit(scene, kind, params, meta={"name": name}, auto_import=True)
    scene.avatar_studio.avatar.last_job_key = item.request_key
    return item


def execute_submit(operator: bpy.types.Operator, submit: Callable[[], Any], requested: str) -> set[str]:
    """An operator's execute around ``submit()``: a refused submit is reported as the operator's
    error (CANCELLED), else ``requested`` as its info (FINISHED)."""
    try:
        submit()
    except (ValueError, RuntimeError) as exc:  # kinds.ParamError is a ValueError
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    operator.report({"INFO"}, requested)
    return {"FINISHED"}


def submit_generated_avatar(scene: bpy.types.Scene, overrides: dict[str, Any] | None = None) -> Any:
    """Submit the scene's Avatar settings (source Prompt or Photo) as a job; ``overrides`` are
    extra contract params (tests use the smallest stages); returns the job item."""
    settings = scene.avatar_studio.avatar
    kind = SOURCE_KIND[settings.source]
    image = bpy.path.abspath(settings.image_path) if settings.source == FROM_PHOTO else ""
    params = {**job_params.generated_avatar_params(kind, settings, image), **(overrides or {})}
    return submit_avatar_job(scene, kind, params, "Avatar")


class AVS_OT_generate_avatar_prompt(bpy.types.Operator):
    """Generate K views from the prompt (or the photo and the prompt) on the backend, then sculpt,
    texture and rig an avatar from them; the views appear as images as they are made"""

    bl_idname = "avatar_studio.generate_avatar_prompt"
    bl_label = "Generate Avatar"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not gates.poll_connected(cls):
            return False
        settings = context.scene.avatar_studio.avatar
        kind = SOURCE_KIND[settings.source]
        if kind == "avatar.from_views":
            cls.poll_message_set("choose From Prompt or From Photo")
            return False
        if not gates.poll_job_kind(cls, kind):
            return False
        if settings.source == FROM_PHOTO and not settings.image_path:
            cls.poll_message_set("choose a photo (inside the backend's input roots)")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        return execute_submit(self, lambda: submit_generated_avatar(context.scene),
                              "avatar requested: the views appear as images, then the avatar (see Jobs)")


CLASSES = (AVS_OT_generate_avatar_prompt,)
