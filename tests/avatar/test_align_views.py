"""Per-view image shifts onto the sculpt's silhouette (backend/avatar/geometry/align_views.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_hull_box import sphere_views
from test_refine import sphere

from backend.avatar.geometry.align_views import AlignConfig, align_views, shifted_camera, silhouette_shifts

CENTRE, RADIUS = np.array([0.0, 1.0, 0.0]), 0.3


def test_known_shifts_are_measured_and_undone() -> None:
    v, f = sphere(5, RADIUS)
    v = v + CENTRE
    views = sphere_views(CENTRE, RADIUS, count=4, size=256)
    true = np.array([[1.5, -0.5], [-1.0, 2.0], [0.0, 0.0], [0.7, 0.7]])
    # the masks were seen through cameras whose images sit ``true`` px off the ones given
    given = [replace(view, camera=shifted_camera(view.camera, -dx, -dy))
             for view, (dx, dy) in zip(views, true, strict=True)]
    shifts = silhouette_shifts(v, f, given)
    np.testing.assert_allclose(shifts, true, atol=0.15)
    aligned, _ = align_views(v, f, given)
    again = silhouette_shifts(v, f, aligned)
    assert np.abs(again).max() < 0.15


def test_shifts_past_the_limit_are_not_trusted_and_off_is_off() -> None:
    v, f = sphere(4, RADIUS)
    v = v + CENTRE
    views = sphere_views(CENTRE, RADIUS, count=2, size=256)
    given = [replace(views[0], camera=shifted_camera(views[0].camera, -9.0, 0.0)), views[1]]
    shifts = silhouette_shifts(v, f, given, AlignConfig(max_shift_px=4.0))
    assert np.all(shifts[0] == 0) and np.abs(shifts[1]).max() < 0.15
    kept, none = align_views(v, f, given, AlignConfig(enabled=False))
    assert np.all(none == 0) and kept[0].camera is given[0].camera
