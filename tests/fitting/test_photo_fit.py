"""One photo -> a body (backend/fitting/photo.py): a known body rendered by our rasterizer from the
assumed photo camera is the "photo"; the fit must reproject onto it and, after aligning the root
(monocular depth is ambiguous), put the joints near the true ones.

Measured (docs/fitting.md, "One photo"): at 160 px with the quick schedule, COCO-17 keypoints
(0.5 px noise) 0.7 px joint reprojection error, 48 mm root-aligned (25 mm after a similarity
alignment); silhouette alone 88 mm (one limb's depth guessed wrong). The tolerances leave room
for that and nothing more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

SIZE = 160


@pytest.fixture(scope="module")
def photo_truth():
    from backend.body.procedural import procedural_motion
    from backend.fitting.synthetic import pose_body

    body_pose = np.asarray(procedural_motion("walk").body_pose)[10]
    # Turned 20 degrees, off-centre, 3 m in front of the photo camera (which looks down -z).
    params = {"gender": "neutral", "betas": [0.8, -0.6, 0.5, 0.3, -0.4, 0.2, 0.0, 0.0, 0.0, 0.0],
              "global_orient": [0.0, 0.35, 0.0], "body_pose": body_pose.tolist(),
              "transl": [0.15, -0.1, -3.0]}
    return pose_body(params)


def _fit(truth, stages, layout):
    from backend.fitting.photo import PhotoFitConfig, fit_photo
    from backend.fitting.synthetic import render_photo

    mask, keypoints, camera = render_photo(truth, SIZE, layout=layout, keypoint_noise_px=0.5, seed=1)
    return fit_photo(mask, keypoints, layout, PhotoFitConfig(stages=stages)), mask, camera


@pytest.fixture(scope="module")
def keypoint_fit(photo_truth, quick_stages):
    return _fit(photo_truth, quick_stages, "coco17")


@pytest.fixture(scope="module")
def silhouette_fit(photo_truth, quick_stages):
    return _fit(photo_truth, quick_stages, None)


def reprojected(joints: np.ndarray, camera) -> np.ndarray:
    from backend.fitting.silhouette import project

    K, R, t = (torch.as_tensor(a[None], dtype=torch.float64) for a in camera)
    return project(torch.as_tensor(joints, dtype=torch.float64), K, R, t)[0].numpy()


def test_keypoints_photo_fit_reprojects_and_recovers_joints_after_root_alignment(keypoint_fit, photo_truth):
    from backend.fitting.photo import procrustes_error, root_aligned_error

    result, _, camera = keypoint_fit
    body = slice(0, 22)  # pelvis .. wrists: what a photo's silhouette and COCO keypoints see
    err_2d = np.linalg.norm(reprojected(result.joints[body], camera)
                            - reprojected(photo_truth.joints[body], camera), axis=1)
    assert err_2d.mean() <= 1.5, f"{err_2d.mean():.2f} px"
    assert result.diagnostics["mean_keypoint_error_px"] <= 1.5  # 0.5 px noise
    aligned = root_aligned_error(result.joints, photo_truth.joints)
    assert aligned.mean() <= 0.065, f"root-aligned {aligned.mean() * 1000:.1f} mm"
    assert aligned.max() <= 0.15  # no limb on the wrong side
    assert procrustes_error(result.joints, photo_truth.joints).mean() <= 0.04
    assert result.diagnostics["mean_iou"] >= 0.9
    # the depth is found to ~10 % (a 1.7 m body at 3 m): the start fills the mask's height
    assert abs(result.params["transl"][2] - photo_truth.params["transl"][2]) <= 0.3


def test_silhouette_alone_fits_the_outline_and_keypoints_do_better(silhouette_fit, keypoint_fit, photo_truth):
    from backend.fitting.photo import root_aligned_error

    result, _, _ = silhouette_fit
    assert result.diagnostics["mean_iou"] >= 0.88
    assert "mean_keypoint_error_px" not in result.diagnostics
    aligned = root_aligned_error(result.joints, photo_truth.joints).mean()
    assert aligned <= 0.13, f"root-aligned {aligned * 1000:.1f} mm"
    assert root_aligned_error(keypoint_fit[0].joints, photo_truth.joints).mean() < aligned
    # facing the camera: probes stay within 60 degrees of yaw 0 without keypoints
    assert all(abs(y) <= 60.0 for y, _ in result.diagnostics["facing_probes"])


def test_photo_fit_records_its_camera_and_a_protocol_payload(keypoint_fit):
    from protocol.smplx import PER_FRAME_FIELDS

    result, _, camera = keypoint_fit
    cam = result.diagnostics["camera"]
    assert cam["size"] == SIZE and cam["fov_y_deg"] == 40.0
    assert np.allclose(cam["K"], camera[0]) and np.allclose(cam["R"], camera[1]) and np.allclose(cam["t"], 0)
    for name, width in PER_FRAME_FIELDS.items():
        assert len(result.params[name]) == width, name


def test_square_photo_pads_composites_and_maps_keypoints() -> None:
    from backend.fitting.photo import photo_mask, square_photo

    image = np.zeros((100, 60, 4), np.uint8)
    image[..., :3] = (10, 200, 30)  # under the transparent part: must not show
    image[20:80, 20:40] = (200, 40, 40, 255)  # the "person", opaque
    sq = square_photo(image, 50)
    assert sq.rgb.shape == (50, 50, 3) and sq.alpha is not None and sq.scale == 0.5
    assert np.allclose(sq.offset, [10.0, 0.0])
    assert (sq.rgb[0, 0] >= 250).all()  # composited over white, padded with the border's colour
    inside = sq.alpha > 0.5
    assert inside[25, 25] and not inside[5, 25] and abs(inside.sum() - 30 * 10) <= 40
    kp = sq.map_keypoints(np.array([[30.0, 50.0, 1.0], [0.0, 0.0, 0.5]]))
    assert np.allclose(kp, [[25.0, 25.0, 1.0], [10.0, 0.0, 0.5]])
    # without alpha: the person is what differs from the border colour (a stray speck dropped)
    rgb = np.full((80, 80, 3), 240, np.uint8)
    rgb[10:70, 30:50] = (50, 60, 70)
    rgb[2, 2] = (0, 0, 0)
    mask = photo_mask(rgb)
    assert mask[40, 40] and not mask[2, 2] and mask.sum() == 60 * 20


def test_photo_inputs_are_checked() -> None:
    from backend.fitting import FitInputError, fit_body
    from backend.fitting.photo import fit_photo, photo_mask, square_photo
    from backend.fitting.synthetic import render_photo  # noqa: F401  (the module imports cleanly)

    with pytest.raises(FitInputError, match="no person"):
        photo_mask(np.full((20, 20, 3), 7, np.uint8))
    with pytest.raises(FitInputError, match="RGB"):
        square_photo(np.zeros((4, 4, 3), np.uint8), 32)
    with pytest.raises(FitInputError, match="square"):
        fit_photo(np.ones((20, 30), np.float32))
    with pytest.raises(FitInputError, match="empty"):
        fit_photo(np.zeros((20, 20), np.float32))
    # the multi-view fit still wants two views
    from backend.fitting import FitView

    with pytest.raises(FitInputError, match="at least 2"):
        fit_body([FitView(np.eye(3) * 10, np.eye(3), np.zeros(3), np.ones((10, 10)))])


def test_estimator_keypoints_are_kept_only_where_they_agree_with_the_silhouette() -> None:
    from backend.fitting.photo import plausible_keypoints

    mask = np.zeros((100, 100), bool)
    mask[10:90, 40:60] = True
    good = np.column_stack([np.full(17, 50.0), np.linspace(15, 85, 17), np.full(17, 0.9)])
    kept, info = plausible_keypoints(good, mask)
    assert kept is not None and info == {"detected": 17, "kept": 17, "used": True}
    scattered = good.copy()
    scattered[:12, 0] = 5.0  # 12 of 17 far outside the person
    scattered[12, 2] = 0.1  # and one barely detected
    kept, info = plausible_keypoints(scattered, mask)
    assert kept is None and info == {"detected": 16, "kept": 4, "used": False}


def test_a_hostile_aspect_ratio_is_resized_before_it_is_padded() -> None:
    from backend.fitting.photo import square_photo

    strip = np.full((8, 60_000, 3), 200, np.uint8)  # a 60000 x 8 "photo": a padded square would be 10 GB
    strip[:, 30_000:30_100] = 0
    sq = square_photo(strip, 64)
    assert sq.rgb.shape == (64, 64, 3) and sq.offset[0] == 0.0 and 0 < sq.offset[1] < 32
    corner = sq.map_keypoints(np.array([[60_000.0, 8.0, 1.0]]))[0, :2]
    assert np.allclose(corner, [64.0, sq.offset[1] + 8 * sq.scale])
