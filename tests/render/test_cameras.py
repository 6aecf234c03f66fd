"""protocol/cameras.py (pure numpy) and its agreement with the torch camera helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from meshes import uv_sphere

from backend.render import get_rasterizer, opencv_to_clip, project_points, world_to_clip
from backend.render.camera import CameraBatch
from protocol.cameras import (
    BlenderCamera,
    CameraPath,
    blender_camera_from_opencv,
    blender_extrinsics,
    blender_intrinsics,
    blender_to_protocol_points,
    intrinsics_from_fov,
    look_at,
    multiview_ring,
    orbit_path,
    parse_camera_spec,
    protocol_to_blender_points,
    turntable_path,
)


def test_payload_and_json_round_trip(tmp_path) -> None:
    path = orbit_path(5, radius=2.5, width=64, height=48, fps=24, frame_start=3)
    payload = path.to_payload()
    assert payload["K"].shape == (5, 3, 3) and payload["K"].dtype == np.float64
    again = CameraPath.from_payload(payload)
    assert np.array_equal(again.R, path.R) and again.fps == 24 and again.frame_start == 3
    file = tmp_path / "cams.json"
    file.write_text(path.to_json())
    loaded = parse_camera_spec(str(file))
    assert np.allclose(loaded.t, path.t) and (loaded.width, loaded.height) == (64, 48)
    assert len(parse_camera_spec("orbit:7")) == 7


@pytest.mark.parametrize("bad", [
    {"K": np.eye(3), "R": np.eye(3)},  # missing t, sizes
    {"K": np.eye(3), "R": np.eye(3) * 2, "t": np.zeros(3), "width": 4, "height": 4},  # not a rotation
    {"K": np.eye(3), "R": np.eye(3), "t": np.zeros(3), "width": 4, "height": 4, "near": 2, "far": 1},
    {"K": np.eye(3), "R": np.stack([np.eye(3)] * 2), "t": np.zeros(3), "width": 4, "height": 4},
    {"K": "nope", "R": np.eye(3), "t": np.zeros(3), "width": 4, "height": 4},
])
def test_invalid_payloads_raise_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        CameraPath.from_payload(bad)
    with pytest.raises(ValueError):
        parse_camera_spec("orbit:x")


def test_look_at_and_orbit_geometry() -> None:
    R, t = look_at((1.0, 2.0, 3.0), (0.0, 0.5, 0.0))
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)
    assert np.allclose(-R.T @ t, [1.0, 2.0, 3.0])
    path = orbit_path(8, radius=3.0, elevation_deg=20.0, target=(0.0, -0.3, 0.0), width=64, height=64)
    centres = path.centers()
    assert np.allclose(np.linalg.norm(centres - [0.0, -0.3, 0.0], axis=1), 3.0)
    assert centres[0, 2] > 2.5 and abs(centres[0, 0]) < 1e-9, "azimuth 0 is in front (+z)"
    assert centres[2, 0] > 2.5, "azimuth 90 deg is on +x"
    pix, depth = path.project(np.array([[0.0, -0.3, 0.0], [0.0, 1.0, 0.0]]))
    assert np.allclose(pix[:, 0], [32.0, 32.0]) and np.allclose(depth[:, 0], 3.0)
    assert (pix[:, 1, 1] < 32).all(), "a point above the target is in the upper half (y down)"
    assert len(turntable_path(12)) == 12


def test_multiview_ring_names() -> None:
    ring = multiview_ring(4, elevations_deg=(0.0, 30.0), width=32, height=32)
    assert len(ring) == 8 and ring.names[0] == "el+00_az000" and ring.names[5] == "el+30_az090"


def test_blender_point_conversion() -> None:
    p = np.array([[1.0, 2.0, 3.0]])
    assert np.allclose(blender_to_protocol_points(p), [[1.0, 3.0, -2.0]])
    assert np.allclose(protocol_to_blender_points(blender_to_protocol_points(p)), p)


@pytest.mark.parametrize("fx,fy,cx,cy,w,h", [
    (500.0, 500.0, 320.0, 240.0, 640, 480),
    (700.0, 650.0, 300.0, 260.0, 640, 480),  # non-square pixels, off-centre
    (400.0, 420.0, 250.0, 310.0, 480, 640),  # portrait
])
def test_opencv_to_blender_and_back(fx: float, fy: float, cx: float, cy: float, w: int, h: int) -> None:
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    R, t = look_at((2.0, 1.5, -3.0), (0.1, 0.9, 0.2))
    cam = blender_camera_from_opencv(K, R, t, w, h, 0.2, 30.0)
    assert cam.pixel_aspect_x >= 1.0 and cam.pixel_aspect_y >= 1.0
    assert np.allclose(blender_intrinsics(cam), K)
    R2, t2 = blender_extrinsics(cam.matrix_world)
    assert np.allclose(R2, R) and np.allclose(t2, t)
    # The Blender camera looks down its local -Z: the world target is in front of it (Z-up frame).
    target_b = protocol_to_blender_points(np.array([0.1, 0.9, 0.2]))
    local = np.linalg.inv(cam.matrix_world) @ np.append(target_b, 1.0)
    assert local[2] < 0
    with pytest.raises(ValueError):
        blender_camera_from_opencv(K + np.array([[0, 1.0, 0], [0, 0, 0], [0, 0, 0]]), R, t, w, h)


def test_default_blender_camera_looks_down() -> None:
    # Identity matrix_world: Blender camera at the origin looking down world -Z (Blender), i.e.
    # protocol -Y (down); the protocol point (0, -5, 0) is 5 m in front.
    R, t = blender_extrinsics(np.eye(4))
    assert np.allclose(R @ np.array([0.0, -5.0, 0.0]) + t, [0.0, 0.0, 5.0])
    K = blender_intrinsics(BlenderCamera(lens=50.0, resolution_x=360, resolution_y=240))
    assert np.allclose(K, [[500.0, 0, 180.0], [0, 500.0, 120.0], [0, 0, 1]])


def test_clip_space_matches_pinhole_projection() -> None:
    K = np.array([[60.0, 0.0, 33.0], [0.0, 58.0, 21.0], [0.0, 0.0, 1.0]])
    R, t = look_at((0.3, 0.2, 3.0), (0.0, 0.0, 0.0))
    pts = torch.tensor([[0.1, 0.2, 0.3], [-0.5, 0.1, -0.2]])
    clip = world_to_clip(pts, K, R, t, 64, 40, 0.1, 10.0)[0].double()
    ndc = clip[:, :3] / clip[:, 3:]
    px = (ndc[:, 0] + 1) / 2 * 64
    py = (1 - ndc[:, 1]) / 2 * 40
    pix, depth = project_points(pts, K, R, t)
    assert torch.allclose(torch.stack([px, py], -1).float(), pix[0], atol=1e-4)
    assert torch.allclose(clip[:, 3].float(), depth[0], atol=1e-5)
    P = opencv_to_clip(K, 64, 40, 0.1, 10.0)
    z_near = P @ torch.tensor([0.0, 0.0, 0.1, 1.0], dtype=P.dtype)
    z_far = P @ torch.tensor([0.0, 0.0, 10.0, 1.0], dtype=P.dtype)
    assert torch.isclose(z_near[2] / z_near[3], torch.tensor(-1.0, dtype=P.dtype))
    assert torch.isclose(z_far[2] / z_far[3], torch.tensor(1.0, dtype=P.dtype))


def test_camera_path_drives_the_rasterizer() -> None:
    # A small sphere at a world point lands where CameraPath.project says, in every view.
    centre = np.array([0.4, 0.3, -0.2])
    verts, faces = uv_sphere(8, 12, radius=0.1, centre=tuple(centre))
    path = orbit_path(6, radius=3.0, elevation_deg=15, width=64, height=48)
    cams = CameraBatch.from_path(path)
    r = get_rasterizer("cpu").rasterize(cams.clip(torch.as_tensor(verts, dtype=torch.float32)),
                                        torch.as_tensor(faces), cams.resolution)
    pix, _ = path.project(centre[None])
    for f in range(len(path)):
        x, y = np.floor(pix[f, 0]).astype(int)
        assert r.mask[f, y, x], f"view {f}: projected centre inside the mask"
    assert intrinsics_from_fov(90.0, 10, 10)[0, 0] == pytest.approx(5.0)


def test_camera_batch_clip_is_the_same_without_and_with_gradients() -> None:
    # No gradient on the CPU: numpy float64; with one: torch. Both must agree with world_to_clip.
    from backend.render.camera import CameraBatch, world_to_clip

    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[500.0, 0.3, 256.0], [0.0, 520.0, 240.0], [0.0, 0.0, 1.0]]).expand(3, 3, 3)
    R = torch.linalg.qr(torch.randn(3, 3, 3, generator=g)).Q
    t = torch.randn(3, 3, generator=g) + torch.tensor([0.0, 0.0, 6.0])
    cams = CameraBatch(K, R, t, 512, 480, 0.1, 50.0)
    verts = torch.randn(200, 3, generator=g)
    expected = world_to_clip(verts.expand(3, -1, -1), K, R, t, 512, 480, 0.1, 50.0)
    with torch.no_grad():
        plain = cams.clip(verts)
    graded = cams.clip(verts.clone().requires_grad_(True))
    assert plain.dtype == torch.float32 and not plain.requires_grad and graded.requires_grad
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(graded.detach(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="near < far"), torch.no_grad():
        CameraBatch(K, R, t, 512, 480, 5.0, 1.0).clip(verts)
