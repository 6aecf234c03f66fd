"""The preview importer on real bpy, from PNG frames written by Blender itself (no backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon.importers.preview import (  # noqa: E402
    group_sequences,
    import_preview,
    strip_duration,
    strip_start,
)


def write_png(path: Path, value: float, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new(path.stem, size, size, alpha=True)
    pixels = np.full((size, size, 4), value, dtype=np.float32)
    pixels[..., 3] = 1.0
    image.pixels.foreach_set(pixels.ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def test_passes_become_strips_at_the_right_frames(clean_scene, tmp_path: Path) -> None:
    files = {}
    for pass_name in ("depth", "rgb", "mask"):
        for frame in range(4):
            name = f"{pass_name}/{frame:04d}.png"
            write_png(tmp_path / name, 0.1 * (frame + 1))
            files[name] = tmp_path / name
    files["preview.mp4"] = tmp_path / "preview.mp4"  # not an image sequence: ignored
    assert list(group_sequences(files)) == ["rgb", "mask", "depth"]

    scene = clean_scene
    strips = import_preview(files, scene=scene, job_id="abcdef0123456789", frame_start=11, label="Cam")
    assert [s["avatar_studio_pass"] for s in strips] == ["rgb", "mask", "depth"]
    assert len({s.channel for s in strips}) == 3
    for strip in strips:
        assert strip_start(strip) == 11 and strip_duration(strip) == 4
        assert [e.filename for e in strip.elements] == [f"{i:04d}.png" for i in range(4)]
    assert not strips[0].mute and strips[1].mute  # the RGB strip is what the sequencer shows
    assert strips[0].name == "AVS abcdef01 Cam rgb"

    # Re-importing the same job replaces its strips instead of stacking duplicates.
    again = import_preview(files, scene=scene, job_id="abcdef0123456789", frame_start=20)
    assert len(scene.sequence_editor.strips) == 3 and strip_start(again[0]) == 20

    with pytest.raises(ValueError, match="no image sequences"):
        import_preview({"preview.mp4": tmp_path / "preview.mp4"}, scene=scene, job_id="x")
