"""The fit recovers a known body from our own renders: joints, shape and silhouettes.

Measured (docs/fitting.md) with these settings (128 px, 8 views, the quick schedule): silhouettes
alone ~9 mm mean joint error, with COCO-17 keypoints (0.5 px noise) ~5 mm; betas within ~0.6 of
the truth (the stand-in's higher betas change the outline by millimetres, so the silhouettes pin
them loosely); the tolerances below leave room for that and nothing more.
"""

from __future__ import annotations

import numpy as np
import pytest

BETAS_TOLERANCE = 0.8  # max |fitted - true| over the 10 betas (measured <= 0.56)


@pytest.fixture(scope="module")
def silhouette_fit(truth, quick_stages):
    from backend.fitting import FitConfig, fit_body
    from backend.fitting.synthetic import render_views

    views = render_views(truth, n_views=8, size=128)
    return fit_body(views, FitConfig(stages=quick_stages))


@pytest.fixture(scope="module")
def keypoint_fit(truth, quick_stages):
    from backend.fitting import FitConfig, fit_body
    from backend.fitting.synthetic import render_views

    views = render_views(truth, n_views=8, size=128, layout="coco17", keypoint_noise_px=0.5, seed=3)
    return fit_body(views, FitConfig(layout="coco17", stages=quick_stages))


def joint_error(result, truth) -> np.ndarray:
    return np.linalg.norm(result.joints - truth.joints, axis=1)


def test_silhouettes_alone_recover_joints_within_2cm(silhouette_fit, truth):
    err = joint_error(silhouette_fit, truth)
    assert len(err) == 55
    assert err.mean() <= 0.02, f"mean joint error {err.mean() * 1000:.1f} mm"
    assert err.max() <= 0.05  # no limb swapped or flipped
    assert silhouette_fit.diagnostics["mean_iou"] >= 0.93
    assert min(silhouette_fit.diagnostics["iou"]) >= 0.9


def test_silhouette_fit_recovers_betas(silhouette_fit, truth):
    betas = np.array(silhouette_fit.params["betas"])
    assert np.abs(betas - truth.params["betas"]).max() <= BETAS_TOLERANCE, betas.round(2)
    assert abs(betas[0] - truth.params["betas"][0]) <= 0.4  # the first (stature) is the best determined


def test_keypoints_bring_joints_within_1cm(keypoint_fit, truth, silhouette_fit):
    err = joint_error(keypoint_fit, truth)
    assert err.mean() <= 0.01, f"mean joint error {err.mean() * 1000:.1f} mm"
    assert err.mean() < joint_error(silhouette_fit, truth).mean()
    d = keypoint_fit.diagnostics
    assert d["keypoint_orient"] is True  # facing came from the triangulated torso keypoints
    assert len(d["keypoint_error_px"]) == 8 and d["mean_keypoint_error_px"] < 1.5  # noise 0.5 px
    assert np.abs(np.array(keypoint_fit.params["betas"]) - truth.params["betas"]).max() <= BETAS_TOLERANCE


def test_result_is_a_protocol_payload(keypoint_fit):
    from backend.body.model import BodyParams
    from protocol.smplx import PER_FRAME_FIELDS

    p = keypoint_fit.params
    for name, width in PER_FRAME_FIELDS.items():
        assert len(p[name]) == width, name
    assert p["left_hand_pose"] == [0.0] * 45 and p["gender"] == "neutral" and len(p["betas"]) == 10
    # the payload reproduces the fitted joints through the body model
    from backend.body.loading import load_body_model

    model = load_body_model()
    out = model(BodyParams.from_arrays({k: v for k, v in p.items() if k != "gender"}))
    assert np.abs(out.joints[0].detach().numpy() - keypoint_fit.joints).max() < 1e-4
