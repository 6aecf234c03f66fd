"""Shared fixtures: the stand-in body in an A-pose and a small synthetic character (128 px views)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def a_pose_body():
    from backend.avatar.body_mesh import body_from_params
    from backend.avatar.eval.synthetic import SHAPE_PRESETS, a_pose_params

    return body_from_params(a_pose_params(SHAPE_PRESETS["average"], 45.0))


@pytest.fixture(scope="session")
def small_character(a_pose_body, tmp_path_factory):
    """(views folder, ViewSet, Character) at 128x128: 8 training + 4 held-out views."""
    from backend.avatar.eval.synthetic import SyntheticConfig, make_synthetic

    folder = tmp_path_factory.mktemp("views")
    views, char = make_synthetic(SyntheticConfig(resolution=128, supersample=2), folder, body=a_pose_body)
    return folder, views, char


@pytest.fixture(scope="session")
def inflated_body(a_pose_body):
    """A "sculpted" mesh stand-in: the body inflated by 5 mm (another mesh than the body), with its
    closest body points and transferred part labels: (body, vertices, closest points, labels)."""
    from backend.avatar.rig.part_labels import closest_body_points, transfer_part_labels
    from backend.mesh.normals import vertex_normals

    body = a_pose_body
    v = body.vertices + 0.005 * vertex_normals(body.vertices, body.faces)
    cp = closest_body_points(body, v)
    return body, v, cp, transfer_part_labels(body, cp)
