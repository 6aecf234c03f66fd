"""The generated views of avatar.from_text / avatar.from_image jobs into Blender, as they arrive.

The backend sends each generated view as the ``preview`` of one progress event (stage ``views``,
message ``view <name>``; backend/jobs/generate_avatar.py). The bridge hands those events here as
it reads them; :meth:`ViewPreviews.step` turns them into image datablocks (``AVS <job> <view>``)
one at a time within the pump's budget, so a burst of K views never stalls the UI for one pump.
The newest image is shown in any open Image Editor; the Avatar panel lists a job's views.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from .wire import messages

GENERATED_KINDS = frozenset({"avatar.from_text", "avatar.from_image"})
JOB_PROP, VIEW_PROP = "avatar_studio_job", "avatar_studio_view"
MAX_PENDING = 64  # more than the contract's 32 views: a flood of events cannot grow without end


@dataclass(frozen=True)
class _Pending:
    job_id: str
    view: str
    pixels: np.ndarray


def image_name(job_id: str, view: str) -> str:
    return f"AVS {job_id[:8]} {view}"


def job_images(job_id: str) -> list[bpy.types.Image]:
    """The view images made for ``job_id``, in arrival order."""
    found = [img for img in bpy.data.images if img.get(JOB_PROP) == job_id]
    return sorted(found, key=lambda img: int(img.get("avatar_studio_order", 0)))


class ViewPreviews:
    def __init__(self) -> None:
        self.pending: deque[_Pending] = deque(maxlen=MAX_PENDING)
        self.made = 0  # images made so far (their order numbers)

    def add(self, job_id: str, kind: str | None, content: dict[str, Any]) -> bool:
        """Queue the preview of one progress event when it is a generated view; False otherwise."""
        pixels = content.get(messages.PREVIEW)
        if kind not in GENERATED_KINDS or not isinstance(pixels, np.ndarray):
            return False
        if pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or min(pixels.shape[:2]) < 1:
            return False  # hostile or foreign shape: not an image
        message = str(content.get("message") or "")
        view = message[5:] if message.startswith("view ") else f"view {self.made}"
        self.pending.append(_Pending(job_id, view[:40], pixels))
        return True

    def step(self, deadline: float) -> None:
        """Make images from queued previews until ``deadline`` (perf_counter); at least one."""
        while self.pending:
            item = self.pending.popleft()
            self._make(item)
            if time.perf_counter() >= deadline:
                return

    def _make(self, item: _Pending) -> bpy.types.Image:
        height, width = item.pixels.shape[:2]
        rgba = np.ones((height, width, 4), np.float32)
        values = item.pixels.astype(np.float32)
        if item.pixels.dtype == np.uint8:
            values /= 255.0
        rgba[..., : item.pixels.shape[2]] = np.clip(values, 0.0, 1.0)
        name = image_name(item.job_id, item.view)
        image = bpy.data.images.get(name)
        if image is None or tuple(image.size) != (width, height):
            if image is not None:
                bpy.data.images.remove(image)
            image = bpy.data.images.new(name, width, height, alpha=True)
        image.pixels.foreach_set(np.flipud(rgba).ravel())  # Blender's rows run bottom-up
        image.update()
        image[JOB_PROP], image[VIEW_PROP] = item.job_id, item.view
        image["avatar_studio_order"] = self.made
        self.made += 1
        _show_in_image_editors(image)
        return image


def _show_in_image_editors(image: bpy.types.Image) -> None:
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager is not None else ():
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
