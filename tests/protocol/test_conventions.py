"""One home per convention (issue 10, item 2): world axes, artifact names, job states, the data dir,
the SMPL-X pose layout and one camera frame live in ``protocol/``; the server and the client use
those very objects (the add-on's side is tests/blender/test_amass_both_sides.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from protocol_fakes import KEY, FakeServer

from protocol import Client, ConnectionInfo, ProtocolError, cameras, messages
from protocol import axes as protocol_axes
from protocol.artifact_names import ArtifactNameError, artifact_path, check_artifact_name
from protocol.cameras import CameraFrame, CameraPath, orbit_path
from protocol.connection import DATA_DIR_ENV, default_data_dir
from protocol.smplx import NUM_JOINTS, PER_FRAME_FIELDS, POSE_FIELDS, join_full_pose, split_full_pose

HOSTILE_NAMES = [
    "",
    "..",
    "../x",
    "a/../../x",
    "/etc/passwd",
    "//server/share",
    "a//b",
    "a/",
    "./a",
    ".",
    "x\x00y",
    "a\\b",
    "..\\..\\x",
    "C:x",
    "C:/Windows/x",
    "a.png:stream",
    "line\nbreak",
    "del\x7f",
    "x" * 513,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_artifact_names_are_refused(name: str) -> None:
    with pytest.raises(ArtifactNameError):
        check_artifact_name(name)
    with pytest.raises(ProtocolError):  # what a client catches
        artifact_path(name)
    with pytest.raises(ValueError):  # what job code on the server catches
        check_artifact_name(name)


@pytest.mark.parametrize("name", [None, 5, b"counts", ["a"]])
def test_non_string_artifact_names_are_refused(name: object) -> None:
    with pytest.raises(ArtifactNameError):
        check_artifact_name(name)


def test_good_artifact_names_pass_unchanged() -> None:
    for name in ("counts", "rgb/0001.png", "a.b/c-d_e.npy", "x" * 512, "pose/frame 7.png", "é/ü.txt"):
        assert check_artifact_name(name) == name
        assert artifact_path(name).as_posix() == name


def test_server_and_client_use_the_protocols_name_rule() -> None:
    from backend.server import artifacts

    assert artifacts.check_artifact_name is check_artifact_name
    assert artifacts.ArtifactNameError is ArtifactNameError


def test_client_download_refuses_a_hostile_name_from_the_server(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    client = Client(ConnectionInfo(address=fake_server.address, key=KEY.decode()), request_timeout_s=5.0)
    try:
        job_id = client.submit("test.count", {"steps": 1})
        view = client.wait(job_id, timeout=10)
        view.artifacts = [{**view.artifacts[1], "name": "../escape.txt"}]  # as a hostile server sends
        with pytest.raises(ArtifactNameError):
            client.download(job_id, tmp_path / "out")
    finally:
        client.close()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()


def test_terminal_job_states_have_one_home() -> None:
    from backend.server.jobstore import Job

    assert {"succeeded", "failed", "cancelled"} == messages.TERMINAL_STATES
    assert set(messages.JOB_STATES) - messages.TERMINAL_STATES == {"queued", "running"}
    for state in messages.JOB_STATES:  # the server's job record and the state machine agree with it
        job = Job(job_id="j", kind="k", params={}, state=state)
        assert job.terminal == (state in messages.TERMINAL_STATES)
        assert (messages.TRANSITIONS[state] == frozenset()) == (state in messages.TERMINAL_STATES)


def test_the_data_dir_variable_has_one_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from backend.body import paths
    from backend.server import worker

    assert worker.DATA_DIR_ENV == DATA_DIR_ENV == "AVATAR_STUDIO_DATA_DIR"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "d"))
    assert paths.data_dir() == default_data_dir() == tmp_path / "d"
    assert paths.standin_dir() == tmp_path / "d" / "body"


def test_axes_are_one_rotation_used_by_the_camera_math() -> None:
    w = protocol_axes.Y_UP_FROM_Z_UP
    np.testing.assert_array_equal(w @ w.T, np.eye(3))
    assert np.linalg.det(w) == 1.0
    np.testing.assert_array_equal(protocol_axes.z_up_to_y_up([1.0, 2.0, 3.0]), [1.0, 3.0, -2.0])
    np.testing.assert_array_equal(protocol_axes.y_up_to_z_up([1.0, 3.0, -2.0]), [1.0, 2.0, 3.0])
    assert cameras.BLENDER_TO_PROTOCOL is w and cameras.PROTOCOL_TO_BLENDER is protocol_axes.Z_UP_FROM_Y_UP
    with pytest.raises(ValueError):  # nobody can change the convention in place
        w[0, 0] = 2.0


def test_the_backend_motion_uses_the_protocols_axes() -> None:
    from backend.body import motion
    from protocol import amass

    assert motion.MotionFormatError is amass.AmassFormatError
    m = motion.Motion.zeros(1)
    m.global_orient[0] = [np.pi / 2, 0.0, 0.0]  # an AMASS-style upright root
    moved = motion.change_world_axes(m, protocol_axes.Y_UP_FROM_Z_UP, rest_pelvis=np.zeros(3))
    np.testing.assert_allclose(moved.global_orient, 0.0, atol=1e-12)


def test_pose_fields_cover_the_joints_once_in_payload_order() -> None:
    covered = [j for _, first, count in POSE_FIELDS for j in range(first, first + count)]
    assert covered == list(range(NUM_JOINTS))
    assert {name: 3 * count for name, _, count in POSE_FIELDS} == {
        k: v for k, v in PER_FRAME_FIELDS.items() if k != "transl"
    }
    assert list(PER_FRAME_FIELDS)[:4] == ["global_orient", "body_pose", "left_hand_pose", "right_hand_pose"]
    pose = np.random.default_rng(0).normal(size=(3, NUM_JOINTS, 3))
    fields = split_full_pose(pose)
    np.testing.assert_array_equal(fields["jaw_pose"], pose[:, 22])
    np.testing.assert_array_equal(fields["right_hand_pose"], pose[:, 40:].reshape(3, 45))
    np.testing.assert_array_equal(join_full_pose(fields), pose)


def test_the_body_model_reads_the_protocols_pose_layout() -> None:
    from backend.body import model

    assert model.POSE_WIDTHS is PER_FRAME_FIELDS


def test_a_camera_frame_is_one_frame_of_a_path() -> None:
    path = orbit_path(4, width=64, height=48, names=["a", "b", "c", "d"])
    frame = path.frame(2)
    np.testing.assert_array_equal(frame.K, path.K[2])
    np.testing.assert_array_equal(frame.R, path.R[2])
    np.testing.assert_array_equal(frame.centre, path.centers()[2])
    assert (frame.width, frame.height, frame.near, frame.far, frame.name) == (64, 48, 0.1, 100.0, "c")
    points = np.array([[0.0, 0.0, 0.0], [0.1, 0.5, -0.2]])
    pixels, depth = frame.project(points)
    all_pixels, all_depth = path.project(points)
    np.testing.assert_allclose(pixels, all_pixels[2])
    np.testing.assert_allclose(depth, all_depth[2])
    back = CameraFrame.from_payload(frame.to_payload())
    np.testing.assert_array_equal(back.t, frame.t)
    assert path.frame(-1).name == "d"
    frame.K[0, 0] = 1.0  # a frame holds its own copy: the path it came from is unchanged
    assert path.K[2, 0, 0] != 1.0 and frame.K[0, 0] == 1.0
    with pytest.raises(IndexError):
        path.frame(4)


def test_a_camera_frame_obeys_the_paths_rules() -> None:
    good = {"K": np.eye(3), "R": np.eye(3), "t": np.zeros(3), "width": 8, "height": 8}
    CameraFrame(**good)
    for bad in ({"R": np.diag([1.0, 1.0, -1.0])}, {"R": 2 * np.eye(3)}, {"width": 0}, {"t": [np.nan, 0, 0]},
                {"near": 5.0, "far": 1.0}):
        with pytest.raises(ValueError):
            CameraFrame(**{**good, **bad})
    with pytest.raises(ValueError, match="one frame"):
        CameraFrame.from_payload(CameraPath.from_payload({**good, "K": np.stack([np.eye(3)] * 2),
                                                          "R": np.stack([np.eye(3)] * 2),
                                                          "t": np.zeros((2, 3))}).to_payload())


def test_views_store_their_cameras_as_camera_path_frames(tmp_path: Path) -> None:
    import json

    from backend.avatar.io.views import DEFAULT_NEAR, View, ViewSet, ViewsFormatError, read_views, write_views

    frame = orbit_path(2, width=16, height=12, near=0.2).frame(1)
    write_views(tmp_path, ViewSet([View("v", frame, np.zeros((12, 16, 4), np.float32))]))
    back = read_views(tmp_path).views[0].camera
    assert isinstance(back, CameraFrame) and back.near == 0.2
    np.testing.assert_allclose(back.R, frame.R)
    manifest_path = tmp_path / "views.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["views"][0]["near"]  # manifests without a clip distance keep the old default
    manifest_path.write_text(json.dumps(manifest))
    assert read_views(tmp_path).views[0].camera.near == DEFAULT_NEAR
    for hostile in ({"R": (2 * np.eye(3)).tolist()}, {"K": "x"}, {"width": -4}, {"t": [1.0, 2.0]}):
        manifest_path.write_text(json.dumps({**manifest, "views": [{**manifest["views"][0], **hostile}]}))
        with pytest.raises(ViewsFormatError):
            read_views(tmp_path)
