"""Motion: AMASS npz in both releases' layouts, resampling, procedural motions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from backend.body.joints import JOINT_INDEX
from backend.body.model import BodyModel
from backend.body.motion import Motion, MotionFormatError, load_amass, resample, save_amass
from backend.body.procedural import procedural_motion


def random_motion(n: int = 121, fps: float = 120.0, seed: int = 0) -> Motion:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    # smooth random rotations: low-frequency sines per coordinate
    freq = rng.uniform(0.2, 1.5, size=(1, 165))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 165))
    pose = 0.6 * np.sin(2 * np.pi * freq * t[:, None] + phase)
    transl = np.stack([np.sin(t), 0.1 * t, 1.3 * t], axis=1)
    return Motion.from_full_pose(
        pose, transl, fps, betas=rng.normal(size=16), expression=rng.normal(size=10), gender="female"
    )


def test_amass_smplx_round_trip_with_the_real_key_layout(tmp_path: Path) -> None:
    m = random_motion()
    path = save_amass(m, tmp_path / "clip_stageii.npz", layout="smplx")
    with np.load(path) as raw:
        assert raw["poses"].shape == (121, 165) and raw["trans"].shape == (121, 3)
        assert raw["root_orient"].shape == (121, 3) and raw["pose_body"].shape == (121, 63)
        assert raw["pose_hand"].shape == (121, 90) and raw["pose_jaw"].shape == (121, 3)
        assert raw["pose_eye"].shape == (121, 6)
        assert str(raw["surface_model_type"]) == "smplx" and float(raw["mocap_frame_rate"]) == 120.0
        assert str(raw["gender"]) == "female"
        np.testing.assert_array_equal(raw["poses"][:, 66:69], m.jaw_pose)  # jaw right after the body
        np.testing.assert_array_equal(raw["poses"][:, 75:120], m.left_hand_pose)
        np.testing.assert_array_equal(raw["pose_eye"][:, 3:], m.reye_pose)
    back = load_amass(path)
    assert back.equal(m) and back.source_model == "smplx"


def test_amass_smplh_round_trip_with_the_real_key_layout(tmp_path: Path) -> None:
    m = random_motion()
    path = save_amass(m, tmp_path / "clip_poses.npz", layout="smplh")
    with np.load(path) as raw:
        assert raw["poses"].shape == (121, 156) and raw["betas"].shape == (16,)
        assert raw["dmpls"].shape == (121, 8) and float(raw["mocap_framerate"]) == 120.0
        np.testing.assert_array_equal(raw["poses"][:, 66:111], m.left_hand_pose)  # hands follow the body
        np.testing.assert_array_equal(raw["poses"][:, 111:], m.right_hand_pose)
    back = load_amass(path)
    assert back.source_model == "smplh" and back.fps == 120.0 and back.gender == "female"
    for name in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "transl"):
        np.testing.assert_allclose(getattr(back, name), getattr(m, name))
    assert not back.jaw_pose.any()  # SMPL+H has no face


def test_reads_a_handwritten_amass_smplh_file(tmp_path: Path) -> None:
    # written with plain numpy the way AMASS's SMPL+H release stores it (bytes gender included)
    n = 10
    poses = np.zeros((n, 156))
    poses[:, 3 + 3 * (JOINT_INDEX["left_knee"] - 1)] = 0.5
    np.savez(
        tmp_path / "a.npz",
        poses=poses,
        trans=np.zeros((n, 3)),
        betas=np.arange(16.0),
        dmpls=np.zeros((n, 8)),
        gender=np.array(b"male"),
        mocap_framerate=np.array(60.0),
    )
    m = load_amass(tmp_path / "a.npz")
    assert m.gender == "male" and m.fps == 60.0 and m.n_frames == n
    assert m.full_pose()[0, JOINT_INDEX["left_knee"], 0] == 0.5


def test_bad_files_raise_a_clear_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", poses=np.zeros((3, 10)), trans=np.zeros((3, 3)), mocap_framerate=30.0)
    with pytest.raises(MotionFormatError, match="width"):
        load_amass(tmp_path / "bad.npz")
    np.savez(tmp_path / "nokeys.npz", foo=np.zeros(3))
    with pytest.raises(MotionFormatError, match="poses"):
        load_amass(tmp_path / "nokeys.npz")


def _rotations(m: Motion) -> np.ndarray:
    return Rotation.from_rotvec(m.full_pose().reshape(-1, 3)).as_matrix().reshape(m.n_frames, 55, 3, 3)


def test_resample_120_to_30_keeps_poses_at_shared_times() -> None:
    m = random_motion(n=121, fps=120.0)
    r = resample(m, 30.0)
    assert r.fps == 30.0 and r.n_frames == 31
    np.testing.assert_allclose(_rotations(r), _rotations(m)[::4], atol=1e-9)
    np.testing.assert_allclose(r.transl, m.transl[::4], atol=1e-12)
    np.testing.assert_array_equal(r.betas, m.betas)


def test_resample_upsampling_slerps_halfway() -> None:
    m = Motion.zeros(2, fps=1.0)
    m.body_pose[1, 0] = 1.0  # left hip about x, 1 rad
    m.transl[1] = [2.0, 0.0, 0.0]
    r = resample(m, 2.0)
    assert r.n_frames == 3
    np.testing.assert_allclose(r.body_pose[1, :3], [0.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r.transl[1], [1.0, 0.0, 0.0])


def test_walk_feet_alternate(body_model: BodyModel) -> None:
    m = procedural_motion("walk", n_frames=66, fps=30.0)
    joints = body_model(m.to_params()).joints.detach().numpy()
    pelvis = joints[:, JOINT_INDEX["pelvis"]]
    lead = joints[:, JOINT_INDEX["left_ankle"], 2] - joints[:, JOINT_INDEX["right_ankle"], 2]
    assert lead.max() > 0.2 and lead.min() < -0.2  # each foot leads in turn
    crossings = np.nonzero(np.diff(np.sign(lead)))[0]
    assert len(crossings) >= 3  # 2 s at 1.1 s per cycle: about four changes of lead
    assert pelvis[-1, 2] - pelvis[0, 2] > 2.0  # it goes forward (+z)


def test_turn_spans_a_full_revolution() -> None:
    m = procedural_motion("turn", n_frames=90)
    forward = Rotation.from_rotvec(m.global_orient).apply([0.0, 0.0, 1.0])
    yaw = np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))
    assert np.isclose(abs(yaw[-1] - yaw[0]), 2 * np.pi, atol=1e-6)
    assert np.all(np.diff(yaw) > 0)  # monotone turn
    np.testing.assert_allclose(m.transl, 0.0)  # in place


def test_wave_raises_the_right_hand_above_the_head_and_moves_it(body_model: BodyModel) -> None:
    m = procedural_motion("wave", n_frames=40)
    joints = body_model(m.to_params()).joints.detach().numpy()
    hand, head = joints[:, JOINT_INDEX["right_wrist"]], joints[:, JOINT_INDEX["head"]]
    assert np.all(hand[:, 1] > head[:, 1]) and np.all(hand[:, 0] < 0)
    assert np.ptp(hand[:, 0]) > 0.1
    left = joints[:, JOINT_INDEX["left_wrist"]]
    assert np.all(left[:, 1] < joints[:, JOINT_INDEX["left_shoulder"], 1] - 0.3)


@pytest.mark.parametrize("name", ["a-pose", "t-pose", "apose", "T_POSE"])
def test_static_poses_by_name(body_model: BodyModel, name: str) -> None:
    m = procedural_motion(name)
    joints = body_model(m.to_params()).joints.detach().numpy()[0]
    wrist_drop = joints[JOINT_INDEX["left_shoulder"], 1] - joints[JOINT_INDEX["left_wrist"], 1]
    if "a" in name.lower().replace("t_pose", ""):
        assert 0.3 < wrist_drop < 0.45  # 45 degrees down over ~0.52 m of arm
    else:
        assert abs(wrist_drop) < 0.05


def test_unknown_motion_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="walk"):
        procedural_motion("moonwalk")


def test_payload_round_trip() -> None:
    m = random_motion(n=5, fps=24.0)
    back = Motion.from_payload(m.to_payload())
    assert back.fps == 24.0 and back.gender == "female"
    np.testing.assert_allclose(back.full_pose(), m.full_pose(), atol=1e-6)


def test_bvh_round_trip_keeps_skeleton_and_motion(body_model: BodyModel, tmp_path: Path) -> None:
    from backend.body.bvh import load_bvh, save_bvh

    m = procedural_motion("walk", n_frames=20)
    rest = body_model.rest_joints().numpy()
    path = save_bvh(m, tmp_path / "walk.bvh", rest)
    text = path.read_text()
    assert text.startswith("HIERARCHY\nROOT pelvis") and "JOINT right_thumb3" in text
    assert "Frames: 20" in text
    back, rest_back = load_bvh(path)
    np.testing.assert_allclose(rest_back, rest, atol=1e-6)
    assert back.n_frames == 20 and np.isclose(back.fps, 30.0)
    np.testing.assert_allclose(_rotations(back), _rotations(m), atol=1e-5)
    np.testing.assert_allclose(back.transl, m.transl, atol=1e-6)


def test_load_motion_takes_a_file_or_a_name(tmp_path: Path) -> None:
    from backend.body.procedural import load_motion

    path = save_amass(random_motion(n=121, fps=120.0), tmp_path / "m.npz")
    assert load_motion(str(path)).fps == 120.0
    assert load_motion(str(path), fps=30.0).n_frames == 31
    walk = load_motion("walk", fps=24.0, n_frames=10)
    assert walk.n_frames == 10 and walk.fps == 24.0
    with pytest.raises(FileNotFoundError):
        load_motion(str(tmp_path / "missing.npz"))


def test_one_load_motion_for_bvh_payloads_and_confined_files(tmp_path: Path) -> None:
    """BVH is reachable through the one load_motion the jobs and `--motion` use."""
    from backend.body.bvh import save_bvh
    from backend.body.procedural import load_motion
    from backend.jobs.confine import InputRoots
    from protocol.kinds import PathParam

    walk = procedural_motion("walk", 12)
    rest = np.zeros((55, 3))
    rest[1:, 1] = 0.1  # any rest skeleton: BVH stores offsets, the angles map one to one
    bvh = save_bvh(walk, tmp_path / "walk.bvh", rest)
    back = load_motion(str(bvh))
    assert back.n_frames == 12 and np.isclose(back.fps, walk.fps)
    np.testing.assert_allclose(back.body_pose, walk.body_pose, atol=1e-5)
    # A job's confined file is read through its check, once: the same motion.
    roots = InputRoots.for_server(tmp_path / "data", [tmp_path])
    confined = roots.resolve(str(bvh), "params.motion", PathParam())
    np.testing.assert_allclose(load_motion(confined).body_pose, back.body_pose)
    # Payloads: SMPL-X parameters and AMASS arrays sent inline.
    assert load_motion(walk.to_payload()).n_frames == 12
    amass = save_amass(walk, tmp_path / "walk.npz")
    with np.load(amass) as npz:
        inline = {k: npz[k] for k in npz.files}
    np.testing.assert_allclose(load_motion(inline).body_pose, load_motion(str(amass)).body_pose)
    with pytest.raises(MotionFormatError, match=r"walk\.npz: "):
        bad = tmp_path / "bad" / "walk.npz"
        bad.parent.mkdir()
        np.savez(bad, poses=np.zeros((2, 7)), trans=np.zeros((2, 3)))
        load_motion(str(bad))


def test_motion_modules_do_not_pull_in_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, backend.body.motion, backend.body.procedural, backend.body.bvh; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_reads_plain_smpl_poses_dropping_its_hand_joints(tmp_path: Path) -> None:
    poses = np.zeros((4, 72))
    poses[:, 3 * JOINT_INDEX["right_elbow"] + 1] = 0.7
    poses[:, 66:] = 1.0  # SMPL's L_Hand / R_Hand: no SMPL-X counterpart
    np.savez(tmp_path / "smpl.npz", poses=poses, trans=np.zeros((4, 3)), mocap_framerate=np.array(30.0))
    m = load_amass(tmp_path / "smpl.npz")
    assert m.source_model == "smpl" and m.full_pose()[0, JOINT_INDEX["right_elbow"], 1] == 0.7
    assert not m.left_hand_pose.any() and not m.right_hand_pose.any()


def test_frames_slices_and_divides_the_rate() -> None:
    m = random_motion(n=121, fps=120.0)
    sub = m.frames(0, None, 4)
    assert sub.n_frames == 31 and sub.fps == 30.0
    np.testing.assert_array_equal(sub.body_pose, m.body_pose[::4])


def test_amass_z_up_world_is_converted_to_the_protocols_y_up(tmp_path: Path) -> None:
    # An upright AMASS body: root +90 deg about x (SMPL-X's Y-up body stood up in a Z-up world),
    # pelvis 0.9 m above the floor along z. In the protocol's Y-up world that is no root rotation
    # and the pelvis's height along +y.
    n, pelvis = 4, np.array([0.0, -0.26, 0.0])
    trans_z_up = np.tile([0.3, 0.2, 0.9], (n, 1)) - pelvis  # posed pelvis = rest pelvis + trans
    np.savez(
        tmp_path / "upright.npz",
        poses=np.tile(np.r_[np.pi / 2, 0.0, 0.0, np.zeros(153)], (n, 1)),
        trans=trans_z_up,
        betas=np.zeros(16),
        mocap_framerate=np.array(30.0),
    )
    m = load_amass(tmp_path / "upright.npz", rest_pelvis=pelvis)
    np.testing.assert_allclose(m.global_orient, 0.0, atol=1e-12)
    # the pelvis lands at Z-up (0.3, 0.2, 0.9) -> Y-up (0.3, 0.9, -0.2)
    np.testing.assert_allclose(m.transl + pelvis, np.tile([0.3, 0.9, -0.2], (n, 1)), atol=1e-12)
    raw = load_amass(tmp_path / "upright.npz", z_up=False)
    np.testing.assert_allclose(raw.global_orient[:, 0], np.pi / 2)


def test_amass_axis_conversion_round_trips_with_any_pelvis(tmp_path: Path) -> None:
    m = random_motion()
    pelvis = np.array([0.01, -0.33, 0.02])
    path = save_amass(m, tmp_path / "m.npz", rest_pelvis=pelvis)
    with np.load(path) as raw:
        assert not np.allclose(raw["trans"], m.transl)  # the file really is in the other world
    back = load_amass(path, rest_pelvis=pelvis)
    np.testing.assert_allclose(back.transl, m.transl, atol=1e-9)
    np.testing.assert_allclose(
        Rotation.from_rotvec(back.global_orient).as_matrix(),
        Rotation.from_rotvec(m.global_orient).as_matrix(),
        atol=1e-9,
    )
