"""BodyModel: agrees with smplx, shape directions behave, transforms and part labels are right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from backend.body.joints import JOINT_INDEX, PART_NAMES
from backend.body.model import BodyModel, BodyModelConfig, BodyParams
from backend.body.skinning import vertex_adjacency
from backend.body.standin import NUM_BODY_VERTICES, model_file


def random_params(n_frames: int, seed: int = 0) -> BodyParams:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, s: float = 0.3) -> torch.Tensor:
        return s * torch.randn(*shape, generator=g)

    return BodyParams.from_arrays(
        {
            "global_orient": r(n_frames, 3),
            "body_pose": r(n_frames, 63),
            "left_hand_pose": r(n_frames, 45),
            "right_hand_pose": r(n_frames, 45),
            "jaw_pose": r(n_frames, 3, s=0.1),
            "leye_pose": r(n_frames, 3, s=0.1),
            "reye_pose": r(n_frames, 3, s=0.1),
            "transl": r(n_frames, 3, s=1.0),
            "betas": r(10, s=1.0),
            "expression": r(10, s=1.0),
        }
    )


def test_forward_matches_smplx_exactly(body_model: BodyModel, standin_root: Path) -> None:
    n = 4
    p = random_params(n)
    out = body_model(p)
    ref = smplx.create(
        str(standin_root / "body"),
        model_type="smplx",
        use_pca=False,
        flat_hand_mean=True,
        batch_size=n,
        num_betas=10,
        num_expression_coeffs=10,
    )
    r = ref(
        betas=p.betas.expand(n, -1),
        expression=p.expression.expand(n, -1),
        global_orient=p.global_orient,
        body_pose=p.body_pose,
        left_hand_pose=p.left_hand_pose,
        right_hand_pose=p.right_hand_pose,
        jaw_pose=p.jaw_pose,
        leye_pose=p.leye_pose,
        reye_pose=p.reye_pose,
        transl=p.transl,
    )
    assert out.vertices.shape == (n, 10475, 3) and out.joints.shape == (n, 55, 3)
    assert out.transforms.shape == (n, 55, 4, 4) and out.extra_joints.shape == (n, 21, 3)
    torch.testing.assert_close(out.vertices, r.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joints, r.joints[:, :55], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.extra_joints, r.joints[:, 55:76], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.landmarks, r.joints[:, 76:127], atol=1e-5, rtol=0)


def test_chunked_forward_equals_one_pass(body_model: BodyModel) -> None:
    p = random_params(7, seed=1)
    torch.testing.assert_close(body_model(p, chunk=3).vertices, body_model(p, chunk=64).vertices)


def test_joint_transforms_move_joints_and_rigid_points(body_model: BodyModel) -> None:
    p = random_params(3, seed=2)
    out = body_model(p)
    rest = out.rest_joints
    homo = torch.cat([rest, torch.ones(55, 1)], dim=1)
    # T_j @ inv(T_rest_j) maps the rest joint onto the posed joint
    rest_t = torch.eye(4).repeat(55, 1, 1)
    rest_t[:, :3, 3] = rest
    moved = (out.transforms @ torch.linalg.inv(rest_t) @ homo[..., None])[..., :3, 0]
    torch.testing.assert_close(moved, out.joints, atol=1e-5, rtol=0)
    # the root's rotation is global_orient; rotations are proper
    from smplx.lbs import batch_rodrigues

    torch.testing.assert_close(
        out.transforms[:, 0, :3, :3], batch_rodrigues(p.global_orient), atol=1e-5, rtol=0
    )
    det = torch.linalg.det(out.transforms[..., :3, :3])
    torch.testing.assert_close(det, torch.ones_like(det), atol=1e-4, rtol=0)
    # a vertex bound only to the head follows the head's transform exactly
    w = body_model.skinning_weights
    vid = int(torch.nonzero(w[:, JOINT_INDEX["head"]] > 0.999)[0])
    v_rest = torch.cat([out.rest_vertices[vid], torch.ones(1)])
    head = JOINT_INDEX["head"]
    expected = (out.transforms[:, head] @ torch.linalg.inv(rest_t[head]) @ v_rest)[:, :3]
    torch.testing.assert_close(out.vertices[:, vid], expected, atol=1e-5, rtol=0)


def test_beta0_changes_height_monotonically_negative_is_taller(body_model: BodyModel) -> None:
    heights = []
    for b0 in np.linspace(-3, 3, 7):
        v = body_model.rest_vertices(torch.tensor([float(b0)]))
        heights.append(float(v[:, 1].max() - v[:, 1].min()))
    assert np.all(np.diff(heights) < -0.02), heights
    assert 1.65 < heights[3] < 1.8


def _width(v: torch.Tensor, y: float, band: float = 0.02, region: float = 0.25) -> float:
    sel = v[(v[:, 1] - y).abs() < band]
    sel = sel[sel[:, 0].abs() < region]
    return float(sel[:, 0].max() - sel[:, 0].min())


def test_shape_directions_do_what_their_names_say(body_model: BodyModel) -> None:
    def at(k: int, value: float) -> torch.Tensor:
        betas = torch.zeros(10)
        betas[k] = value
        return body_model.rest_vertices(betas)

    def joints(k: int, value: float) -> torch.Tensor:
        betas = torch.zeros(10)
        betas[k] = value
        return body_model.rest_joints(betas)

    waist = -0.05
    assert _width(at(1, 2.0), waist) > _width(at(1, -2.0), waist) + 0.02  # girth
    ls, rs = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]
    span = [float(joints(2, s)[ls, 0] - joints(2, s)[rs, 0]) for s in (-2.0, 2.0)]
    assert span[1] > span[0] + 0.05  # shoulder width
    hip, ankle = JOINT_INDEX["left_hip"], JOINT_INDEX["left_ankle"]
    legs = [float(joints(3, s)[hip, 1] - joints(3, s)[ankle, 1]) for s in (-2.0, 2.0)]
    assert legs[1] > legs[0] + 0.1  # leg length
    wrist = JOINT_INDEX["left_wrist"]
    arms = [float(joints(6, s)[wrist, 0] - joints(6, s)[ls, 0]) for s in (-2.0, 2.0)]
    assert arms[1] > arms[0] + 0.1  # arm length
    for k in range(10):
        assert (at(k, 1.0) - at(k, 0.0)).abs().max() > 0.005, k


def test_expressions_move_only_the_face(body_model: BodyModel) -> None:
    rest = body_model.rest_vertices()
    labels = body_model.part_labels()
    for k in range(10):
        expression = torch.zeros(10)
        expression[k] = 1.0
        moved = (body_model.rest_vertices(expression=expression) - rest).norm(dim=1)
        assert moved.max() > 0.002, k
        assert set(np.unique(labels[moved.numpy() > 1e-4])) <= {PART_NAMES.index("head")}, k


def test_gradients_flow_to_shape_and_pose(body_model: BodyModel) -> None:
    p = random_params(2, seed=3)
    p.betas.requires_grad_(True)
    p.body_pose.requires_grad_(True)
    body_model(p).vertices.square().sum().backward()
    assert p.betas.grad is not None and p.betas.grad.abs().sum() > 0
    assert p.body_pose.grad is not None and p.body_pose.grad.abs().sum() > 0


def test_part_labels_cover_every_part_and_are_coherent(body_model: BodyModel) -> None:
    labels = body_model.part_labels()
    v = body_model.rest_vertices().numpy()
    assert labels.shape == (10475,) and set(np.unique(labels)) == set(range(len(PART_NAMES)))
    adjacency = vertex_adjacency(
        body_model.faces[(body_model.faces < NUM_BODY_VERTICES).all(axis=1)], NUM_BODY_VERTICES
    )
    from scipy.sparse.csgraph import connected_components

    for k, name in enumerate(PART_NAMES):
        idx = np.nonzero(labels[:NUM_BODY_VERTICES] == k)[0]
        sub = adjacency[idx][:, idx]
        _, comp = connected_components(sub, directed=False)
        largest = np.bincount(comp).max()
        assert largest >= 0.97 * len(idx), name  # one connected patch (up to a few stray vertices)
        centre = v[idx].mean(axis=0)
        if name.endswith("_l"):
            assert centre[0] > 0.05, name
        if name.endswith("_r"):
            assert centre[0] < -0.05, name
    mean_y = {n: v[labels == k, 1].mean() for k, n in enumerate(PART_NAMES)}
    assert mean_y["head"] > mean_y["neck"] > mean_y["torso"] > mean_y["upper_leg_l"] > mean_y["lower_leg_l"]
    assert mean_y["lower_leg_r"] > mean_y["foot_r"]
    assert (
        v[labels == PART_NAMES.index("hand_l"), 0].min()
        > v[labels == PART_NAMES.index("lower_arm_l"), 0].mean()
    )


def test_licensed_model_drops_in_by_path(standin_root: Path) -> None:
    # any SMPLX_*.npz given by path is used as is (here: the female stand-in file)
    path = model_file("female", standin_root)
    model = BodyModel(BodyModelConfig(model_path=path, gender="female"))
    assert model.model_file == path
    out = model(BodyParams.zeros(2))
    assert out.vertices.shape == (2, 10475, 3)
    with pytest.raises(FileNotFoundError):
        BodyModel(BodyModelConfig(model_path=standin_root / "missing" / "SMPLX_NEUTRAL.npz"))


def test_params_from_payload_broadcast_and_validation() -> None:
    p = BodyParams.from_arrays({"body_pose": np.zeros((5, 63)), "transl": np.ones(3), "betas": np.ones(3)})
    assert p.n_frames == 5 and p.transl.shape == (5, 3) and p.betas.shape == (10,)
    assert float(p.betas[2]) == 1.0 and float(p.betas[3]) == 0.0
    with pytest.raises(ValueError, match="frames"):
        BodyParams.from_arrays({"body_pose": np.zeros((5, 63)), "global_orient": np.zeros((4, 3))})


def test_command_line_info_reports_the_stand_in(
    standin_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from backend.body.__main__ import main

    assert main(["--data-dir", str(standin_root), "--json", "info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stand_in"] is True and info["vertices"] == 10475 and info["faces"] == 20908
    assert 1.65 < info["height_m"] < 1.8 and "hand_l" in info["parts"]


def test_stand_in_is_exactly_mirror_symmetric(body_model: BodyModel) -> None:
    mirror = body_model.mirror_vertex_index()
    rest = body_model.rest_vertices().numpy().astype(np.float64)
    np.testing.assert_array_equal(mirror[mirror], np.arange(len(rest)))  # an involution
    np.testing.assert_allclose(rest[mirror] * [-1.0, 1.0, 1.0], rest, atol=1e-6)
    labels = body_model.part_labels()
    swapped = {
        n: n[:-1] + ("r" if n.endswith("l") else "l") if n[-2:] in ("_l", "_r") else n for n in PART_NAMES
    }
    mirrored = np.array([PART_NAMES.index(swapped[PART_NAMES[k]]) for k in labels[mirror]])
    assert (mirrored == labels).mean() > 0.99  # weights are symmetric too
    ids = {name: i for name, i in __import__("backend.body.joints", fromlist=["x"]).EXTRA_VERTEX_IDS.items()}
    assert mirror[ids["lthumb"]] == ids["rthumb"] and mirror[ids["LHeel"]] == ids["RHeel"]
    assert mirror[ids["nose"]] == ids["nose"]


def test_pose_correctives_keep_the_volume_of_bent_limbs(standin_root: Path) -> None:
    import trimesh

    def volume(model: BodyModel, params: BodyParams) -> float:
        v = model(params).vertices[0].detach().numpy()[:NUM_BODY_VERTICES]
        body_faces = model.faces[(model.faces < NUM_BODY_VERTICES).all(axis=1)]
        return float(trimesh.Trimesh(v, body_faces, process=False).volume)

    pose = np.zeros((1, 63))
    for name, axis, angle in (("left_knee", 0, 2.0), ("right_knee", 0, 2.0), ("left_elbow", 1, -2.0)):
        pose[0, 3 * (JOINT_INDEX[name] - 1) + axis] = angle
    bent = BodyParams.from_arrays({"body_pose": pose})
    model = BodyModel(BodyModelConfig(data_dir=standin_root))
    rest = volume(model, BodyParams.zeros())
    corrected = volume(model, bent)
    model.smplx.posedirs.zero_()  # plain linear blend skinning
    plain = volume(model, bent)
    assert (rest - plain) / rest > 0.015  # skinning alone loses volume at bent joints
    assert abs(rest - corrected) / rest < 0.005  # the correctives give it back
