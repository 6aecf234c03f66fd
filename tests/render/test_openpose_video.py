"""Pose images (ControlNet-openpose drawing) and the PNG / mp4 writers."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from smplx.joint_names import JOINT_NAMES as SMPLX_NAMES

from backend.preview.openpose import (
    COCO18_COLORS,
    COCO18_LIMBS,
    DRAWN_LIMBS,
    PoseKeypoints,
    draw_openpose,
    hand_names,
    keypoints_from_joints,
)
from backend.preview.video import (
    decode_depth_uint16,
    depth_to_uint16,
    frame_name,
    read_mp4_frame_count,
    write_mp4,
    write_png,
)


def _standing_keypoints() -> PoseKeypoints:
    # A rough frontal person in a 200x200 image (x right, y down), pixel centres at +0.5.
    body = np.array([
        [100, 30], [100, 60], [80, 60], [70, 90], [65, 120], [120, 60], [130, 90], [135, 120],
        [88, 120], [86, 155], [85, 190], [112, 120], [114, 155], [115, 190], [95, 25], [105, 25],
        [90, 28], [110, 28],
    ], dtype=float) + 0.5
    return PoseKeypoints(body=body, body_visible=np.ones(18, dtype=bool))


def test_body_colours_and_limb_order() -> None:
    kp = _standing_keypoints()
    image = draw_openpose(kp, 200, 200)
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8
    for k in range(18):
        x, y = kp.body[k].astype(int)
        assert tuple(image[y, x]) == COCO18_COLORS[k], f"keypoint {k} has its COCO colour"
    # Midpoint of limb 7 (right hip -> right knee, i.e. keypoints 8 -> 9) is drawn at 60% colour.
    a, b = COCO18_LIMBS[7]
    mx, my = ((kp.body[a] + kp.body[b]) / 2).astype(int)
    assert tuple(image[my, mx]) == tuple(int(c * 0.6) for c in COCO18_COLORS[7])
    assert DRAWN_LIMBS == 17 and COCO18_LIMBS[0] == (1, 2) and COCO18_LIMBS[12] == (1, 0)


def test_invisible_keypoints_and_their_limbs_are_dropped() -> None:
    kp = _standing_keypoints()
    kp.body_visible[4] = False  # right wrist
    image = draw_openpose(kp, 200, 200)
    x, y = kp.body[4].astype(int)
    assert tuple(image[y, x]) == (0, 0, 0)
    mid = ((kp.body[3] + kp.body[4]) / 2).astype(int)
    assert tuple(image[mid[1], mid[0]]) == (0, 0, 0)
    assert image.sum() < draw_openpose(_standing_keypoints(), 200, 200).sum()


def test_keypoints_from_smplx_joint_names() -> None:
    names = list(SMPLX_NAMES[:127])
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (127, 2))
    vis = np.ones(127, dtype=bool)
    vis[names.index("left_wrist")] = False
    kp = keypoints_from_joints(xy, vis, names)
    assert np.allclose(kp.body[0], xy[names.index("nose")])
    assert np.allclose(kp.body[1], (xy[names.index("left_shoulder")] + xy[names.index("right_shoulder")]) / 2)
    assert np.allclose(kp.body[16], xy[names.index("right_ear")])
    assert not kp.body_visible[7] and kp.body_visible[4]
    assert kp.left_hand.shape == (21, 2) and not kp.left_hand_visible[0]
    assert np.allclose(kp.right_hand[4], xy[names.index("right_thumb")])
    assert kp.face.shape == (51, 2)
    assert hand_names("left")[5:9] == ("left_index1", "left_index2", "left_index3", "left_index")
    with_hands = draw_openpose(kp, 100, 100, hands=True, face=True)
    without = draw_openpose(kp, 100, 100, hands=False, face=False)
    assert (with_hands != without).any()
    assert (with_hands == [0, 0, 255]).all(-1).any(), "blue hand keypoints"
    assert (with_hands == [255, 255, 255]).all(-1).any(), "white face landmarks"


def test_png_sequence_and_depth_round_trip(tmp_path: Path) -> None:
    depth = np.full((6, 7), np.inf)
    depth[1:5, 2:6] = np.linspace(2.0, 3.0, 16).reshape(4, 4)
    values, rng = depth_to_uint16(depth)
    assert rng == (2.0, 3.0) and values.dtype == np.uint16 and (values[0] == 0).all()
    path = write_png(tmp_path / "depth" / frame_name(0), values)
    assert path.name == "0001.png"
    back = iio.imread(path)
    assert back.dtype == np.uint16
    decoded = decode_depth_uint16(back, rng)
    fg = np.isfinite(depth)
    assert np.allclose(decoded[fg], depth[fg], atol=1.0 / 65534 + 1e-9) and np.isinf(decoded[~fg]).all()
    with pytest.raises(TypeError):
        write_png(tmp_path / "bad.png", np.zeros((2, 2), dtype=np.float32))


def test_mp4_writer_handles_odd_sizes(tmp_path: Path) -> None:
    frames = [np.full((33, 47, 3), i * 20, dtype=np.uint8) for i in range(6)]
    path = write_mp4(tmp_path / "clip.mp4", frames, fps=12)
    assert path.stat().st_size > 0
    assert read_mp4_frame_count(path) == 6
    first = next(iter(iio.imiter(path)))
    assert first.shape == (34, 48, 3)
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "empty.mp4", [], fps=12)
