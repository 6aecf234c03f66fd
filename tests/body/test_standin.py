"""The stand-in body: file format, smplx compatibility, anatomy of its data."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from backend.body.joints import EXTRA_VERTEX_IDS, JOINT_INDEX, JOINT_NAMES, PARENTS
from backend.body.skinning import vertex_adjacency
from backend.body.standin import NUM_BODY_VERTICES, ensure_standin, model_file

EXPECTED_SHAPES = {
    "v_template": (10475, 3),
    "f": (20908, 3),
    "J_regressor": (55, 10475),
    "weights": (10475, 55),
    "kintree_table": (2, 55),
    "shapedirs": (10475, 3, 400),
    "posedirs": (10475, 3, 486),
    "hands_componentsl": (45, 45),
    "hands_componentsr": (45, 45),
    "hands_meanl": (45,),
    "hands_meanr": (45,),
    "lmk_faces_idx": (51,),
    "lmk_bary_coords": (51, 3),
    "dynamic_lmk_faces_idx": (79, 17),
    "dynamic_lmk_bary_coords": (79, 17, 3),
}


def test_npz_has_every_smplx_array_with_the_real_shapes(standin_npz: dict[str, np.ndarray]) -> None:
    for key, shape in EXPECTED_SHAPES.items():
        assert standin_npz[key].shape == shape, key
    assert standin_npz["f"].max() == 10474 and standin_npz["f"].min() == 0
    assert len(np.unique(standin_npz["f"])) == 10475  # every vertex is used


def test_all_genders_are_cached_in_the_smplx_folder_layout(standin_root: Path) -> None:
    for gender in ("neutral", "male", "female"):
        path = model_file(gender, standin_root)
        assert path.exists() and path.parent.name == "smplx"
        assert ensure_standin(gender, standin_root) == path  # cached, not rebuilt


def test_generation_is_deterministic(standin_npz: dict[str, np.ndarray], tmp_path: Path) -> None:
    with np.load(ensure_standin("neutral", tmp_path)) as again:
        for key in ("v_template", "f", "weights", "J_regressor", "shapedirs"):
            np.testing.assert_array_equal(again[key], standin_npz[key], err_msg=key)


@pytest.mark.parametrize("use_face_contour", [False, True])
def test_smplx_create_loads_it_unchanged_and_poses_it(standin_root: Path, use_face_contour: bool) -> None:
    batch = 3
    model = smplx.create(
        str(standin_root / "body"),
        model_type="smplx",
        gender="neutral",
        ext="npz",
        use_pca=False,
        num_betas=10,
        num_expression_coeffs=10,
        use_face_contour=use_face_contour,
        batch_size=batch,
    )
    g = torch.Generator().manual_seed(0)
    out = model(
        betas=torch.randn(batch, 10, generator=g),
        expression=torch.randn(batch, 10, generator=g),
        global_orient=0.5 * torch.randn(batch, 3, generator=g),
        body_pose=0.4 * torch.randn(batch, 63, generator=g),
        left_hand_pose=0.3 * torch.randn(batch, 45, generator=g),
        jaw_pose=0.2 * torch.randn(batch, 3, generator=g),
        right_hand_pose=0.3 * torch.randn(batch, 45, generator=g),
        transl=torch.randn(batch, 3, generator=g),
    )
    assert out.vertices.shape == (batch, 10475, 3)
    assert out.joints.shape == (batch, 55 + 21 + 51 + (17 if use_face_contour else 0), 3)
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.joints).all()
    # a random pose really moves the body
    rest = model(betas=torch.zeros(batch, 10)).vertices
    assert (out.vertices - rest).abs().max() > 0.1


def test_smplx_loads_it_by_file_path_with_pca_hands(standin_root: Path) -> None:
    model = smplx.create(
        str(model_file("female", standin_root)), model_type="smplx", use_pca=True, num_pca_comps=6
    )
    out = model(left_hand_pose=torch.ones(1, 6))
    assert torch.isfinite(out.vertices).all()


def test_rest_pose_matches_smplx_frame_and_proportions(standin_npz: dict[str, np.ndarray]) -> None:
    v, joints = standin_npz["v_template"], standin_npz["J_regressor"] @ standin_npz["v_template"]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.65 < height < 1.8
    assert -1.2 < v[:, 1].min() < -1.1  # soles
    assert abs(joints[JOINT_INDEX["pelvis"], 1]) < 0.4 and abs(joints[JOINT_INDEX["pelvis"], 0]) < 1e-3
    # T-pose: arms horizontal, fingertips far out on both sides
    assert v[:, 0].max() > 0.8 and v[:, 0].min() < -0.8
    wrist, shoulder = joints[JOINT_INDEX["left_wrist"]], joints[JOINT_INDEX["left_shoulder"]]
    assert abs(wrist[1] - shoulder[1]) < 0.1 and wrist[0] > shoulder[0] + 0.4


def test_kintree_is_smplx(standin_npz: dict[str, np.ndarray]) -> None:
    table = standin_npz["kintree_table"]
    assert list(table[0, 1:]) == list(PARENTS[1:]) and list(table[1]) == list(range(55))
    assert JOINT_NAMES[PARENTS[JOINT_INDEX["left_elbow"]]] == "left_shoulder"
    assert JOINT_NAMES[PARENTS[JOINT_INDEX["right_thumb1"]]] == "right_wrist"
    assert JOINT_NAMES[PARENTS[JOINT_INDEX["jaw"]]] == "head"


def test_body_is_closed_and_joints_are_inside_it(standin_npz: dict[str, np.ndarray], winding_numbers) -> None:
    v, f = standin_npz["v_template"], standin_npz["f"].astype(np.int64)
    body_faces = f[(f < NUM_BODY_VERTICES).all(axis=1)]
    assert len(body_faces) == 2 * NUM_BODY_VERTICES - 4  # closed genus-0 body
    joints = standin_npz["J_regressor"] @ v
    assert (joints >= v.min(0)).all() and (joints <= v.max(0)).all()
    inside = winding_numbers(v, body_faces, joints)
    assert np.all(inside > 0.5), [JOINT_NAMES[i] for i in np.nonzero(inside <= 0.5)[0]]


def test_regressor_rows_are_convex_combinations(standin_npz: dict[str, np.ndarray]) -> None:
    reg = standin_npz["J_regressor"]
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-6)
    assert reg.min() >= 0.0


def test_skinning_weights_are_normalised_sparse_and_smooth(standin_npz: dict[str, np.ndarray]) -> None:
    w, f = standin_npz["weights"], standin_npz["f"].astype(np.int64)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert w.min() >= 0 and (w > 0).sum(axis=1).max() <= 4
    adjacency = vertex_adjacency(f, len(w)).tocoo()
    jumps = np.abs(w[adjacency.row] - w[adjacency.col]).sum(axis=1)
    assert np.median(jumps) < 0.12  # most neighbouring vertices carry nearly the same weights


@pytest.mark.parametrize(
    ("child", "axis", "sign", "lateral"),
    [
        ("left_elbow", 0, 1.0, (1, 2)),
        ("right_elbow", 0, -1.0, (1, 2)),
        ("left_knee", 1, -1.0, (0, 2)),
        ("right_shoulder", 0, -1.0, (1, 2)),
    ],
)
def test_weights_blend_smoothly_across_a_joint(
    standin_npz: dict[str, np.ndarray], child: str, axis: int, sign: float, lateral: tuple[int, int]
) -> None:
    """Along the limb, the child bone's weight rises from ~0 to ~1 through in-between values."""
    v, w = standin_npz["v_template"], standin_npz["weights"]
    joint = standin_npz["J_regressor"][JOINT_INDEX[child]] @ v
    parent = PARENTS[JOINT_INDEX[child]]
    near_axis = np.linalg.norm(v[:, lateral] - joint[list(lateral)], axis=1) < 0.1
    along = sign * (v[:, axis] - joint[axis])
    mine = w[:, JOINT_INDEX[child]] + sum(w[:, c] for c, p in enumerate(PARENTS) if p == JOINT_INDEX[child])
    bins = np.arange(-0.1, 0.1001, 0.01)
    profile = []
    on_limb = near_axis & (w[:, [parent, JOINT_INDEX[child]]].sum(axis=1) > 0.5)
    for lo, hi in itertools.pairwise(bins):
        sel = on_limb & (along >= lo) & (along < hi)
        if sel.any():
            profile.append(float(mine[sel].mean()))
    profile_arr = np.asarray(profile)
    assert profile_arr[0] < 0.1 and profile_arr[-1] > 0.9, profile
    assert np.all(np.diff(profile_arr) > -0.1), profile  # monotone up to noise
    assert np.abs(np.diff(profile_arr)).max() < 0.45, profile  # no step: a blend over several cm
    assert ((profile_arr > 0.15) & (profile_arr < 0.85)).sum() >= 2, profile


@pytest.mark.parametrize(
    ("point", "joint"),
    [
        ((0.58, 0.18, -0.025), "left_elbow"),  # mid forearm
        ((-0.31, 0.19, -0.02), "right_shoulder"),  # mid upper arm
        ((0.1, -0.52, 0.0), "left_hip"),  # mid thigh
        ((-0.105, -0.9, 0.0), "right_knee"),  # mid shin
        ((0.0, 0.53, 0.0), "head"),  # top of the head
        ((0.0, 0.0, 0.1), "spine2"),  # front of the belly
    ],
)
def test_weights_are_dominated_by_the_right_bone(
    standin_npz: dict[str, np.ndarray], point: tuple[float, float, float], joint: str
) -> None:
    v, w = standin_npz["v_template"], standin_npz["weights"]
    near = np.argsort(np.linalg.norm(v - np.asarray(point), axis=1))[:10]
    assert (w[near].argmax(axis=1) == JOINT_INDEX[joint]).mean() >= 0.8


def test_keypoint_vertices_are_where_their_names_say(standin_npz: dict[str, np.ndarray]) -> None:
    v, w = standin_npz["v_template"], standin_npz["weights"]
    at = {name: v[i] for name, i in EXTRA_VERTEX_IDS.items()}
    head = w[:, [JOINT_INDEX["head"], JOINT_INDEX["jaw"]]].sum(axis=1) > 0.5
    head_v = v[head]
    assert at["nose"][2] >= head_v[:, 2].max() - 1e-9  # front-most point of the head
    assert abs(at["nose"][0]) < 0.01
    # SMPL-X's left is +x
    for left, right in (
        ("leye", "reye"),
        ("lear", "rear"),
        ("LBigToe", "RBigToe"),
        ("LHeel", "RHeel"),
        ("lthumb", "rthumb"),
        ("lpinky", "rpinky"),
    ):
        assert at[left][0] > 0 > at[right][0], (left, right)
    assert at["leye"][1] > at["nose"][1] and at["leye"][2] > 0.05  # eyes above the nose, on the face
    assert at["lear"][0] >= head_v[:, 0].max() - 0.01  # ears are the head's sides
    assert at["lear"][2] < at["leye"][2] - 0.05
    for prefix, sign in (("l", 1.0), ("r", -1.0)):
        tips = {n: at[prefix + n] for n in ("thumb", "index", "middle", "ring", "pinky")}
        assert tips["middle"][0] * sign >= max(t[0] * sign for t in tips.values()) - 1e-9
        assert tips["thumb"][2] > tips["index"][2] > tips["middle"][2] > tips["ring"][2] > tips["pinky"][2]
        assert abs(tips["middle"][0]) > 0.85
    for side, sign in (("L", 1.0), ("R", -1.0)):
        big, small, heel = at[side + "BigToe"], at[side + "SmallToe"], at[side + "Heel"]
        assert abs(big[0]) < abs(small[0])  # big toe is on the inside
        assert big[2] > 0.12 and small[2] > 0.1 and heel[2] < -0.05
        assert max(big[1], small[1], heel[1]) < v[:, 1].min() + 0.04  # on the sole
        assert np.sign(big[0]) == sign


def test_eyes_are_separate_caps_on_the_eye_joints(standin_npz: dict[str, np.ndarray]) -> None:
    w, v = standin_npz["weights"], standin_npz["v_template"]
    left = slice(NUM_BODY_VERTICES, NUM_BODY_VERTICES + 546)
    assert (w[left, JOINT_INDEX["left_eye_smplhf"]] == 1.0).all()
    assert (v[left, 0] > 0).all() and (v[NUM_BODY_VERTICES + 546 :, 0] < 0).all()


def test_face_landmarks_lie_on_the_face(standin_npz: dict[str, np.ndarray]) -> None:
    v, f = standin_npz["v_template"], standin_npz["f"].astype(np.int64)
    lmk = np.einsum("lk,lkj->lj", standin_npz["lmk_bary_coords"], v[f[standin_npz["lmk_faces_idx"]]])
    assert (lmk[:, 2] > 0.06).all() and (lmk[:, 1] > 0.33).all() and (lmk[:, 1] < 0.47).all()
    assert lmk[:5, 0].max() < 0 < lmk[5:10, 0].min()  # right brow then left brow
    np.testing.assert_allclose(standin_npz["lmk_bary_coords"].sum(axis=1), 1.0, atol=1e-6)


def test_hand_pca_basis_is_orthonormal(standin_npz: dict[str, np.ndarray]) -> None:
    for side in "lr":
        basis = standin_npz["hands_components" + side]
        np.testing.assert_allclose(basis @ basis.T, np.eye(45), atol=1e-8)


def test_pose_correctives_are_joint_bulges_only(standin_npz: dict[str, np.ndarray]) -> None:
    posedirs = standin_npz["posedirs"]
    used = np.nonzero(np.abs(posedirs).reshape(-1, 486).max(axis=0))[0]
    assert set(used % 9) == {0, 4, 8}  # only the diagonal of R - I: 1 - cos(angle), any axis
    assert not posedirs[NUM_BODY_VERTICES:].any()  # eyeballs stay rigid
    jaw = JOINT_INDEX["jaw"] - 1
    assert not posedirs[:, :, 9 * jaw : 9 * jaw + 9].any()


def test_outdated_or_broken_cache_files_are_not_trusted(tmp_path: Path) -> None:
    from backend.body.standin import STANDIN_VERSION, _is_current

    old = tmp_path / "old.npz"
    np.savez(old, standin_version=np.array(STANDIN_VERSION - 1))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    current = tmp_path / "current.npz"
    np.savez(current, standin_version=np.array(STANDIN_VERSION))
    assert not _is_current(old) and not _is_current(broken) and not _is_current(tmp_path / "none.npz")
    assert _is_current(current)


def test_unknown_gender_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gender"):
        ensure_standin("robot", tmp_path)


def test_required_part_names_exist() -> None:
    from backend.body.joints import PART_NAMES

    limbs = ("upper_arm", "lower_arm", "hand", "upper_leg", "lower_leg", "foot")
    required = {"head", "torso"} | {f"{limb}_{side}" for limb in limbs for side in "lr"}
    assert required <= set(PART_NAMES)


def test_face_contour_follows_head_yaw(standin_npz: dict[str, np.ndarray], standin_root: Path) -> None:
    v, f = standin_npz["v_template"], standin_npz["f"].astype(np.int64)

    def contour(b: int) -> np.ndarray:
        idx, bary = standin_npz["dynamic_lmk_faces_idx"][b], standin_npz["dynamic_lmk_bary_coords"][b]
        return np.einsum("lk,lkj->lj", bary, v[f[idx]])

    front = contour(0)
    np.testing.assert_allclose(front[:, 0], -front[::-1, 0], atol=0.006)  # symmetric when frontal
    assert front[0, 0] < 0 < front[-1, 0]  # from the right ear (-x) to the left ear (+x)
    turned_left = contour(39 + 30)  # bin of a head turned 30 degrees towards its left (+x)
    assert turned_left[-1, 2] > front[-1, 2] + 0.02  # the far (left) side slides to the silhouette
    np.testing.assert_allclose(turned_left[0], front[0], atol=1e-9)  # the near side stays
    model = smplx.create(str(standin_root / "body"), model_type="smplx", use_face_contour=True)
    neck_yaw = torch.zeros(1, 63)
    neck_yaw[0, 3 * (JOINT_INDEX["neck"] - 1) + 1] = np.radians(30.0)
    rest, turned = model().joints[0, 127:], model(body_pose=neck_yaw).joints[0, 127:]
    assert (rest - turned).abs().max() > 0.02


def test_triangles_are_not_degenerate(standin_npz: dict[str, np.ndarray]) -> None:
    v, f = standin_npz["v_template"], standin_npz["f"].astype(np.int64)
    a, b, c = (v[f[:, k]] for k in range(3))
    edges = np.stack(
        [np.linalg.norm(b - a, axis=1), np.linalg.norm(c - b, axis=1), np.linalg.norm(a - c, axis=1)]
    )
    assert edges.min() > 1e-4  # no collapsed edges (0.1 mm)
    area2 = np.linalg.norm(np.cross(b - a, c - a), axis=1)
    # smallest angle via 2 * area = |e1| |e2| sin(angle) at each corner
    sin_min = area2 / np.stack([edges[0] * edges[2], edges[0] * edges[1], edges[1] * edges[2]]).max(axis=0)
    assert np.degrees(np.arcsin(np.clip(sin_min, 0, 1))).min() > 1.0
