"""``footage.insert`` / ``footage.decompose`` results -> image strips above the footage strip.

The result files are numbered by footage frame (``insert/composite/000012.png`` is the shot's
frame 12, 1-based; ``protocol/kinds_footage.py``), so a layer's strip starts where that frame sits
on the footage strip: ``frame_one + first number - 1``, ``frame_one`` being the scene frame of
footage frame 1 (the footage strip's content start, less the position of its first image in its
folder; ``footage_export`` records it in the job's meta, and the strip is looked up again at
import time in case it was moved).

Channels, from the first one above the footage strip whose channels are free over the frames:
insert: composite (shown: the sequencer's output is the composite), character (alpha over),
shadow (subtract), occlusion, then the decomposition layers video, masks, human, scene; every strip
but the composite is muted, for inspection. decompose: its layers, the scene layer shown.
``composite.mp4`` is not imported (the PNG frames are the same frames, losslessly); the depth
``.npy`` files are not images. Re-importing a job replaces its strips.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import bpy

from ..wire import footage_contract_module
from .preview import IMAGE_SUFFIXES, _strips, image_strip_steps, strip_start
from .steps import Steps

footage_kinds = footage_contract_module()

# Meta keys of a footage job item (footage_export writes them): the footage strip's name, the scene
# frame of footage frame 1, the position of the strip's first image in its folder, its channel.
META_STRIP, META_FRAME_ONE, META_INDEX0, META_CHANNEL = (
    "footage_strip", "footage_frame_one", "footage_index0", "footage_channel")
MAX_CHANNEL = 128  # Blender's sequencer channels
BLEND = (("character", "ALPHA_OVER"), ("shadow", "SUBTRACT"))
SHOWN = (("footage.insert", "composite"), ("footage.decompose", "scene"))
FOOTAGE_STAGES = ("strips",)


def layer_folders(kind: str, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, result folder) of each layer in channel order."""
    folder = data.get("folder")
    if kind == "footage.insert":
        root = folder if isinstance(folder, str) and folder else "insert"
        decomposed = footage_kinds.FOOTAGE_DECOMPOSE_LAYERS
        return ([(layer, f"{root}/{layer}") for layer in footage_kinds.FOOTAGE_INSERT_LAYERS]
                + [(f"layers {layer}", f"{root}/layers/{layer}") for layer in decomposed])
    root = folder if isinstance(folder, str) and folder else "template"
    return [(layer, f"{root}/{layer}") for layer in footage_kinds.FOOTAGE_DECOMPOSE_LAYERS]


def numbered_frames(files: Mapping[str, Path], folder: str) -> tuple[int, list[Path]]:
    """(first footage frame, frames in order) of ``folder/%06d.png``; the numbers must follow each
    other (a strip shows consecutive frames)."""
    found: list[tuple[int, Path]] = []
    for name, path in files.items():
        parent, _, leaf = name.rpartition("/")
        stem, dot, suffix = leaf.rpartition(".")
        if parent != folder or not dot or f".{suffix.lower()}" not in IMAGE_SUFFIXES:
            continue
        if not stem.isdigit():
            raise ValueError(f"{name}: a layer frame is named by its footage frame number")
        found.append((int(stem), Path(path)))
    found.sort()
    if not found:
        return 0, []
    numbers = [n for n, _ in found]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        gap = next(b for a, b in pairwise(numbers) if b != a + 1)
        raise ValueError(f"{folder}: frames are not consecutive (frame {gap} follows a gap)")
    if numbers[0] < 1:
        raise ValueError(f"{folder}: footage frames are numbered from 1, got {numbers[0]}")
    return numbers[0], [p for _, p in found]


def _placement(editor: bpy.types.SequenceEditor, meta: Mapping[str, Any]) -> tuple[int, int]:
    """(scene frame of footage frame 1, footage strip's channel) from the strip as it is now, else
    from the meta recorded at submit (a Movie Clip, or the strip was removed)."""
    name = meta.get(META_STRIP)
    strip = _strips(editor, everything=True).get(name) if isinstance(name, str) and name else None
    index0 = meta.get(META_INDEX0)
    if strip is not None and isinstance(index0, int):
        return int(strip_start(strip)) - index0, int(strip.channel)
    frame_one, channel = meta.get(META_FRAME_ONE), meta.get(META_CHANNEL)
    return (frame_one if isinstance(frame_one, int) else 1), (channel if isinstance(channel, int) else 0)


def _free_base(editor: bpy.types.SequenceEditor, above: int, count: int, start: int, end: int) -> int:
    """The lowest channel > ``above`` such that ``count`` channels from it hold nothing over
    scene frames [start, end)."""
    busy = set()
    for strip in _strips(editor, everything=True):
        left, right = (strip.left_handle, strip.right_handle) if hasattr(strip, "left_handle") else (
            strip.frame_final_start, strip.frame_final_end)
        if left < end and right > start:
            busy.add(int(strip.channel))
    base = above + 1
    while any(c in busy for c in range(base, base + count)):
        base += 1
    if base + count - 1 > MAX_CHANNEL:
        raise ValueError(f"no {count} free sequencer channels above channel {above}")
    return base


def import_footage_steps(
    files: Mapping[str, Path],
    *,
    scene: bpy.types.Scene,
    job_id: str,
    kind: str,
    data: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> Steps[list[bpy.types.Strip]]:
    """In steps (a strip, or a hundred of its frames, each); returns the strips in channel order."""
    layers = []
    for label, folder in layer_folders(kind, data):
        first, frames = numbered_frames(files, folder)
        if frames:
            layers.append((label, first, frames))
    if not layers:
        raise ValueError(f"the {kind} result holds no layer frames")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    prefix = f"AVS {job_id[:8]}"
    collection = _strips(editor)
    for strip in [s for s in collection if s.name.startswith(prefix)]:
        collection.remove(strip)
    frame_one, footage_channel = _placement(editor, meta)
    starts = [frame_one + first - 1 for _, first, _ in layers]
    ends = [s + len(frames) for s, (_, _, frames) in zip(starts, layers, strict=True)]
    base = _free_base(editor, footage_channel, len(layers), min(starts), max(ends))
    shown = dict(SHOWN).get(kind)
    blends = dict(BLEND)
    strips = []
    for offset, ((label, _first, frames), start) in enumerate(zip(layers, starts, strict=True)):
        strip = yield from image_strip_steps(
            collection, f"{prefix} {label}", frames, channel=base + offset, frame_start=start,
            stage=f"strips ({offset + 1}/{len(layers)}", what=label)
        strip["avatar_studio_job"] = job_id
        strip["avatar_studio_pass"] = label
        if label in blends:
            strip.blend_type = blends[label]
        strip.mute = label != shown
        if base + offset < len(editor.channels):
            editor.channels[base + offset].name = label
        strips.append(strip)
        yield f"strips ({offset + 1}/{len(layers)})"
    return strips
