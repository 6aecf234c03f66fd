"""Condition images of the posed body: what each pass shows, where, and the view labels."""

from __future__ import annotations

import numpy as np
import pytest
from generate_helpers import A_POSE, SIZE

from backend.generate.conditions import body_conditions, view_label
from protocol.cameras import multiview_ring


def test_view_labels_from_azimuth() -> None:
    assert [view_label(a) for a in (0, 44, -45, 46, 90, -134, 135, 180, -180, 225, 359)] == [
        "front", "front", "front", "side", "side", "side", "back", "back", "back", "back", "front"]


def test_condition_images_show_the_body_where_it_is(conditions4) -> None:
    c = conditions4
    assert len(c) == 4 and c.names == ["el+00_az000", "el+00_az090", "el+00_az180", "el+00_az270"]
    for kind in ("pose", "depth", "normal"):
        images = getattr(c, kind)
        assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.uint8
        assert len(c.images(kind)) == 4 and c.images(kind)[0].size == (SIZE, SIZE)
    assert c.mask.shape == (4, SIZE, SIZE) and (c.mask.mean(axis=(1, 2)) > 0.03).all()
    # Depth and normal images are black exactly off the body; the depth is brighter nearer.
    assert not c.depth[~c.mask].any() and not c.normal[~c.mask].any()
    assert (c.depth[c.mask] >= 0.2 * 255 - 1).all()
    # Normal images: surfaces facing the camera are blue (towards the viewer) in ControlNet colours.
    assert c.normal[c.mask][:, 2].mean() > 180
    # World normals are unit on the body; the front camera sees normals pointing at it (+z).
    n = np.linalg.norm(c.normal_world[c.mask], axis=-1)
    np.testing.assert_allclose(n, 1.0, atol=1e-3)
    assert c.normal_world[0][c.mask[0]][:, 2].mean() > 0.5
    # The skeleton is drawn over the body: inside its box grown by the disc radius (4 px) + 1.
    for i in range(4):
        drawn = np.argwhere(c.pose[i].max(-1) > 0)
        body = np.argwhere(c.mask[i])
        assert len(drawn) > 20
        assert (drawn.min(0) >= body.min(0) - 5).all() and (drawn.max(0) <= body.max(0) + 5).all()
    assert c.smplx["gender"] == "neutral" and len(c.smplx["body_pose"]) == 63
    with pytest.raises(ValueError, match="unknown condition"):
        c.images("canny")


def test_labels_follow_the_way_the_body_faces() -> None:
    # Fixed cameras, the body turned round: the camera in front of it now sees its back.
    cams = multiview_ring(2, radius=3.0, width=SIZE, height=SIZE, target=(0.0, -0.3, 0.0))
    ahead = body_conditions(A_POSE, cams)
    turned = body_conditions({**A_POSE, "global_orient": [0.0, np.pi, 0.0]}, cams)
    assert ahead.labels == ["front", "back"] and turned.labels == ["back", "front"]
    np.testing.assert_allclose(np.abs(turned.azimuth_deg), [180.0, 0.0], atol=1.0)
    # A ring made for the turned body starts in front of it.
    ring = body_conditions({**A_POSE, "global_orient": [0.0, np.pi / 2, 0.0]}, 4, width=SIZE, height=SIZE)
    assert ring.labels == ["front", "side", "back", "side"]
    centre = -ring.cameras.R[0].T @ ring.cameras.t[0]
    assert centre[0] > 1.0  # the body faces +x after a quarter turn about y
