"""Our rasterizer against Blender's own renderer: same scene, same camera, same silhouette.

Blender (Workbench, flat, transparent film, no antialiasing) renders a UV sphere and a rotated cube
through a camera with lens/shift/sensor-fit settings; the scene is exported exactly as the add-on
does (evaluated triangles in world space + ``protocol.cameras`` conversion) and rasterised by the
backend's CPU rasterizer in the backend environment (torch is not in Blender's Python).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, backend_python

bpy = pytest.importorskip("bpy")

from protocol.cameras import BlenderCamera, blender_to_protocol_points, camera_path_from_blender  # noqa: E402

_RASTERIZE = """
import json, sys
import numpy as np, torch
from backend.render import get_rasterizer
from backend.render.camera import CameraBatch
from protocol.cameras import CameraPath
data = np.load(sys.argv[1])
path = CameraPath.from_json(open(sys.argv[2]).read())
cams = CameraBatch.from_path(path)
verts = torch.as_tensor(data["verts"], dtype=torch.float32)
r = get_rasterizer("cpu").rasterize(cams.clip(verts), torch.as_tensor(data["faces"]), cams.resolution)
np.save(sys.argv[3], r.mask[0].numpy())
"""

# (lens, sensor_fit, shift_x, shift_y, res_x, res_y, pixel_aspect_y)
CASES = [
    (35.0, "AUTO", 0.0, 0.0, 160, 120, 1.0),
    (50.0, "VERTICAL", 0.08, -0.05, 120, 150, 1.0),
    (40.0, "HORIZONTAL", -0.1, 0.1, 150, 100, 1.25),
]


def _build_scene(case: tuple) -> bpy.types.Scene:
    lens, fit, sx, sy, rx, ry, aspect_y = case
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=1.0, location=(0.0, 0.0, 1.0))
    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(1.6, 0.8, 0.6), rotation=(0.3, 0.2, 0.7))
    cam_data = bpy.data.cameras.new("cam")
    cam_data.lens, cam_data.sensor_fit, cam_data.shift_x, cam_data.shift_y = lens, fit, sx, sy
    cam_data.clip_start, cam_data.clip_end = 0.1, 100.0
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (6.0, -7.5, 4.0)
    cam.rotation_euler = (1.2, 0.0, 0.72)
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = rx, ry, 100
    render.pixel_aspect_x, render.pixel_aspect_y = 1.0, aspect_y
    render.engine = "BLENDER_WORKBENCH"
    render.film_transparent = True
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    scene.display.render_aa = "OFF"
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = "SINGLE"
    bpy.context.view_layer.update()
    return scene


def _blender_mask(scene: bpy.types.Scene, out: Path) -> np.ndarray:
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(out))
    w, h = image.size
    rgba = np.array(image.pixels[:], dtype=np.float32).reshape(h, w, 4)
    return rgba[::-1, :, 3] > 0.5  # Blender stores the bottom row first


def _export(scene: bpy.types.Scene) -> tuple[np.ndarray, np.ndarray, str]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts, faces, offset = [], [], 0
    for obj in scene.objects:
        if obj.type != "MESH":
            continue
        mesh = obj.evaluated_get(depsgraph).to_mesh()
        mesh.calc_loop_triangles()
        world = np.array(obj.matrix_world)
        co = np.array([v.co[:] for v in mesh.vertices])
        verts.append(co @ world[:3, :3].T + world[:3, 3])
        faces.append(np.array([t.vertices[:] for t in mesh.loop_triangles]) + offset)
        offset += len(co)
        obj.evaluated_get(depsgraph).to_mesh_clear()
    cam, r = scene.camera, scene.render
    bcam = BlenderCamera(
        lens=cam.data.lens, sensor_width=cam.data.sensor_width, sensor_height=cam.data.sensor_height,
        sensor_fit=cam.data.sensor_fit, shift_x=cam.data.shift_x, shift_y=cam.data.shift_y,
        clip_start=cam.data.clip_start, clip_end=cam.data.clip_end, resolution_x=r.resolution_x,
        resolution_y=r.resolution_y, resolution_percentage=r.resolution_percentage,
        pixel_aspect_x=r.pixel_aspect_x, pixel_aspect_y=r.pixel_aspect_y,
        matrix_world=np.array(cam.matrix_world),
    )
    path = camera_path_from_blender([bcam])
    return blender_to_protocol_points(np.concatenate(verts)), np.concatenate(faces), path.to_json()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}-{c[4]}x{c[5]}-pa{c[6]:g}" for c in CASES])
def test_silhouette_matches_workbench(case: tuple, tmp_path: Path) -> None:
    scene = _build_scene(case)
    expected = _blender_mask(scene, tmp_path / "blender.png")
    verts, faces, camera_json = _export(scene)
    np.savez(tmp_path / "mesh.npz", verts=verts, faces=faces)
    (tmp_path / "cams.json").write_text(camera_json)
    args = [str(tmp_path / name) for name in ("mesh.npz", "cams.json", "ours.npy")]
    subprocess.run([backend_python(), "-c", _RASTERIZE, *args], check=True, cwd=REPO_ROOT, timeout=300)
    ours = np.load(tmp_path / "ours.npy")
    assert ours.shape == expected.shape == (case[5], case[4])
    assert expected.mean() > 0.02, "the objects are in view"
    iou = (ours & expected).sum() / (ours | expected).sum()
    print(f"IoU {iou:.4f}")
    assert iou >= 0.98, f"IoU {iou:.4f}"
    json.loads(camera_json)  # the payload the add-on would send is plain JSON
