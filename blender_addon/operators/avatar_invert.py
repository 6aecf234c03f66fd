"""Avatar from Photo (3DGM) in the Avatar panel (avatar.from_image_inversion with a photo): the
trained 3DGM run is inverted on the photo (PTI, the body fitted to the photo on the backend), then
the tuned generator's views are sculpted, textured and rigged; the result is avatar.from_views',
imported by the avatar importer when the job succeeds. Progress shows in the Jobs panel.

The backend opens the photo only inside its input roots. For a local backend a photo elsewhere is
staged (hard-linked, else copied) into ``<data-dir>/inputs/photo-<stamp>/`` with its
``<stem>.keypoints.json`` when there is one, as the Footage panel stages its files; a remote
backend gets the path as it is (the photo must be inside its ``--input-root``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import bpy

from .. import bridge, job_params
from . import gates
from .avatar_generate import submit_avatar_job
from .from_selected import inputs_folder

INVERT_KIND = "avatar.from_image_inversion"
INVERT = job_params.kinds.names(INVERT_KIND)
KEYPOINTS_SUFFIX = ".keypoints.json"  # photo.png -> photo.keypoints.json (backend/jobs/photo_body.py)
STAGE_MAX_BYTES = 256 << 20  # the backend reads at most this much of a photo


def stage_photo(photo: Path, exchange: Path | None) -> Path:
    """The photo as the backend reads it: ``photo`` itself inside ``exchange`` (the local backend's
    inputs) or for a remote backend (``exchange`` None), else a staged link or copy inside it."""
    if exchange is None or photo.resolve().is_relative_to(exchange.resolve()):
        return photo
    if not photo.is_file():
        raise ValueError(f"the photo {photo} is not a file")
    if photo.stat().st_size > STAGE_MAX_BYTES:
        raise ValueError(f"the photo {photo} is larger than {STAGE_MAX_BYTES >> 20} MiB")
    folder = exchange / f"photo-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    folder.mkdir(parents=True)
    keypoints = photo.with_name(photo.stem + KEYPOINTS_SUFFIX)
    for source in (photo, keypoints):
        if source.is_file() and source.stat().st_size <= STAGE_MAX_BYTES:
            try:
                os.link(source, folder / source.name)  # same file system: no bytes copied
            except OSError:
                shutil.copy2(source, folder / source.name)
    return folder / photo.name


def invert_params(settings: Any, checkpoint: str, image: str) -> dict[str, Any]:
    """``avatar.from_image_inversion`` from the Avatar panel: the run folder and the photo as the
    backend reads them, the views; PTI steps and avatar stages at the contract's defaults."""
    return {INVERT.checkpoint: checkpoint, INVERT.image: image, INVERT.views: int(settings.views)}


def submit_photo_inversion(scene: bpy.types.Scene, overrides: dict[str, Any] | None = None) -> Any:
    """Stage the photo if needed and submit the inversion; ``overrides`` are extra contract params
    (tests use few steps and the smallest stages); returns the job item."""
    settings = scene.avatar_studio.avatar
    the_bridge = bridge.get_bridge()
    checkpoint = bpy.path.abspath(settings.threedgm_checkpoint).rstrip("/\\")
    photo = stage_photo(Path(bpy.path.abspath(settings.image_path)), inputs_folder(the_bridge))
    params = {**invert_params(settings, checkpoint, str(photo)), **(overrides or {})}
    return submit_avatar_job(scene, INVERT_KIND, params, "Avatar from Photo (3DGM)")


def draw_invert(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    """Under Random Avatar (a run is configured): the photo and "Avatar from Photo (3DGM)", when
    the backend has the kind."""
    if not bridge.get_bridge().has_job_kind(INVERT_KIND):
        return
    layout.prop(scene.avatar_studio.avatar, "image_path")
    layout.operator(AVS_OT_avatar_from_photo_3dgm.bl_idname, icon="IMAGE_DATA")


class AVS_OT_avatar_from_photo_3dgm(bpy.types.Operator):
    """An avatar reconstructed from the photo by inverting the trained 3DGM run (the body is fitted
    to the photo), then sculpted, textured and rigged on the backend"""

    bl_idname = "avatar_studio.avatar_from_photo_3dgm"
    bl_label = "Avatar from Photo (3DGM)"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender reads a plain set

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not gates.poll_connected(cls):
            return False
        settings = context.scene.avatar_studio.avatar
        if not settings.threedgm_checkpoint.strip():
            cls.poll_message_set("set a trained 3DGM run folder")
            return False
        if not settings.image_path.strip():
            cls.poll_message_set("choose a photo")
            return False
        return gates.poll_job_kind(cls, INVERT_KIND)

    def execute(self, context: bpy.types.Context) -> set[str]:
        # not avatar_generate.execute_submit: staging the photo can also fail with an OSError
        try:
            submit_photo_inversion(context.scene)
        except (ValueError, RuntimeError, OSError) as exc:  # kinds.ParamError is a ValueError
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, "avatar from the photo requested (see Jobs)")
        return {"FINISHED"}


CLASSES = (AVS_OT_avatar_from_photo_3dgm,)
