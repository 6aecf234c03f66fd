"""Lighting of the inserted character (backend/footage/lighting.py): normals from depth, the SH
fit to a plate whose albedo meets the fit's assumption, the dominant light direction."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion

from backend.footage.lighting import (
    ASSUMED_ALBEDO,
    dominant_direction,
    fit_plate_sh,
    flat_sh,
    irradiance,
    normals_from_depth,
    pixel_rays,
)
from protocol.cameras import intrinsics_from_fov, look_at

W, H = 160, 120
TRUE_SH = np.array([[2.4, 2.5, 2.9], [0.6, 0.55, 0.4], [0.3, 0.3, 0.35], [-0.25, -0.2, -0.2], [0.0] * 3,
                    [0.05] * 3, [-0.1] * 3, [0.0] * 3, [0.04] * 3], np.float32)


def _scene_depth(K, R, t) -> np.ndarray:
    """Depth of the ground y = 0 and of a wall z = -2 facing +z, by ray casting."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = pixel_rays(K, R, xs, ys)
    C = -R.T @ t
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(rays[..., 1] < 0, -C[1] / rays[..., 1], np.inf)
        wall = np.where(rays[..., 2] < 0, (-2.0 - C[2]) / rays[..., 2], np.inf)
    return np.minimum(ground, wall).astype(np.float32)


def test_normals_from_depth_of_a_ground_and_a_wall() -> None:
    K = intrinsics_from_fov(50.0, W, H)
    R, t = look_at((0.5, 1.5, 4.0), (0.0, 0.5, 0.0))
    depth = _scene_depth(K, R, t)
    n, valid = normals_from_depth(depth, K, R)
    ys, xs = np.mgrid[0:H, 0:W]
    rays = pixel_rays(K, R, xs.astype(float), ys.astype(float))
    hit_y = (-R.T @ t)[1] + depth * rays[..., 1]
    # One pixel off the crease (central differences straddle it there).
    ground = binary_erosion(valid & (np.abs(hit_y) < 1e-3), iterations=2)
    wall = binary_erosion(valid & (np.abs(hit_y) >= 1e-3), iterations=2)
    assert ground.sum() > 2000 and wall.sum() > 2000
    np.testing.assert_allclose(n[ground], np.tile([0, 1, 0], (ground.sum(), 1)), atol=1e-3)
    np.testing.assert_allclose(n[wall], np.tile([0, 0, 1], (wall.sum(), 1)), atol=1e-3)
    assert not valid[np.isinf(depth)].any()


def test_fit_recovers_the_light_on_the_normals_it_sees() -> None:
    K = intrinsics_from_fov(50.0, W, H)
    R, t = look_at((0.5, 1.5, 4.0), (0.0, 0.5, 0.0))
    depth = _scene_depth(K, R, t)
    n, valid = normals_from_depth(depth, K, R)
    frame = np.where(valid[..., None], ASSUMED_ALBEDO * irradiance(TRUE_SH, n), 0.3)
    frames = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)[None].repeat(2, 0)
    sh, info = fit_plate_sh(frames, depth[None].repeat(2, 0), K[None].repeat(2, 0), R[None].repeat(2, 0),
                            t[None].repeat(2, 0), 0.0)
    assert info["source"] == "depth" and info["kept"] > 0.9 * info["samples"]
    seen = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    got, want = irradiance(sh, seen), irradiance(TRUE_SH, seen)
    luma = np.array([0.2126, 0.7152, 0.0722])
    # The light's shape is fitted to luminance: exact there; one colour for all directions (the
    # median chroma), so each channel is within the spread of the true light's colours.
    np.testing.assert_allclose(got @ luma, want @ luma, rtol=0.03)
    np.testing.assert_allclose(got, want, rtol=0.15)
    # Without depth: the ground's pixels (normal up) still give the light from above.
    sh_ground, info = fit_plate_sh(frames, None, K[None].repeat(2, 0), R[None].repeat(2, 0),
                                   t[None].repeat(2, 0), 0.0)
    assert info["source"] == "ground"
    up = irradiance(sh_ground, seen[:1])
    assert np.all(np.abs(up / irradiance(TRUE_SH, seen[:1]) - 1) < 0.35)


def test_dominant_direction_and_flat() -> None:
    sh = flat_sh()
    np.testing.assert_allclose(irradiance(sh, np.array([[0, 1, 0], [1, 0, 0], [0, -1, 0]], np.float32)), 1.0,
                               rtol=1e-5)
    d, strength = dominant_direction(sh)
    assert strength == 0.0 and np.allclose(d, [0, 1, 0])
    lit = sh.copy()
    lit[[3, 1, 2]] += np.array([1.0, 1.0, 0.0])[:, None]  # towards +x and +y equally: 45 degrees up
    d, strength = dominant_direction(lit)
    np.testing.assert_allclose(d, [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=1e-6)
    assert strength > 0.1
    grazing = sh.copy()
    grazing[3] += 1.0  # from the side: raised to the minimum elevation
    d, _ = dominant_direction(grazing, min_elevation_deg=20.0)
    assert abs(np.degrees(np.arcsin(d[1])) - 20.0) < 1e-6 and d[0] > 0
