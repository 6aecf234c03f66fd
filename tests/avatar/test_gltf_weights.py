"""Skin weights in the avatar glb: up to 8 influences per vertex in two glTF sets (JOINTS_0/WEIGHTS_0,
JOINTS_1/WEIGHTS_1), a single set when no vertex needs more, and ``max_influences=4`` as before.

Every check reads the written file back with pygltflib and decodes the accessors itself, so it tests
what an importer sees, not the exporter's intermediate arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib as g
import pytest

from backend.avatar.io.gltf import SkinnedMesh, read_glb_summary, write_glb

N_JOINTS = 12


def _weights(counts: list[int], n_joints: int = N_JOINTS, seed: int = 0) -> np.ndarray:
    """(N, n_joints) rows summing to 1; row i has ``counts[i]`` distinct non-zero weights on random joints."""
    rng = np.random.default_rng(seed)
    w = np.zeros((len(counts), n_joints))
    for i, c in enumerate(counts):
        joints = rng.choice(n_joints, c, replace=False)
        # Distinct values (no ties), so "the largest 8" is one well-defined set.
        w[i, joints] = rng.permutation(np.arange(1, c + 1)) + rng.random(c) * 0.5
    return w / w.sum(1, keepdims=True)


def _mesh(weights: np.ndarray) -> SkinnedMesh:
    n, n_joints = weights.shape
    rng = np.random.default_rng(1)
    return SkinnedMesh(
        vertices=rng.random((n, 3)),
        faces=np.arange(n - n % 3).reshape(-1, 3),
        uvs=rng.random((n, 2)),
        normals=None,
        weights=weights,
        joints=rng.random((n_joints, 3)),
        parents=np.arange(n_joints) - 1,  # a chain: joint j hangs on j-1
        joint_names=None,
        texture=np.zeros((4, 4, 3), np.uint8),
    )


def _accessor(gltf: g.GLTF2, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    dtype = {g.UNSIGNED_BYTE: np.uint8, g.UNSIGNED_SHORT: np.uint16, g.FLOAT: np.float32}[acc.componentType]
    assert acc.type == g.VEC4
    view = gltf.bufferViews[acc.bufferView]
    start = view.byteOffset + (acc.byteOffset or 0)
    return np.frombuffer(gltf.binary_blob(), dtype, acc.count * 4, start).reshape(acc.count, 4)


def _read_skin(path: Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(joints (N,4s), weights (N,4s), joint component types) over all the glb's JOINTS_n/WEIGHTS_n."""
    gltf = g.GLTF2().load_binary(str(path))
    attrs = gltf.meshes[0].primitives[0].attributes
    joints, weights, ctypes = [], [], []
    s = 0
    while getattr(attrs, f"JOINTS_{s}", None) is not None:
        ji, wi = getattr(attrs, f"JOINTS_{s}"), getattr(attrs, f"WEIGHTS_{s}")
        assert gltf.accessors[wi].componentType == g.FLOAT
        ctypes.append(gltf.accessors[ji].componentType)
        joints.append(_accessor(gltf, ji).astype(np.int64))
        weights.append(_accessor(gltf, wi).astype(np.float64))
        s += 1
    assert getattr(attrs, f"WEIGHTS_{s}", None) is None  # JOINTS_n and WEIGHTS_n come in pairs
    return np.concatenate(joints, 1), np.concatenate(weights, 1), ctypes


def _largest(weights: np.ndarray, k: int) -> tuple[list[list[int]], list[list[float]]]:
    """Per row: the joints of the k largest non-zero weights, largest first, and those renormalised."""
    joints, values = [], []
    for row in weights:
        order = [int(j) for j in np.argsort(-row) if row[j] > 0][:k]
        kept = row[order]
        joints.append(order)
        values.append((kept / kept.sum()).tolist())
    return joints, values


def _check_skin(joints: np.ndarray, weights: np.ndarray, full: np.ndarray, k: int) -> None:
    """The decoded sets hold ``full``'s k largest influences, renormalised, sorted, unused slots 0/0."""
    assert joints.shape == weights.shape == (len(full), k)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    assert (np.diff(weights, axis=1) <= 0).all()  # largest first, across both sets
    exp_joints, exp_values = _largest(full, k)
    for i, (ej, ev) in enumerate(zip(exp_joints, exp_values, strict=True)):
        n = len(ej)
        assert joints[i, :n].tolist() == ej, i
        np.testing.assert_allclose(weights[i, :n], ev, atol=1e-6)
        assert (weights[i, n:] == 0).all() and (joints[i, n:] == 0).all(), i  # glTF: unused -> 0


def test_six_and_more_influences_round_trip_in_two_sets(tmp_path):
    # 6 influences (the case the change is for), 10 (truncated to 8), 5, and 1.
    full = _weights([6] * 20 + [10] * 10 + [5] * 3 + [1] * 3)
    path = write_glb(tmp_path / "w8.glb", _mesh(full))
    assert read_glb_summary(path)["weight_sets"] == 2
    joints, weights, ctypes = _read_skin(path)
    assert ctypes == [g.UNSIGNED_BYTE, g.UNSIGNED_BYTE]
    _check_skin(joints, weights, full, 8)
    assert (weights[:20, 5] > 0).all() and (weights[:20, 6:] == 0).all()  # all 6 kept, no more
    assert (weights[20:30, 7] > 0).all()  # the 10-influence rows fill both sets


def test_at_most_four_influences_keep_one_set(tmp_path):
    full = _weights([4] * 10 + [3] * 5 + [1] * 5)
    path = write_glb(tmp_path / "w4.glb", _mesh(full))
    assert read_glb_summary(path)["weight_sets"] == 1
    joints, weights, _ = _read_skin(path)
    _check_skin(joints, weights, full, 4)


def test_max_influences_4_truncates_to_one_set(tmp_path):
    full = _weights([6] * 20 + [10] * 5)
    path = write_glb(tmp_path / "t4.glb", _mesh(full), max_influences=4)
    assert read_glb_summary(path)["weight_sets"] == 1
    joints, weights, _ = _read_skin(path)
    _check_skin(joints, weights, full, 4)


@pytest.mark.parametrize("k", [0, 3, 5, 6, 12, 16])
def test_max_influences_must_be_4_or_8(tmp_path, k):
    with pytest.raises(ValueError, match="max_influences must be one of"):
        write_glb(tmp_path / "bad.glb", _mesh(_weights([6] * 3)), max_influences=k)


def test_joint_indices_past_255_are_unsigned_short(tmp_path):
    full = _weights([6] * 30, n_joints=300, seed=2)
    assert full[:, 256:].any()  # some influences really need more than a byte
    joints, weights, ctypes = _read_skin(write_glb(tmp_path / "j300.glb", _mesh(full)))
    assert ctypes == [g.UNSIGNED_SHORT, g.UNSIGNED_SHORT]
    _check_skin(joints, weights, full, 8)


# --- the body avatar, posed: what dropping influences does to the deformation -------------------


def _dense(joints: np.ndarray, weights: np.ndarray, n_joints: int) -> np.ndarray:
    out = np.zeros((len(joints), n_joints))
    for c in range(joints.shape[1]):  # unused slots add 0 to joint 0
        np.add.at(out, (np.arange(len(joints)), joints[:, c]), weights[:, c])
    return out


def test_eight_influences_pose_like_the_full_weights(a_pose_body, tmp_path):
    """Bent left elbow, raised right arm and a turned head on the body avatar: the 8-influence glb
    skins within a few micrometres of the full weights where the 4-influence one is millimetres off
    (the figures in docs/avatar.md)."""
    from backend.avatar.body_avatar import body_avatar
    from backend.avatar.body_mesh import body_from_params
    from backend.avatar.eval.synthetic import SHAPE_PRESETS, a_pose_params
    from backend.avatar.rig.skinning import pose_vertices
    from backend.body.joints import JOINT_INDEX

    facts = body_avatar(a_pose_body, tmp_path, texture_size=64)
    arrays = np.load(tmp_path / "avatar_arrays.npz")
    rest, full = arrays["vertices"], arrays["weights"]
    n_joints = full.shape[1]
    # The same skin truncated to 4 (only the weights matter here: one face, no texture to speak of).
    mesh4 = SkinnedMesh(
        vertices=rest,
        faces=np.array([[0, 1, 2]]),
        uvs=np.zeros((len(rest), 2)),
        normals=None,
        weights=full,
        joints=arrays["joints_rest"],
        parents=np.asarray(facts["parents"]),
        joint_names=None,
        texture=np.zeros((4, 4, 3), np.uint8),
    )
    skins = {
        8: _dense(*_read_skin(tmp_path / "avatar.glb")[:2], n_joints),
        4: _dense(*_read_skin(write_glb(tmp_path / "t4.glb", mesh4, max_influences=4))[:2], n_joints),
    }

    params = a_pose_params(SHAPE_PRESETS["average"], 0.0)
    pose = np.array(params["body_pose"])
    for joint, axis, deg in [("left_elbow", 1, -90), ("right_shoulder", 2, -60), ("neck", 1, 30)]:
        pose[(JOINT_INDEX[joint] - 1) * 3 + axis] = np.radians(deg)
    posed_body = body_from_params({**params, "body_pose": pose.tolist()})
    assert np.allclose(posed_body.rest_joints, arrays["joints_rest"], atol=1e-6)  # same bind skeleton
    transforms = posed_body.joint_transforms
    reference = pose_vertices(rest, full, transforms)
    err = {
        k: np.linalg.norm(pose_vertices(rest, w, transforms) - reference, axis=1) for k, w in skins.items()
    }
    assert err[4].max() > 2e-3  # 4 influences: millimetres where more bones meet
    assert err[8].max() < 0.5e-3 and err[8].mean() < 0.05 * err[4].mean()
