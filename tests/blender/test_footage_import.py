"""The footage importer on real bpy (no backend): a footage.insert / footage.decompose result laid
out as protocol/kinds_footage.py says becomes strips above the footage strip, frame for frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from footage_scene import plate_frame, read_png, write_plate, write_png  # noqa: E402

from blender_addon.importers import dispatch  # noqa: E402
from blender_addon.importers.footage import (  # noqa: E402
    META_CHANNEL,
    META_FRAME_ONE,
    META_INDEX0,
    META_STRIP,
    import_footage_steps,
    numbered_frames,
)
from blender_addon.importers.preview import strip_duration, strip_start  # noqa: E402
from blender_addon.importers.steps import StepRunner, run  # noqa: E402
from protocol import kinds_footage  # noqa: E402

JOB = "0123456789abcdef0123456789abcdef"
INSERT_ORDER = [*kinds_footage.FOOTAGE_INSERT_LAYERS,
                *(f"layers {layer}" for layer in kinds_footage.FOOTAGE_DECOMPOSE_LAYERS)]
INSERT_FOLDERS = [*(f"insert/{layer}" for layer in kinds_footage.FOOTAGE_INSERT_LAYERS),
                  *(f"insert/layers/{layer}" for layer in kinds_footage.FOOTAGE_DECOMPOSE_LAYERS)]


def layer_pixels(layer: int, frame: int) -> np.ndarray:
    """Frame number and layer encoded in the pixels (and a gradient, so rows and columns count)."""
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 0] = frame
    rgba[..., 1] = 20 * layer
    rgba[..., 2] = np.arange(16, dtype=np.uint8)[None] * 9
    rgba[:6, :, 2] += 100  # the top rows differ from the bottom ones
    rgba[..., 3] = 255 if layer != 1 else 128  # the character layer is RGBA with partial alpha
    return rgba


def write_insert_result(root: Path, first: int, count: int, folder: str = "insert") -> dict[str, Path]:
    """The files of a footage.insert result, exactly as the contract lays them out."""
    files: dict[str, Path] = {}
    folders = [f"{folder}/{layer}" for layer in kinds_footage.FOOTAGE_INSERT_LAYERS]
    folders += [f"{folder}/layers/{layer}" for layer in kinds_footage.FOOTAGE_DECOMPOSE_LAYERS]
    for index, name in enumerate(folders):
        for frame in range(first, first + count):
            key = f"{name}/{frame:06d}.png"
            write_png(root / key, layer_pixels(index, frame))
            files[key] = root / key
    for extra in (f"{folder}/composite.mp4", f"{folder}/footage.json", f"{folder}/layers/config.json"):
        (root / extra).write_bytes(b"not a frame")
        files[extra] = root / extra
    depth = root / folder / "layers" / "depth" / f"{first:06d}.npy"
    depth.parent.mkdir(parents=True, exist_ok=True)
    np.save(depth, np.ones((12, 16), np.float32))
    files[f"{folder}/layers/depth/{first:06d}.npy"] = depth
    return files


def footage_strip(scene: bpy.types.Scene, folder: Path, channel: int, start: int) -> bpy.types.Strip:
    frames = write_plate(folder, frames=8)
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strip = editor.strips.new_image(name="Plate", filepath=str(frames[0]), channel=channel, frame_start=start)
    for frame in frames[1:]:
        strip.elements.append(frame.name)
    return strip


def strip_files(strip: bpy.types.Strip) -> list[Path]:
    folder = Path(bpy.path.abspath(strip.directory))
    return [folder / element.filename for element in strip.elements]


def test_insert_layers_land_above_the_footage_frame_for_frame(clean_scene, tmp_path: Path) -> None:
    scene = clean_scene
    plate = footage_strip(scene, tmp_path / "plate", channel=2, start=11)
    # Something else on channel 3 over the same frames: the layers go above it, all together.
    editor = scene.sequence_editor
    other = editor.strips.new_image(name="Other", filepath=str(strip_files(plate)[0]), channel=3,
                                    frame_start=16)
    first, count = 5, 3  # the job used footage frames 5-7
    files = write_insert_result(tmp_path / "result", first, count)
    meta = {META_STRIP: plate.name, META_FRAME_ONE: 11, META_INDEX0: 0, META_CHANNEL: 2}
    strips = run(import_footage_steps(files, scene=scene, job_id=JOB, kind="footage.insert",
                                      data={"folder": "insert"}, meta=meta))

    assert [s["avatar_studio_pass"] for s in strips] == INSERT_ORDER
    assert [s.channel for s in strips] == list(range(4, 4 + len(INSERT_ORDER)))
    assert other.channel == 3
    for index, strip in enumerate(strips):
        # Footage frame n sits at the footage strip's start + n - 1: frame 5 -> scene frame 15.
        assert strip_start(strip) == 11 + first - 1 and strip_duration(strip) == count
        paths = strip_files(strip)
        assert [p.name for p in paths] == [f"{f:06d}.png" for f in range(first, first + count)]
        for frame, path in zip(range(first, first + count), paths, strict=True):
            assert path == files[f"{INSERT_FOLDERS[index]}/{frame:06d}.png"]
            np.testing.assert_array_equal(read_png(path), layer_pixels(index, frame))
        # The plate's frame under the layer's first frame is that footage frame.
        np.testing.assert_array_equal(read_png(strip_files(plate)[first - 1]), plate_frame(first))
    by_pass = {s["avatar_studio_pass"]: s for s in strips}
    assert not by_pass["composite"].mute  # the sequencer shows the composite
    assert all(s.mute for s in strips[1:])  # the other layers are there for inspection
    assert by_pass["character"].blend_type == "ALPHA_OVER"
    assert not any(s.name.endswith(".mp4") for s in editor.strips_all)
    assert len(editor.strips_all) == 2 + len(INSERT_ORDER)  # plate, other, the layers (mp4 not twice)

    # The footage strip moved after the submit: the layers follow it. Re-import replaces.
    plate.channel = 20
    setattr(plate, "content_start" if hasattr(plate, "content_start") else "frame_start", 31.0)
    again = run(import_footage_steps(files, scene=scene, job_id=JOB, kind="footage.insert",
                                     data={"folder": "insert"}, meta=meta))
    assert len(editor.strips_all) == 2 + len(INSERT_ORDER)
    assert strip_start(again[0]) == 31 + first - 1 and again[0].channel == 21


def test_frames_of_an_image_strip_inside_a_longer_folder(clean_scene, tmp_path: Path) -> None:
    """The strip shows folder images 3..8: footage frame n (the folder's n-th image) sits at the
    strip's start + n - 3."""
    scene = clean_scene
    frames = write_plate(tmp_path / "plate", frames=8)
    editor = scene.sequence_editor_create()
    plate = editor.strips.new_image(name="Plate", filepath=str(frames[2]), channel=1, frame_start=100)
    for frame in frames[3:]:
        plate.elements.append(frame.name)
    files = write_insert_result(tmp_path / "result", 4, 2)
    meta = {META_STRIP: plate.name, META_FRAME_ONE: 98, META_INDEX0: 2, META_CHANNEL: 1}
    strips = run(import_footage_steps(files, scene=scene, job_id=JOB, kind="footage.insert",
                                      data={"folder": "insert"}, meta=meta))
    assert strip_start(strips[0]) == 101 and strips[0].channel == 2  # frame 4 = plate element 1
    # Without the strip (a Movie Clip, or removed): the meta's placement.
    editor.strips.remove(plate)
    strips = run(import_footage_steps(files, scene=scene, job_id=JOB, kind="footage.insert",
                                      data={"folder": "insert"}, meta={**meta, META_FRAME_ONE: 50}))
    assert strip_start(strips[0]) == 53 and strips[0].channel == 2


def test_decompose_layers_and_the_dispatch(clean_scene, tmp_path: Path) -> None:
    scene = clean_scene
    plate = footage_strip(scene, tmp_path / "plate", channel=1, start=1)
    root = tmp_path / "result"
    files = {}
    for index, layer in enumerate(kinds_footage.FOOTAGE_DECOMPOSE_LAYERS):
        for frame in (2, 3):
            key = f"template/{layer}/{frame:06d}.png"
            write_png(root / key, layer_pixels(index, frame))
            files[key] = root / key
    request = dispatch.ImportRequest(scene.name, JOB, "footage.decompose",
                                     meta={META_STRIP: plate.name, META_INDEX0: 0})
    runner = StepRunner(dispatch.import_steps(scene, request, {"folder": "template"}, {}, files),
                        dispatch.stages("footage.decompose"))
    while not runner.step(float("inf")):
        pass
    assert "4 strips from frame 2 on channels 2-5" in runner.value.summary
    strips = sorted((s for s in scene.sequence_editor.strips_all if s.name.startswith("AVS")),
                    key=lambda s: s.channel)
    assert [s["avatar_studio_pass"] for s in strips] == list(kinds_footage.FOOTAGE_DECOMPOSE_LAYERS)
    assert [s.mute for s in strips] == [layer != "scene" for layer in kinds_footage.FOOTAGE_DECOMPOSE_LAYERS]


def test_bad_results_are_clear_errors(clean_scene, tmp_path: Path) -> None:
    files = write_insert_result(tmp_path / "r", 1, 3)
    gap = {k: v for k, v in files.items() if not k.endswith("000002.png")}
    with pytest.raises(ValueError, match="not consecutive"):
        numbered_frames(gap, "insert/composite")
    with pytest.raises(ValueError, match="no layer frames"):
        run(import_footage_steps({"insert/composite.mp4": files["insert/composite.mp4"]}, scene=clean_scene,
                                 job_id=JOB, kind="footage.insert", data={}, meta={}))
    request = dispatch.ImportRequest(clean_scene.name, JOB, "footage.insert")
    with pytest.raises(dispatch.ImportFailed, match="named by its footage frame"):
        bad = {"insert/composite/last.png": tmp_path / "x"}
        run(dispatch.import_steps(clean_scene, request, {}, {}, bad))
