"""The Avatar panel's From Prompt / From Photo part: the settings, the button, the views received
so far and the last job's status (a missing model's message says the role and how to download it)."""

from __future__ import annotations

import textwrap

import bpy

from . import bridge
from .avatar_settings import FROM_PHOTO, SOURCE_KIND
from .view_previews import VIEW_PROP, job_images

ERROR_WIDTH = 38  # characters per label line; the sidebar does not wrap labels


def last_generated_job(scene: bpy.types.Scene):  # -> AVS_JobItem | None
    """The scene's job item of the last avatar submitted from the panel's prompt/photo source."""
    key = scene.avatar_studio.avatar.last_job_key
    jobs = scene.avatar_studio.jobs
    found = next((i for i in jobs if key and i.request_key == key), None)
    if found is None:  # e.g. a reloaded file: the newest generated-avatar job in the list
        found = next((i for i in reversed(jobs) if i.kind in ("avatar.from_text", "avatar.from_image")), None)
    return found


def status_lines(item) -> list[str]:
    """What the panel's status line says about a generated-avatar job item."""
    if item is None:
        return []
    if item.state == "failed":
        lines = [f"Failed: {line}" if i == 0 else line
                 for i, line in enumerate(textwrap.wrap(item.error or "(no message)", ERROR_WIDTH,
                                                                 break_on_hyphens=False))]
        return lines
    text = f"{item.state.title()}"
    if item.state == "running":
        text += f" {100 * item.fraction:.0f}%: {item.stage} {item.message}".rstrip()
    return [text]


def draw_advanced(layout: bpy.types.UILayout, settings) -> None:
    """The collapsible Advanced box: size and steps (0: the quality's), guidance, scheduler."""
    box = layout.box()
    box.prop(settings, "show_advanced", icon="DOWNARROW_HLT" if settings.show_advanced else "RIGHTARROW",
             emboss=False)
    if not settings.show_advanced:
        return
    row = box.row(align=True)
    row.prop(settings, "size")
    row.prop(settings, "steps")
    box.prop(settings, "guidance")
    box.prop(settings, "scheduler")


def draw_generated(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    settings = scene.avatar_studio.avatar
    kind = SOURCE_KIND[settings.source]
    if not bridge.get_bridge().has_job_kind(kind):
        layout.label(text=f"Needs a backend with {kind}.")
    if settings.source == FROM_PHOTO:
        layout.prop(settings, "image_path")
        layout.prop(settings, "fit_body")
    layout.prop(settings, "prompt")
    layout.prop(settings, "negative_prompt")
    row = layout.row(align=True)
    row.prop(settings, "seed")
    row.prop(settings, "views")
    layout.prop(settings, "quality")
    draw_advanced(layout, settings)
    layout.operator("avatar_studio.generate_avatar_prompt", icon="OUTLINER_OB_ARMATURE")
    item = last_generated_job(scene)
    if item is None:
        return
    column = layout.column(align=True)
    for line in status_lines(item):
        column.label(text=line, icon="ERROR" if item.state == "failed" else "NONE")
    images = job_images(item.job_id) if item.job_id else []
    if images:
        names = ", ".join(str(image.get(VIEW_PROP)) for image in images)
        column.label(text=f"{len(images)} view(s): {names}")


RANDOM_KIND = "avatar.from_noise"


def draw_random(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    """The 3DGM run setting; "Random Avatar" (avatar.from_noise) only once a run is configured and
    the backend has the kind."""
    settings = scene.avatar_studio.avatar
    box = layout.box()
    box.prop(settings, "threedgm_checkpoint")
    if not settings.threedgm_checkpoint.strip():
        box.label(text="Set a trained 3DGM run for random avatars.")
        return
    if not bridge.get_bridge().has_job_kind(RANDOM_KIND):
        box.label(text=f"Needs a backend with {RANDOM_KIND}.")
        return
    row = box.row(align=True)
    row.prop(settings, "seed")
    row.prop(settings, "truncation")
    box.operator("avatar_studio.random_avatar", icon="OUTLINER_OB_ARMATURE")
    from .operators.avatar_invert import draw_invert

    draw_invert(box, scene)  # the photo and "Avatar from Photo (3DGM)" (avatar.from_image_inversion)
