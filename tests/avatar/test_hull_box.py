"""The sculpt grid's box grows to the views' visual hull where clothes reach past the body's box."""

from __future__ import annotations

import numpy as np

from backend.avatar.eval.synthetic import look_at_camera
from backend.avatar.geometry.hull_box import grid_box, visual_hull_box
from backend.avatar.io.views import View


def sphere_views(centre: np.ndarray, radius: float, count: int = 8, size: int = 256) -> list[View]:
    """Exact silhouettes of a sphere from a ring of cameras (ray-sphere test per pixel centre)."""
    views = []
    for k in range(count):
        a = 2 * np.pi * k / count
        eye = centre + 3.0 * np.array([np.cos(a), 0.3, np.sin(a)])
        cam = look_at_camera(eye, centre, size, size, 1.2 * size)
        ys, xs = np.mgrid[0:size, 0:size] + 0.5
        rays = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(-1, 3) @ np.linalg.inv(cam.K).T
        dirs = rays @ np.asarray(cam.R)  # camera -> world directions
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        oc = eye - centre
        b = dirs @ oc
        hit = (b * b - (oc @ oc - radius * radius)) > 0
        rgba = np.zeros((size, size, 4), np.float32)
        rgba[..., 3] = hit.reshape(size, size)
        views.append(View(f"v{k}", cam, rgba))
    return views


def test_hull_box_bounds_a_sphere_tightly() -> None:
    centre, radius = np.array([0.1, 0.9, -0.2]), 0.3
    box = visual_hull_box(sphere_views(centre, radius), centre - 1.0, centre + 1.0)
    assert box is not None
    lo, hi = box
    # covers the sphere, and across the ring not by much more (8 views: the hull's corners stand
    # off the sphere, the masks are dilated by 3 px of ~1 cm); below it the hull runs on where no
    # camera (all look down) sees under it
    assert np.all(lo <= centre - radius) and np.all(hi >= centre + radius)
    across = [0, 2]
    assert np.all(lo[across] >= centre[across] - radius - 0.09)
    assert np.all(hi[across] <= centre[across] + radius + 0.09)
    assert lo[1] < centre[1] - radius - 0.06


def test_grid_box_grows_only_where_the_views_reach_past_the_body() -> None:
    centre, radius = np.array([0.0, 1.0, 0.0]), 0.35
    views = sphere_views(centre, radius)
    # a "body" (tallest along y) much smaller across than what the views show: the box grows to
    # the sphere across, and keeps the body's height plus the margin along its longest axis
    body = centre + np.array([[-0.1, -0.3, -0.1], [0.1, 0.3, 0.1]])
    lo, hi = grid_box(body, 0.08, views)
    assert np.all(lo[[0, 2]] <= centre[[0, 2]] - radius) and np.all(hi[[0, 2]] >= centre[[0, 2]] + radius)
    assert lo[1] == body[0, 1] - 0.08 and hi[1] == body[1, 1] + 0.08
    without_lo, without_hi = grid_box(body, 0.08, None)
    np.testing.assert_allclose(without_lo, body[0] - 0.08)
    np.testing.assert_allclose(without_hi, body[1] + 0.08)
    # a body that already covers the sphere plus the margin: the box is the body's box plus margin
    big = centre + np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    lo, hi = grid_box(big, 0.08, views)
    np.testing.assert_allclose(lo, big[0] - 0.08)
    np.testing.assert_allclose(hi, big[1] + 0.08)


def test_no_mask_anywhere_gives_no_hull() -> None:
    views = sphere_views(np.zeros(3), 0.3)
    for view in views:
        view.rgba[..., 3] = 0
    assert visual_hull_box(views, -np.ones(3), np.ones(3)) is None


def test_grid_box_never_grows_past_the_longest_side() -> None:
    """Clothes wider than the body is tall would coarsen every cell: the growth stops at that side."""
    centre, radius = np.array([0.0, 1.0, 0.0]), 0.45
    views = sphere_views(centre, radius)
    body = centre + np.array([[-0.05, -0.3, -0.05], [0.05, 0.3, 0.05]])  # 0.6 m tall, 0.1 m across
    lo, hi = grid_box(body, 0.08, views)
    np.testing.assert_allclose((hi - lo).max(), 0.6 + 0.16)
    np.testing.assert_allclose(hi - lo, [0.76, 0.76, 0.76])
