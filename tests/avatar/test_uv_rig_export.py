"""UV layout, texture fill, rig and exporters on the stand-in body mesh (no optimisation)."""

import numpy as np
import pytest

from backend.avatar.io.gltf import SkinnedMesh, read_glb_summary, write_glb
from backend.avatar.io.obj import write_obj
from backend.avatar.io.split_vertices import split_by_uv
from backend.avatar.rig.part_labels import closest_body_points, transfer_part_labels
from backend.avatar.rig.skinning import RigConfig, pose_vertices, rig_mesh
from backend.avatar.texture.uv_layout import UVConfig, body_frame, component_axes, make_uv_layout
from backend.avatar.texture.uv_raster import coverage_count


@pytest.fixture(scope="module")
def layout(inflated_body):
    body, v, cp, labels = inflated_body
    atlas = make_uv_layout(v, body.faces, labels, body, UVConfig())
    return body, v, cp, labels, atlas


def test_part_labels_transfer_to_the_same_parts(layout):
    body, _, _, labels, _ = layout
    assert (labels == body.part_labels).mean() > 0.97


def test_atlas_covers_every_face_without_overlap(layout):
    _, _, _, _, atlas = layout
    assert atlas.uv.shape == (len(layout[0].faces), 3, 2)
    assert (atlas.chart >= 0).all()
    assert atlas.uv.min() >= 0 and atlas.uv.max() <= 1
    count = coverage_count(atlas.uv, 1024)
    covered = (count > 0).sum()
    assert covered > 0.3 * 1024 * 1024  # charts are packed, not a few specks
    assert (count > 1).sum() <= 1e-4 * covered  # no overlapping charts (rasterised at 1024)
    for name in ("head", "torso", "arm_l", "arm_r", "leg_l", "leg_r"):
        assert name in atlas.chart_names


def _seam_edges(faces: np.ndarray, uv: np.ndarray, in_chart: np.ndarray) -> np.ndarray:
    """Mesh edges between two faces of the same chart whose shared corners have different UVs."""
    idx = np.nonzero(in_chart)[0]
    seams = []
    by_edge: dict[tuple[int, int], tuple[int, int]] = {}
    for fi in idx:
        for k in range(3):
            a, b = int(faces[fi, k]), int(faces[fi, (k + 1) % 3])
            key = (min(a, b), max(a, b))
            if key in by_edge:
                fj, _ = by_edge[key]
                uv_i = {int(faces[fi, m]): uv[fi, m] for m in range(3)}
                uv_j = {int(faces[fj, m]): uv[fj, m] for m in range(3)}
                if not all(np.allclose(uv_i[x], uv_j[x], atol=1e-7) for x in key):
                    seams.append(key)
            else:
                by_edge[key] = (fi, k)
    return np.asarray(seams)


def test_seams_are_on_the_back(layout):
    body, v, _, _, atlas = layout
    _, fwd = body_frame(body)
    axes = component_axes(body)
    for name in ("torso", "leg_l", "leg_r", "arm_l"):
        chart = atlas.chart_names.index(name)
        seams = _seam_edges(body.faces, atlas.uv, atlas.chart == chart)
        assert len(seams) > 5, name  # a closed cylinder must be cut somewhere
        mid = v[seams].mean(1) - axes[name].origin
        # The cut runs behind the bone axis (the body's back).
        assert (mid @ fwd < 0).mean() > 0.9, name


def test_rig_weights(layout):
    body, v, cp, labels, _ = layout
    rig = rig_mesh(body, body.faces, cp, labels, RigConfig())
    w = rig.weights
    assert w.shape == (len(v), 55)
    assert np.allclose(w.sum(1), 1, atol=1e-6) and w.min() >= 0
    names = body.joint_names
    # Every influence is one of the bones of the vertex's own part (as measured on the body).
    from backend.avatar.rig.skinning import allowed_joints

    allowed = allowed_joints(body, RigConfig().allowed_threshold)[labels]
    assert w[~allowed].max() == 0
    left_leg = np.isin(labels, [body.part_names.index(p) for p in ("lower_leg_l", "foot_l")])
    right_joints = [names.index(n) for n in ("right_hip", "right_knee", "right_ankle", "right_foot")]
    assert w[left_leg][:, right_joints].max() < 1e-9  # no bleeding between legs
    left_arm = np.isin(labels, [body.part_names.index(p) for p in ("lower_arm_l", "hand_l")])
    assert w[left_arm][:, names.index("right_elbow")].max() < 1e-9
    assert np.allclose(rig.joints, body.joints)
    # Posing with the body's own transforms moves the new mesh like the body.
    moved = pose_vertices(v, w, np.tile(np.eye(4), (55, 1, 1)))
    assert np.allclose(moved, v)


def test_glb_and_obj(layout, tmp_path):
    body, v, cp, labels, atlas = layout
    split = split_by_uv(v, body.faces, atlas.uv)
    rig = rig_mesh(body, body.faces, cp, labels, RigConfig())
    tex = np.zeros((64, 64, 3), np.uint8)
    mesh = SkinnedMesh(
        vertices=split.vertices,
        faces=split.faces,
        uvs=split.uvs,
        normals=None,
        weights=rig.weights[split.source],
        joints=rig.joints,
        parents=rig.parents,
        joint_names=rig.joint_names,
        texture=tex,
    )
    path = write_glb(tmp_path / "a.glb", mesh)
    s = read_glb_summary(path)
    # SMPL-X-derived weights have 5+ influences around the shoulders and hands: two glTF weight sets.
    expected = {"vertices": len(split.vertices), "faces": len(split.faces), "joints": 55, "images": 1}
    assert s == {**expected, "weight_sets": 2}
    assert read_glb_summary(write_glb(tmp_path / "a4.glb", mesh, max_influences=4))["weight_sets"] == 1
    files = write_obj(tmp_path / "a.obj", split.vertices, split.faces, split.uvs, tex)
    text = files["obj"].read_text()
    assert text.count("\nv ") == len(split.vertices) and text.count("\nf ") == len(split.faces)
    assert "map_Kd a.png" in files["mtl"].read_text() and files["png"].exists()


def test_xatlas_alternative(a_pose_body):
    body = a_pose_body
    from backend.avatar.texture.uv_unwrap import UnwrapConfig

    cp = closest_body_points(body, body.vertices)
    labels = transfer_part_labels(body, cp)
    atlas = make_uv_layout(
        body.vertices, body.faces, labels, body, UVConfig(unwrap=UnwrapConfig(method="xatlas"))
    )
    count = coverage_count(atlas.uv, 512)
    assert (atlas.chart >= 0).all() and (count > 1).sum() <= 1e-3 * (count > 0).sum()
