"""Bad inputs give clear errors; the priors' signs, the subset forward pass, triangulation and
the keypoints file are checked against the body model and exact geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend.fitting import FitInputError, FitView, KeypointsError, fit_body, read_keypoints, write_keypoints


def _with(view: FitView, **changes) -> FitView:
    return FitView(**{**view.__dict__, **changes})


@pytest.fixture(scope="module")
def kp_views(truth):
    """4 views at 64 px with exact COCO-17 keypoints."""
    from backend.fitting.synthetic import render_views

    return render_views(truth, n_views=4, size=64, layout="coco17")


@pytest.fixture(scope="module")
def views(kp_views):
    """The same views, masks only."""
    return [_with(v, keypoints=None) for v in kp_views]


def test_no_views_is_refused():
    with pytest.raises(FitInputError, match="no views"):
        fit_body([])


def test_one_view_is_refused(views):
    with pytest.raises(FitInputError, match="at least 2"):
        fit_body(views[:1])


def test_empty_mask_is_refused(views):
    bad = [views[0], _with(views[1], mask=np.zeros_like(views[1].mask))]
    with pytest.raises(FitInputError, match=r"view 1 \(view01\): the mask is empty"):
        fit_body(bad)


def test_all_masks_empty_is_refused(views):
    with pytest.raises(FitInputError, match="the mask is empty"):
        fit_body([_with(v, mask=np.zeros_like(v.mask)) for v in views])


def test_mismatched_sizes_are_refused(views):
    bad = [views[0], _with(views[1], mask=np.ones((80, 64), np.float32))]
    with pytest.raises(FitInputError, match=r"64x80.*share one image size"):
        fit_body(bad)


def test_nan_in_K_is_refused(views):
    K = views[2].K.copy()
    K[0, 2] = np.nan
    with pytest.raises(FitInputError, match=r"view 2 \(view02\): K has non-finite values"):
        fit_body([views[0], views[1], _with(views[2], K=K)])


def test_not_a_rotation_is_refused(views):
    with pytest.raises(FitInputError, match="R is not a rotation"):
        fit_body([views[0], _with(views[1], R=2 * views[1].R)])


def test_keypoints_of_the_wrong_layout_are_refused(kp_views):
    from backend.fitting import FitConfig

    with pytest.raises(KeypointsError, match=r"expected \(127, 3\)"):
        fit_body(kp_views, FitConfig(layout="smplx127"))
    with pytest.raises(FitInputError, match="without a keypoint layout"):
        fit_body(kp_views)


def test_keypoints_json_round_trip_and_errors(kp_views, tmp_path):
    views = kp_views
    path = write_keypoints(tmp_path / "keypoints.json", "coco17", {v.name: v.keypoints for v in views})
    layout, read = read_keypoints(path)
    assert layout == "coco17" and set(read) == {v.name for v in views}
    assert np.abs(read["view01"] - views[1].keypoints).max() < 1e-3
    data = json.loads(path.read_text())
    data["views"]["view00"] = data["views"]["view00"][:5]
    path.write_text(json.dumps(data))
    with pytest.raises(KeypointsError, match=r"view view00: expected \(17, 3\)"):
        read_keypoints(path)
    path.write_text(json.dumps({**data, "layout": "openpose25"}))
    with pytest.raises(KeypointsError, match="unknown keypoint layout"):
        read_keypoints(path)
    path.write_text("{not json")
    with pytest.raises(KeypointsError, match="not a readable keypoints JSON"):
        read_keypoints(path)


def test_procedural_motions_respect_the_joint_ranges():
    """The ranges' signs are the body model's: every frame of our motions is inside them."""
    from backend.body.procedural import PROCEDURAL_MOTIONS, procedural_motion
    from backend.fitting.priors import PosePrior

    prior = PosePrior()
    for name in PROCEDURAL_MOTIONS:
        pose = torch.as_tensor(np.asarray(procedural_motion(name).body_pose), dtype=torch.float32)
        assert float(prior.limits(pose)) == 0.0, name


def test_limits_hold_the_hinges():
    from backend.body.joints import JOINT_INDEX
    from backend.fitting.priors import PosePrior

    prior = PosePrior()

    def cost(joint: str, axis: int, degrees: float) -> float:
        pose = torch.zeros(63)
        pose[(JOINT_INDEX[joint] - 1) * 3 + axis] = np.radians(degrees)
        return float(prior.limits(pose))

    assert cost("left_knee", 0, 90) == 0 and cost("left_knee", 0, -40) > 0.1  # no backward knee
    assert cost("left_elbow", 1, -90) == 0 and cost("left_elbow", 1, 40) > 0.1
    assert cost("right_elbow", 1, 90) == 0 and cost("right_elbow", 1, -40) > 0.1


def test_subset_forward_matches_the_body_model():
    from backend.body.loading import load_body_model
    from backend.body.model import BodyParams
    from backend.fitting.posing import SubsetPoser

    model = load_body_model()
    gen = torch.Generator().manual_seed(0)
    g, bp, b, tr = (torch.randn(n, generator=gen) * s for n, s in ((3, 0.3), (63, 0.3), (10, 1.0), (3, 0.5)))
    out = model(BodyParams.from_arrays({"global_orient": g, "body_pose": bp, "betas": b, "transl": tr}))
    index = np.arange(0, 10475, 7)
    verts, joints, keypoints = SubsetPoser(model, index)(g, bp, b, tr)
    assert (verts - out.vertices[0, index]).abs().max() < 1e-5
    assert (joints - out.joints[0]).abs().max() < 1e-5
    every = torch.cat([out.joints, out.extra_joints, out.landmarks], dim=1)[0]
    assert keypoints.shape == (127, 3) and (keypoints - every).abs().max() < 1e-5


def test_triangulation_is_exact_for_exact_keypoints(truth, kp_views):
    views = kp_views
    from backend.fitting.init import kabsch, triangulate_keypoints
    from backend.fitting.keypoints import layout_index

    points, ok = triangulate_keypoints(views)
    assert ok.all()
    assert np.abs(points - truth.keypoints[layout_index("coco17")]).max() < 1e-4
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    R, T = kabsch(points, points @ rot.T + [1.0, 2.0, 3.0])
    assert np.allclose(R, rot, atol=1e-9) and np.allclose(T, [1.0, 2.0, 3.0], atol=1e-9)


def test_silhouette_anchor_points_find_the_body(truth, views):
    from backend.fitting.init import mask_anchor_points

    a = mask_anchor_points(views)
    lo, hi = truth.vertices.min(0), truth.vertices.max(0)
    # The soles are the looser anchor: in a walking stance the feet are half a metre apart and the
    # rays from the 25-degree cameras pass them from above (measured 9 cm low; an initial guess)
    assert abs(a["top"][1] - hi[1]) < 0.03 and abs(a["bottom"][1] - lo[1]) < 0.12
    assert np.linalg.norm(a["centre"][[0, 2]] - (lo + hi)[[0, 2]] / 2) < 0.1


def test_undetected_keypoints_fall_back_to_the_silhouettes(kp_views):
    """Keypoints all at confidence 0 cannot give the facing: the silhouettes' facing search runs."""
    from backend.fitting import FitConfig, Stage

    free = ("global_orient", "transl", "body_pose")
    stages = (Stage("orient", free[:2], 2, 0.25, 0.03, 1.0), Stage("pose", free, 2, 0.5, 0.03, 0.3))
    undetected = [_with(v, keypoints=np.zeros_like(v.keypoints)) for v in kp_views]
    d = fit_body(undetected, FitConfig(layout="coco17", stages=stages)).diagnostics
    assert d["keypoint_orient"] is False and len(d["facing_losses"]) == 2 and "flips" in d
    assert d["keypoint_error_px"] == [None] * 4 and d["mean_keypoint_error_px"] is None
