"""The rigged avatar is brought to SMPL-X's zero pose (T-pose) so SMPL-X pose vectors drive it.

The A-posed stand-in body (and a 5 mm inflated copy of it, a "sculpted" mesh different from the
body) is rigged, un-posed with inverse LBS, and checked: re-posing with the views' transforms gives
the posed mesh back, the arms are horizontal in the bind pose, and the pipeline's files and arrays
carry that bind pose.
"""

from __future__ import annotations

import numpy as np
import pygltflib as g
import pytest

from backend.avatar.rig.part_labels import closest_body_points, transfer_part_labels
from backend.avatar.rig.skinning import RigConfig, canonical_pose, pose_vertices, rig_mesh, unpose_vertices


@pytest.fixture(scope="module")
def rigged(inflated_body):
    body, v, cp, labels = inflated_body
    rig = rig_mesh(body, body.faces, cp, labels, RigConfig())
    return body, v, cp, labels, rig, canonical_pose(body, v, rig.weights, cp)


def test_body_fields_reproduce_the_posed_body(a_pose_body):
    """posed = LBS(rest + pose correctives) with the body's own weights: what un-posing inverts."""
    body = a_pose_body
    assert body.rest_vertices is not None and body.pose_offsets is not None
    assert body.joint_transforms is not None
    posed = pose_vertices(body.rest_vertices + body.pose_offsets, body.weights, body.joint_transforms)
    assert np.abs(posed - body.vertices).max() < 1e-5
    # The stand-in has pose correctives and the A-pose bends the shoulders: they are not zero.
    assert 1e-4 < np.linalg.norm(body.pose_offsets, axis=1).max() < 0.01


def test_unposing_the_body_with_its_own_weights_gives_its_rest_mesh(a_pose_body):
    body = a_pose_body
    cp = closest_body_points(body, body.vertices)
    labels = transfer_part_labels(body, cp)
    # No smoothing: the transferred weights are the body's, so un-posing must be exact.
    rig = rig_mesh(body, body.faces, cp, labels, RigConfig(smooth_iterations=0))
    canon = canonical_pose(body, body.vertices, rig.weights, cp)
    assert np.abs(canon.vertices - body.rest_vertices).max() < 1e-4
    assert np.allclose(canon.joints, body.rest_joints)


def test_reposing_reproduces_the_sculpted_vertices(rigged):
    _, v, _, _, rig, canon = rigged
    assert np.allclose(rig.weights.sum(1), 1, atol=1e-6) and rig.weights.min() >= 0
    # With the correctives added back, LBS inverts un-posing exactly.
    exact = pose_vertices(canon.vertices + canon.pose_offsets, rig.weights, canon.transforms)
    assert np.abs(exact - v).max() < 1e-6
    # Plain LBS (what glTF / Blender do) differs only by the correctives: a few millimetres.
    plain = pose_vertices(canon.vertices, rig.weights, canon.transforms)
    err = np.linalg.norm(plain - v, axis=1)
    assert err.max() < 0.005 and err.mean() < 5e-4
    # unpose_vertices is the inverse of pose_vertices for any weights.
    assert np.abs(unpose_vertices(plain, rig.weights, canon.transforms) - canon.vertices).max() < 1e-6


def test_bind_pose_is_the_t_pose(rigged):
    body, _, _, labels, _, canon = rigged
    names = body.joint_names
    for side in ("left", "right"):
        shoulder, wrist = names.index(f"{side}_shoulder"), names.index(f"{side}_wrist")
        # In the views the arms hang (A-pose): the wrist is far below the shoulder ...
        assert body.joints[shoulder, 1] - body.joints[wrist, 1] > 0.2
        # ... in the bind pose it is at shoulder height, like the body's rest joints.
        assert abs(canon.joints[wrist, 1] - canon.joints[shoulder, 1]) < 0.03
        # The hand's vertices near the wrist follow: at the wrist's height, beyond it sideways.
        hand = labels == body.part_names.index(f"hand_{side[0]}")
        near = hand & (np.linalg.norm(canon.vertices - canon.joints[wrist], axis=1) < 0.06)
        assert near.sum() > 20
        assert np.abs(canon.vertices[near, 1] - canon.joints[shoulder, 1]).max() < 0.08
        outward = np.sign(canon.joints[wrist, 0])
        assert (outward * canon.vertices[near, 0] > outward * canon.joints[shoulder, 0] + 0.3).all()
    assert np.allclose(canon.joints, body.rest_joints)
    # The un-posed mesh lies on the body's rest surface, 5 mm outside it (smoothing blurs the weights
    # a little, hence the looser maximum).
    d = np.linalg.norm(canon.vertices - body.rest_vertices, axis=1)
    assert np.median(d) < 0.007 and d.max() < 0.02


def test_pipeline_exports_the_bind_pose(small_character, tmp_path):
    from backend.avatar.pipeline import build_avatar, config_from_options, result_arrays, write_outputs

    _, views, char = small_character
    cfg = config_from_options(grid=20, init_iters=25, refine_iters=3, texture_size=64, texture_iters=2)
    result = build_avatar(views, cfg, body=char.body)
    a = result_arrays(result)
    n = len(a["vertices"])
    assert a["vertices_posed"].shape == (n, 3) and a["normals_posed"].shape == (n, 3)
    assert a["pose_transforms"].shape == (55, 4, 4) and a["joints_posed"].shape == (55, 3)
    assert np.allclose(a["weights"].sum(1), 1, atol=1e-5)
    assert np.allclose(a["joints_rest"], char.body.rest_joints, atol=1e-6)
    # The posed geometry (what texturing and metrics use) is the sculpted mesh, untouched.
    assert np.allclose(result.vertices, result.mesh_vertices[result.source_vertex])
    back = pose_vertices(
        a["vertices"].astype(np.float64) + a["pose_offsets"],
        a["weights"].astype(np.float64),
        a["pose_transforms"],
    )
    assert np.abs(back - a["vertices_posed"]).max() < 1e-4
    names = result.joint_names
    wrist, shoulder = names.index("left_wrist"), names.index("left_shoulder")
    assert abs(a["joints_rest"][wrist, 1] - a["joints_rest"][shoulder, 1]) < 0.03
    assert a["joints_posed"][shoulder, 1] - a["joints_posed"][wrist, 1] > 0.2

    files = write_outputs(result, tmp_path)
    gltf = g.GLTF2().load_binary(str(files["avatar.glb"]))
    prim = gltf.meshes[0].primitives[0]
    blob = gltf.binary_blob()

    def accessor(index: int, dtype: type, width: int) -> np.ndarray:
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        start = view.byteOffset + (acc.byteOffset or 0)
        return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)

    np.testing.assert_allclose(accessor(prim.attributes.POSITION, np.float32, 3), a["vertices"], atol=1e-6)
    ibm = accessor(gltf.skins[0].inverseBindMatrices, np.float32, 16).reshape(-1, 4, 4).transpose(0, 2, 1)
    np.testing.assert_allclose(ibm[:, :3, 3], -a["joints_rest"], atol=1e-6)
    obj_first = next(line for line in files["avatar.obj"].read_text().splitlines() if line.startswith("v "))
    np.testing.assert_allclose([float(x) for x in obj_first.split()[1:4]], a["vertices"][0], atol=1e-4)
