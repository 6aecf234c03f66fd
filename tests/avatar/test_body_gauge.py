"""The sculpt moved back onto the body's world frame (backend/avatar/geometry/body_gauge.py)."""

from __future__ import annotations

import numpy as np

from backend.avatar.geometry.body_gauge import BodyGaugeConfig, body_frame_offset


def test_a_clothed_character_moved_off_its_body_is_moved_back(small_character) -> None:
    # The synthetic character (skirt, hair, shirt on the stand-in body) is what a perfect sculpt
    # looks like: its skin lies on the body, its clothes do not.
    _, _, char = small_character
    still, used = body_frame_offset(char.vertices, char.body)
    assert np.abs(still).max() < 3e-4 and used > 0.1 * len(char.vertices)  # clothes do not pull it
    for true in (np.array([0.003, -0.002, 0.0015]), np.array([-0.004, 0.001, 0.0035])):
        shift, _ = body_frame_offset(char.vertices + true, char.body)
        np.testing.assert_allclose(shift, -true, atol=3e-4)


def test_a_mesh_that_does_not_lie_on_the_body_is_left_where_it_is(small_character) -> None:
    _, _, char = small_character
    far, _ = body_frame_offset(char.vertices + np.array([0.06, 0.0, 0.0]), char.body)
    assert np.all(far == 0)
    shrunk = (char.vertices - char.vertices.mean(0)) * 0.7 + char.vertices.mean(0)
    assert np.all(body_frame_offset(shrunk, char.body)[0] == 0)
    off, _ = body_frame_offset(char.vertices + 0.003, char.body, BodyGaugeConfig(enabled=False))
    assert np.all(off == 0)
