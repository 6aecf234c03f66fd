"""protocol/cameras.py against real Blender: our K/R/t must project like Blender's own camera."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Euler, Matrix, Vector  # noqa: E402

from protocol.cameras import (  # noqa: E402
    BlenderCamera,
    blender_camera_from_opencv,
    blender_extrinsics,
    blender_intrinsics,
    blender_to_protocol_points,
    camera_path_from_blender,
    look_at,
)

# (lens, sensor_w, sensor_h, fit, shift_x, shift_y, res_x, res_y, percent, aspect_x, aspect_y)
CASES = [
    (50.0, 36.0, 24.0, "AUTO", 0.0, 0.0, 640, 480, 100, 1.0, 1.0),
    (35.0, 36.0, 24.0, "AUTO", 0.1, -0.05, 480, 640, 100, 1.0, 1.0),  # portrait: AUTO fits vertically
    (24.0, 36.0, 20.0, "HORIZONTAL", -0.2, 0.15, 800, 450, 50, 1.0, 1.0),
    (85.0, 30.0, 24.0, "VERTICAL", 0.05, 0.3, 640, 360, 100, 1.0, 1.0),
    (50.0, 36.0, 24.0, "AUTO", 0.12, 0.07, 720, 576, 100, 16.0, 15.0),  # non-square pixels
    (40.0, 32.0, 18.0, "VERTICAL", -0.1, -0.2, 300, 500, 100, 1.0, 2.0),
]


def _new_scene() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    cam_data = bpy.data.cameras.new("cam")
    cam_obj = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    return scene


def _apply(scene: bpy.types.Scene, case: tuple, matrix_world: Matrix) -> BlenderCamera:
    lens, sw, sh, fit, sx, sy, rx, ry, pct, ax, ay = case
    cam = scene.camera
    cam.data.lens, cam.data.sensor_width, cam.data.sensor_height = lens, sw, sh
    cam.data.sensor_fit, cam.data.shift_x, cam.data.shift_y = fit, sx, sy
    cam.data.clip_start, cam.data.clip_end = 0.05, 200.0
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = rx, ry, pct
    r.pixel_aspect_x, r.pixel_aspect_y = ax, ay
    cam.matrix_world = matrix_world
    bpy.context.view_layer.update()
    # Exactly what the add-on's scene export does: copy bpy fields into plain numbers.
    return BlenderCamera(
        lens=cam.data.lens, sensor_width=cam.data.sensor_width, sensor_height=cam.data.sensor_height,
        sensor_fit=cam.data.sensor_fit, shift_x=cam.data.shift_x, shift_y=cam.data.shift_y,
        clip_start=cam.data.clip_start, clip_end=cam.data.clip_end, resolution_x=r.resolution_x,
        resolution_y=r.resolution_y, resolution_percentage=r.resolution_percentage,
        pixel_aspect_x=r.pixel_aspect_x, pixel_aspect_y=r.pixel_aspect_y,
        matrix_world=np.array(cam.matrix_world),
    )


def _blender_pixels(scene: bpy.types.Scene, points_blender: np.ndarray, width: int,
                    height: int) -> np.ndarray:
    out = []
    for p in points_blender:
        ndc = world_to_camera_view(scene, scene.camera, Vector(p.tolist()))
        # Blender: (0, 0) bottom-left of the frame, z = depth. Ours: pixels, row 0 at the top.
        out.append((ndc.x * width, (1.0 - ndc.y) * height, ndc.z))
    return np.array(out)


CASE_IDS = [f"{c[3]}-{c[6]}x{c[7]}-{c[8]}%-pa{c[9]:g}:{c[10]:g}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_intrinsics_and_extrinsics_project_like_blender(case: tuple) -> None:
    scene = _new_scene()
    rng = np.random.default_rng(7)
    matrix_world = Matrix.Translation((1.5, -7.0, 2.0)) @ Euler((1.35, 0.1, 0.3), "XYZ").to_matrix().to_4x4()
    cam = _apply(scene, case, matrix_world)
    width, height = cam.image_size()
    assert (width, height) == (scene.render.resolution_x * scene.render.resolution_percentage // 100,
                               scene.render.resolution_y * scene.render.resolution_percentage // 100)
    # Points in front of the camera, spread over (and beyond) the frame.
    local = np.column_stack([rng.uniform(-3, 3, 40), rng.uniform(-3, 3, 40), -rng.uniform(2, 15, 40)])
    points_blender = np.array([(matrix_world @ Vector(p.tolist()))[:] for p in local])
    expected = _blender_pixels(scene, points_blender, width, height)

    K = blender_intrinsics(cam)
    R, t = blender_extrinsics(cam.matrix_world)
    cam_pts = blender_to_protocol_points(points_blender) @ R.T + t
    pix = cam_pts @ K.T
    pix = pix[:, :2] / pix[:, 2:3]
    np.testing.assert_allclose(cam_pts[:, 2], expected[:, 2], rtol=1e-5)
    np.testing.assert_allclose(pix, expected[:, :2], atol=1e-3)


def test_scaled_camera_object_is_ignored_like_blender() -> None:
    scene = _new_scene()
    matrix_world = (Matrix.Translation((0.0, -5.0, 1.0)) @ Euler((1.5, 0.0, 0.0), "XYZ").to_matrix().to_4x4()
                    @ Matrix.Diagonal((2.0, 0.5, 3.0, 1.0)))
    cam = _apply(scene, CASES[0], matrix_world)
    points = np.array([[0.3, 2.0, 1.2], [-0.5, 4.0, 0.0]])
    expected = _blender_pixels(scene, points, 640, 480)
    R, t = blender_extrinsics(cam.matrix_world)
    cam_pts = blender_to_protocol_points(points) @ R.T + t
    pix = cam_pts @ blender_intrinsics(cam).T
    np.testing.assert_allclose(pix[:, :2] / pix[:, 2:3], expected[:, :2], atol=1e-3)


def test_opencv_camera_round_trips_through_blender() -> None:
    # A protocol camera -> Blender fields -> real bpy camera -> same pixels as the protocol camera.
    scene = _new_scene()
    K = np.array([[700.0, 0.0, 300.0], [0.0, 650.0, 260.0], [0.0, 0.0, 1.0]])
    R, t = look_at(eye=(2.0, 1.6, 3.5), target=(0.0, 0.9, 0.0))
    bcam = blender_camera_from_opencv(K, R, t, 640, 480, near=0.1, far=50.0)
    case = (bcam.lens, bcam.sensor_width, bcam.sensor_height, bcam.sensor_fit, bcam.shift_x, bcam.shift_y,
            bcam.resolution_x, bcam.resolution_y, 100, bcam.pixel_aspect_x, bcam.pixel_aspect_y)
    copied = _apply(scene, case, Matrix(bcam.matrix_world.tolist()))
    points_protocol = np.array([[0.0, 0.9, 0.0], [0.3, 1.7, -0.2], [-0.4, 0.1, 0.5]])
    points_blender = points_protocol @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T
    expected = _blender_pixels(scene, points_blender, 640, 480)
    cam_pts = points_protocol @ R.T + t
    pix = cam_pts @ K.T
    np.testing.assert_allclose(pix[:, :2] / pix[:, 2:3], expected[:, :2], atol=1e-3)
    path = camera_path_from_blender([copied])
    np.testing.assert_allclose(path.K[0], K, atol=1e-4)
    np.testing.assert_allclose(path.R[0], R, atol=1e-6)
    np.testing.assert_allclose(path.t[0], t, atol=1e-5)
