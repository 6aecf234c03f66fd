"""``body.preview`` results -> image-sequence strips in the Video Sequence Editor.

Each folder of frames in the result (``rgb/``, ``mask/``, ``depth/``, ``normals/``, ``pose/``,
or ``<camera>/<pass>/``) becomes one image strip on its own channel, starting at the scene frame
the rendered frame range started at, one image per frame. Movies (``*.mp4``) are not imported as
strips: the image sequences carry the same frames losslessly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy

from .steps import Steps, run

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".exr", ".tif", ".tiff"}
PASS_ORDER = ("rgb", "color", "overlay", "mask", "alpha", "depth", "normals", "normal", "pose", "openpose")


def _pass_rank(group: str) -> tuple[int, str]:
    leaf = group.rsplit("/", 1)[-1]
    return (PASS_ORDER.index(leaf) if leaf in PASS_ORDER else len(PASS_ORDER), group)


def group_sequences(files: Mapping[str, Path]) -> dict[str, list[Path]]:
    """Result file name -> local path  ==>  folder ("rgb", "cam1/depth") -> frames in order."""
    groups: dict[str, list[tuple[str, Path]]] = {}
    for name, path in files.items():
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES or "/" not in name:
            continue
        folder = name.rsplit("/", 1)[0]
        groups.setdefault(folder, []).append((name, Path(path)))
    return {
        folder: [p for _, p in sorted(items)]
        for folder, items in sorted(groups.items(), key=lambda kv: _pass_rank(kv[0]))
    }


def _strips(editor: bpy.types.SequenceEditor, everything: bool = False) -> bpy.types.bpy_prop_collection:
    """Blender 4.4 renamed ``sequences``/``sequences_all`` to ``strips``/``strips_all``."""
    if everything:
        return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def strip_start(strip: bpy.types.Strip) -> float:
    """The scene frame a strip's content starts at (``content_start`` from Blender 5.x;
    ``frame_start`` goes away in 6.0)."""
    return strip.content_start if hasattr(strip, "content_start") else strip.frame_start


def strip_duration(strip: bpy.types.Strip) -> int:
    """Frames the strip shows (``duration`` from Blender 5.x; ``frame_final_duration`` goes away)."""
    return strip.duration if hasattr(strip, "duration") else strip.frame_final_duration


def first_free_channel(editor: bpy.types.SequenceEditor) -> int:
    used = [strip.channel for strip in _strips(editor, everything=True)]
    return max(used, default=0) + 1


PREVIEW_STAGES = ("strips",)
FRAMES_PER_STEP = 100  # strip elements appended per step


def import_preview(files: Mapping[str, Path], **options: Any) -> list[bpy.types.Strip]:
    """All the strips in one go; see :func:`import_preview_steps`."""
    return run(import_preview_steps(files, **options))


def import_preview_steps(
    files: Mapping[str, Path],
    *,
    scene: bpy.types.Scene,
    job_id: str,
    frame_start: int = 1,
    label: str = "",
) -> Steps[list[bpy.types.Strip]]:
    """In steps (a strip, or a hundred of its frames, each): add one image strip per pass, the
    first frame at scene frame ``frame_start`` (where the exported frame range began); returns the
    strips (RGB first). ``label`` (e.g. the camera name) goes into the strip and channel names.
    Re-importing a job replaces its strips."""
    sequences = group_sequences(files)
    if not sequences:
        raise ValueError("the preview result holds no image sequences")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    prefix = f"AVS {job_id[:8]}"
    strips_collection = _strips(editor)
    for strip in [s for s in strips_collection if s.name.startswith(prefix)]:
        strips_collection.remove(strip)
    channel = first_free_channel(editor)
    strips = []
    for offset, (group, frames) in enumerate(sequences.items()):
        strip = yield from image_strip_steps(
            strips_collection, f"{prefix} {label} {group}" if label else f"{prefix} {group}", frames,
            channel=channel + offset, frame_start=frame_start,
            stage=f"strips ({offset + 1}/{len(sequences)}", what=group)
        strip["avatar_studio_job"] = job_id
        strip["avatar_studio_pass"] = group
        # Passes sit above the RGB strip; muted so the sequencer's output stays the RGB render.
        strip.mute = offset > 0
        if channel + offset < len(editor.channels):
            editor.channels[channel + offset].name = f"{label} {group}" if label else group
        strips.append(strip)
        yield f"strips ({offset + 1}/{len(sequences)})"
    return strips


def image_strip_steps(strips_collection: bpy.types.bpy_prop_collection, name: str, frames: list[Path], *,
                      channel: int, frame_start: int, stage: str, what: str) -> Steps[bpy.types.Strip]:
    """One image strip showing ``frames`` (one folder) from scene frame ``frame_start`` on
    ``channel``, its elements appended FRAMES_PER_STEP per step (``stage`` names the steps)."""
    strip = strips_collection.new_image(name=name, filepath=str(frames[0]), channel=channel,
                                        frame_start=frame_start, fit_method="FIT")
    for index, frame in enumerate(frames[1:], start=1):
        if frame.parent != frames[0].parent:
            raise ValueError(f"frames of {what} are in several folders")
        strip.elements.append(frame.name)
        if index % FRAMES_PER_STEP == 0:
            yield f"{stage}: frame {index + 1}/{len(frames)})"
    return strip
