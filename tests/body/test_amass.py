"""The one AMASS reader (protocol/amass.py) on the backend side: every layout, the numpy slerp
against the scipy implementation the backend used before, and hostile files.

Files are written here with plain numpy in AMASS's own key layouts (no fixtures on disk). The same
files loaded through the Blender add-on are compared in tests/blender/test_amass_both_sides.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from backend.body.motion import Motion, MotionFormatError, load_amass, resample
from protocol import amass
from protocol.smplx import NUM_JOINTS


def smooth_pose(n: int, joints: int, fps: float, seed: int) -> np.ndarray:
    """(n, joints*3) smooth axis-angle with large angles (up to ~2.6 rad) and sign changes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / fps
    freq = rng.uniform(0.2, 1.5, size=(1, joints * 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, joints * 3))
    return 1.5 * np.sin(2 * np.pi * freq * t + phase)


def write_layout(path: Path, layout: str, n: int = 30, fps: float = 60.0, seed: int = 0) -> np.ndarray:
    """An AMASS file of ``layout`` ("smplx", "smplh", "smpl") as AMASS stores it; returns the
    expected (n, 55, 3) SMPL-X joint-order pose."""
    rng = np.random.default_rng(seed + 100)
    trans = np.cumsum(rng.normal(scale=0.02, size=(n, 3)), axis=0)
    expected = np.zeros((n, NUM_JOINTS, 3))
    if layout == "smplx":
        poses = smooth_pose(n, 55, fps, seed)
        expected[:] = poses.reshape(n, 55, 3)
        np.savez(path, poses=poses, trans=trans, betas=rng.normal(size=16), num_betas=np.array(16),
                 gender=np.array("female"), surface_model_type=np.array("smplx"),
                 mocap_frame_rate=np.array(fps), mocap_time_length=np.array(n / fps))
    elif layout == "smplh":
        poses = smooth_pose(n, 52, fps, seed)
        expected[:, :22] = poses[:, :66].reshape(n, 22, 3)
        expected[:, 25:] = poses[:, 66:].reshape(n, 30, 3)  # hands after the jaw and eyes
        np.savez(path, poses=poses, trans=trans, betas=rng.normal(size=16), dmpls=np.zeros((n, 8)),
                 gender=np.array(b"male"), mocap_framerate=np.array(fps))
    elif layout == "smpl":
        poses = smooth_pose(n, 24, fps, seed)
        expected[:, :22] = poses[:, :66].reshape(n, 22, 3)  # SMPL's two hand joints are dropped
        np.savez(path, poses=poses, trans=trans, betas=rng.normal(size=10), gender=np.array("neutral"),
                 mocap_framerate=np.array(fps))
    else:
        raise ValueError(layout)
    return expected


def matrices(aa: np.ndarray) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(aa).reshape(-1, 3)).as_matrix()


# The backend's resampling before the reader moved to the protocol (scipy quaternions, same
# formulas), kept here as the reference the numpy version must reproduce.
def old_backend_slerp(rotvecs: np.ndarray, index: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    n, j = rotvecs.shape[:2]
    quats = Rotation.from_rotvec(rotvecs.reshape(-1, 3)).as_quat().reshape(n, j, 4)
    q0, q1 = quats[index], quats[np.minimum(index + 1, n - 1)]
    dot = (q0 * q1).sum(axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot).clip(max=1.0)
    theta = np.arccos(dot)
    sin = np.sin(theta)
    a = alpha[:, None, None]
    small = sin < 1e-6
    w0 = np.where(small, 1 - a, np.sin((1 - a) * theta) / np.where(small, 1.0, sin))
    w1 = np.where(small, a, np.sin(a * theta) / np.where(small, 1.0, sin))
    q = w0 * q0 + w1 * q1
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return Rotation.from_quat(q.reshape(-1, 4)).as_rotvec().reshape(len(index), j, 3)


def old_backend_resample(pose: np.ndarray, transl: np.ndarray, src_fps: float, fps: float):
    n = len(pose)
    n_out = int(np.floor((n - 1) / src_fps * fps + 1e-6)) + 1
    src = np.arange(n_out) * (src_fps / fps)
    index = np.minimum(np.floor(src + 1e-9).astype(int), n - 1)
    alpha = np.clip(src - index, 0.0, 1.0)
    alpha[np.abs(alpha) < 1e-9] = 0.0
    nxt = np.minimum(index + 1, n - 1)
    out_t = (1 - alpha)[:, None] * transl[index] + alpha[:, None] * transl[nxt]
    return old_backend_slerp(pose, index, alpha), out_t


@pytest.mark.parametrize("layout", ["smplx", "smplh", "smpl"])
def test_every_layout_loads_to_smplx_joint_order(tmp_path: Path, layout: str) -> None:
    path = tmp_path / f"{layout}.npz"
    expected = write_layout(path, layout)
    raw = amass.read_amass(path)
    np.testing.assert_array_equal(raw.pose, expected)
    assert raw.source_model == layout and raw.fps == 60.0 and raw.n_frames == 30
    assert raw.gender == {"smplx": "female", "smplh": "male", "smpl": "neutral"}[layout]
    backend = load_amass(path, z_up=False)
    np.testing.assert_array_equal(backend.full_pose(), expected)
    assert backend.source_model == layout and backend.gender == raw.gender
    np.testing.assert_array_equal(backend.betas, raw.betas)


@pytest.mark.parametrize("layout", ["smplx", "smplh", "smpl"])
def test_backend_motion_is_the_protocol_readers_result(tmp_path: Path, layout: str) -> None:
    path = tmp_path / f"{layout}.npz"
    write_layout(path, layout, seed=3)
    pelvis = np.array([0.01, -0.3, 0.02])
    shared = amass.load_amass(path, rest_pelvis=pelvis, fps=24.0)
    backend = resample(load_amass(path, rest_pelvis=pelvis), 24.0)
    assert backend.n_frames == shared.n_frames == 12 and backend.fps == shared.fps == 24.0
    np.testing.assert_allclose(matrices(backend.full_pose()), matrices(shared.pose), atol=1e-12)
    np.testing.assert_allclose(backend.transl, shared.transl, atol=1e-12)


@pytest.mark.parametrize(("src_fps", "fps"), [(120.0, 30.0), (60.0, 24.0), (30.0, 50.0), (29.97, 25.0)])
def test_numpy_slerp_reproduces_the_backends_old_scipy_result(src_fps: float, fps: float) -> None:
    n = 61
    pose = smooth_pose(n, 55, src_fps, seed=7).reshape(n, 55, 3)
    pose[::7, 3] *= 2.2  # some joints past pi: the quaternion's sign flips between frames
    transl = np.random.default_rng(1).normal(size=(n, 3))
    new_pose, new_t = amass.resample_pose(pose, transl, src_fps, fps)
    old_pose, old_t = old_backend_resample(pose, transl, src_fps, fps)
    assert new_pose.shape == old_pose.shape
    np.testing.assert_allclose(matrices(new_pose), matrices(old_pose), atol=1e-12)
    np.testing.assert_allclose(new_t, old_t, atol=1e-15)
    # and both are angles in [0, pi], as scipy's rotvecs are
    assert np.linalg.norm(new_pose, axis=-1).max() <= np.pi + 1e-12


def test_slerp_agrees_with_scipys_slerp_per_joint() -> None:
    n, fps = 9, 10.0
    pose = smooth_pose(n, 3, fps, seed=11).reshape(n, 3, 3)
    out, _ = amass.resample_pose(pose, np.zeros((n, 3)), fps, 35.0)
    times = np.arange(len(out)) / 35.0
    for joint in range(3):
        reference = Slerp(np.arange(n) / fps, Rotation.from_rotvec(pose[:, joint]))(times)
        np.testing.assert_allclose(matrices(out[:, joint]), reference.as_matrix(), atol=1e-12)


def test_resampling_is_not_nearest_frame() -> None:
    # 2 frames at 1 fps to 4 fps: the in-between frames turn by a quarter, half, three quarters.
    pose = np.zeros((2, NUM_JOINTS, 3))
    pose[1, 4] = [1.2, 0.0, 0.0]
    out, transl = amass.resample_pose(pose, np.array([[0.0, 0, 0], [4.0, 0, 0]]), 1.0, 4.0)
    np.testing.assert_allclose(out[:, 4, 0], [0.0, 0.3, 0.6, 0.9, 1.2], atol=1e-12)
    np.testing.assert_allclose(transl[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0])


def test_axis_change_matches_the_old_scipy_formula(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    write_layout(path, "smplx", seed=5)
    raw = amass.read_amass(path)
    pelvis = np.array([0.0, -0.3, 0.05])
    moved = amass.change_world_axes(raw, amass.Y_UP_FROM_Z_UP, pelvis)
    w = amass.Y_UP_FROM_Z_UP
    old_root = (Rotation.from_matrix(w) * Rotation.from_rotvec(raw.pose[:, 0])).as_matrix()
    np.testing.assert_allclose(matrices(moved.pose[:, 0]), old_root, atol=1e-12)
    np.testing.assert_allclose(moved.transl, (raw.transl + pelvis) @ w.T - pelvis, atol=1e-15)
    np.testing.assert_array_equal(moved.pose[:, 1:], raw.pose[:, 1:])


def test_writer_round_trips_both_written_layouts(tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    write_layout(path, "smplx", seed=9)
    m = amass.load_amass(path)
    for layout in ("smplx", "smplh"):
        back = amass.load_amass(amass.save_amass(m, tmp_path / f"{layout}.npz", layout))
        keep = list(amass.SMPLH_TO_SMPLX) if layout == "smplh" else list(range(NUM_JOINTS))
        np.testing.assert_allclose(matrices(back.pose[:, keep]), matrices(m.pose[:, keep]), atol=1e-9)
        np.testing.assert_allclose(back.transl, m.transl, atol=1e-9)
    assert isinstance(Motion.from_amass(m), Motion)


class _Boom:
    """Unpickling it creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_hostile_files_are_refused_without_unpickling(tmp_path: Path) -> None:
    n, marker = 3, tmp_path / "unpickled"
    ok = {"poses": np.zeros((n, 165)), "trans": np.zeros((n, 3)), "mocap_frame_rate": np.array(30.0)}
    cases = {
        "pickled_object_array": {**ok, "gender": np.array([_Boom(marker)], dtype=object)},
        "object_poses": {**ok, "poses": np.array([[_Boom(marker)] * 165] * n, dtype=object)},
        "nan_poses": {**ok, "poses": np.full((n, 165), np.nan)},
        "inf_trans": {**ok, "trans": np.full((n, 3), np.inf)},
        "zero_fps": {**ok, "mocap_frame_rate": np.array(0.0)},
        "nan_fps": {**ok, "mocap_frame_rate": np.array(np.nan)},
        "negative_fps": {**ok, "mocap_frame_rate": np.array(-30.0)},
        "no_fps": {k: v for k, v in ok.items() if k != "mocap_frame_rate"},
        "trans_mismatch": {**ok, "trans": np.zeros((n + 1, 3))},
        "no_frames": {**ok, "poses": np.zeros((0, 165)), "trans": np.zeros((0, 3))},
        "bad_width": {**ok, "poses": np.zeros((n, 10))},
        "string_poses": {**ok, "poses": np.array([["a"] * 165] * n)},
        "smplh_named_165": {**ok, "surface_model_type": np.array("smplh")},
    }
    for name, arrays in cases.items():
        with open(tmp_path / f"{name}.npz", "wb") as fh:
            np.savez(fh, **arrays)
        with pytest.raises(MotionFormatError):
            load_amass(tmp_path / f"{name}.npz")
    assert not marker.exists()  # nothing was unpickled
    (tmp_path / "pickle.npz").write_bytes(pickle.dumps({"poses": 1}))
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 truncated zip")
    np.save(tmp_path / "single.npy", np.zeros((3, 165)))
    for name in ("pickle.npz", "garbage.npz", "single.npy"):
        with pytest.raises(MotionFormatError):
            load_amass(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_amass(tmp_path / "missing.npz")


def test_a_hostile_gender_becomes_neutral(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    write_layout(path, "smplx")
    with np.load(path) as data:
        arrays = dict(data)
    cases = (("../../etc/passwd", "neutral"), ("MALE", "male"), (b"female", "female"), ("", "neutral"))
    for gender, expected in cases:
        np.savez(path, **{**arrays, "gender": np.array(gender)})
        assert load_amass(path).gender == expected
