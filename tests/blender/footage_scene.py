"""Scenes for the Footage panel's tests: a plate (PNG frames and an mp4 Blender encodes from them),
its movie or image strip, a keyed camera, an imported avatar with an action and the job item that
made it (as the avatar importer leaves it)."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np

from blender_addon.importers.action import apply_pose_action
from blender_addon.importers.avatar import import_avatar

W, H, FRAMES = 64, 48, 6


def write_png(path: Path, rgba: np.ndarray) -> None:
    """``rgba`` (H, W, 4) uint8, row 0 = top, saved by Blender as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = rgba.shape[:2]
    image = bpy.data.images.new(path.stem, width, height, alpha=True)
    image.pixels.foreach_set((rgba[::-1].astype(np.float32) / 255.0).ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def read_png(path: Path) -> np.ndarray:
    """A PNG read back through Blender's image loading: (H, W, 4) uint8, row 0 = top."""
    image = bpy.data.images.load(str(path))
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.round(pixels.reshape(height, width, 4)[::-1] * 255.0).astype(np.uint8)


def plate_frame(frame: int) -> np.ndarray:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = 30 * frame
    rgba[..., 1] = np.linspace(0, 255, W).astype(np.uint8)[None]
    rgba[H // 2:, :, 2] = 200  # a "floor"
    rgba[..., 3] = 255
    return rgba


def write_plate(folder: Path, frames: int = FRAMES, pattern: str = "plate_{:04d}.png") -> list[Path]:
    paths = []
    for frame in range(1, frames + 1):
        paths.append(folder / pattern.format(frame))
        write_png(paths[-1], plate_frame(frame))
    return paths


def encode_movie(frames: list[Path], out: Path, fps: int = 24) -> Path:
    """An H.264 mp4 of ``frames`` encoded by Blender's own sequencer render (a throwaway scene)."""
    scene = bpy.data.scenes.new("movie-maker")
    try:
        editor = scene.sequence_editor_create()
        strip = editor.strips.new_image(name="plate", filepath=str(frames[0]), channel=1, frame_start=1)
        for frame in frames[1:]:
            strip.elements.append(frame.name)
        scene.frame_start, scene.frame_end = 1, len(frames)
        render = scene.render
        render.resolution_x, render.resolution_y, render.resolution_percentage = W, H, 100
        render.fps, render.fps_base = fps, 1.0
        if hasattr(render.image_settings, "media_type"):
            render.image_settings.media_type = "VIDEO"
        render.image_settings.file_format = "FFMPEG"
        render.ffmpeg.format, render.ffmpeg.codec = "MPEG4", "H264"
        render.filepath = str(out)
        render.use_sequencer = True
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
    assert out.is_file(), f"Blender wrote no {out}"
    return out


def keyed_camera(scene: bpy.types.Scene, start: int, end: int) -> bpy.types.Object:
    """A perspective camera that moves and turns between ``start`` and ``end`` (keyed)."""
    data = bpy.data.cameras.new("FootageCam")
    data.lens = 30.0
    camera = bpy.data.objects.new("FootageCam", data)
    scene.collection.objects.link(camera)
    camera.rotation_mode = "XYZ"
    for frame, x, turn in ((start, -0.4, 0.0), (end, 0.5, 0.15)):
        camera.location = (x, -5.0, 1.2)
        camera.rotation_euler = (np.radians(85.0), 0.0, turn)
        camera.keyframe_insert("location", frame=frame)
        camera.keyframe_insert("rotation_euler", frame=frame)
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = W, H
    scene.render.resolution_percentage = 100
    return camera


def imported_avatar(scene: bpy.types.Scene, result_dir: Path, arrays: dict[str, np.ndarray],
                    frames: int, frame_start: int) -> bpy.types.Object:
    """An avatar as an avatar job leaves it: the arrays downloaded as ``.npy`` in the job's result
    folder, imported, the job item pointing at the armature; then keyed with an action."""
    result_dir.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(result_dir / f"{name}.npy", array)
    (result_dir / "avatar.json").write_text(json.dumps({"vertices": len(arrays["vertices"])}))
    arm_obj, _mesh = import_avatar(arrays, {}, {}, name="FootageAvatar", collection=scene.collection)
    item = scene.avatar_studio.jobs.add()
    item.kind, item.job_id, item.state = "avatar.from_views", "f" * 32, "succeeded"
    item.target, item.result_dir, item.imported = arm_obj.name, str(result_dir), True
    rng = np.random.default_rng(5)
    pose = rng.normal(scale=0.2, size=(frames, 55 * 3))
    transl = np.cumsum(np.full((frames, 3), (0.05, 0.0, 0.0)), axis=0)
    apply_pose_action(arm_obj, pose, transl, frame_start=frame_start)
    return arm_obj
