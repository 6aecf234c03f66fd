"""``clips.render`` over a real server: progress, the dataset as the job's files, cancel, hostile
params; and the job function itself cancelled mid-way (no partial clip)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_helpers import ServerProcess

from backend.clips import read_clip
from backend.jobs.api import JobCancelled, JobInputError
from backend.jobs.clips import clips_render
from protocol import messages as M
from protocol.cameras import orbit_path
from protocol.client import Client, ServerError


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("clipjob")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    motion = {"poses": np.zeros((20, 165), np.float32), "trans": np.zeros((20, 3), np.float32),
              "mocap_frame_rate": np.array(30.0), "gender": np.array("neutral"),
              "surface_model_type": np.array("smplx")}
    motion["poses"][:, 50] = np.linspace(0.0, 1.0, 20)  # an elbow bends
    np.savez(root / "bend.npz", **motion)
    np.savez(outside / "bend.npz", **motion)
    (root / "escape.npz").symlink_to(outside / "bend.npz")
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def clip_server(roots: dict[str, Path]) -> Iterator[ServerProcess]:
    server = ServerProcess(roots["base"] / "data", "--input-root", str(roots["root"]), workers=1).start()
    yield server
    server.stop()


@pytest.fixture
def client(clip_server: ServerProcess) -> Iterator[Client]:
    with clip_server.client(timeout=30.0) as c:
        yield c


def test_render_progress_and_the_dataset_as_files(client: Client, roots: dict[str, Path],
                                                  tmp_path: Path) -> None:
    path = orbit_path(4, radius=4.0, width=64, height=48)
    params = {"people": 1, "motions": [str(roots["root"] / "bend.npz")],
              "cameras": ["ring:1", path.to_payload()], "clips": 2, "seed": 3,
              "passes": ["rgb", "depth", "instance"]}
    job_id = client.submit("clips.render", params)
    fractions, messages = [], []
    for event in client.events(job_id, timeout=300):
        if event.type == M.JOB_PROGRESS:
            fractions.append(event.content["fraction"])
            messages.append(event.content.get("message", ""))
    view = client.jobs[job_id]
    assert view.state == M.SUCCEEDED, view.error
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3
    assert any("clip 000001 written" in m for m in messages)
    assert view.data["clips"] == 2 and view.data["frames"] == 4 and view.data["cameras"] == 2
    assert view.data["images"] == 2 * 2 * 4 and view.data["folder"] == "dataset"
    names = {a["name"] for a in view.artifacts}
    assert {"dataset/manifest.json", "dataset/coco_person_keypoints.json", "dataset/spec.json"} <= names
    assert "dataset/clips/000001/cam_01/rgb/000003.png" in names
    assert not any(n.endswith(("normal.npy", "part.npy")) for n in names)  # only the asked passes

    client.download(job_id, tmp_path)
    dataset = tmp_path / "dataset"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["counts"]["images"] == 16
    # The explicit camera is rendered exactly as sent; the motion is named as the client gave it.
    clip = read_clip(dataset, 1)
    cam = clip.cameras["cam_01"]
    np.testing.assert_array_equal(cam.K, path.K)
    np.testing.assert_array_equal(cam.R, path.R)
    np.testing.assert_array_equal(cam.t, path.t)
    assert cam.depth.shape == (4, 48, 64) and (cam.instance > 0).any()
    texts = [p.read_text() for p in [dataset / "spec.json", dataset / "manifest.json",
                                     *dataset.glob("clips/*/clip.json")]]
    assert all(str(roots["root"] / "bend.npz") in t for t in texts[:2])
    assert "<data-dir>" not in "".join(texts) and "motions/00-" not in "".join(texts)


def test_cancel_mid_way_ends_the_job_with_no_files(client: Client) -> None:
    job_id = client.submit("clips.render", {"cameras": ["ring:2"], "frames": 64, "size": [128, 128],
                                            "clips": 4, "passes": ["rgb", "depth"]})
    for event in client.events(job_id, timeout=300):
        if event.type == M.JOB_PROGRESS and event.content["fraction"] > 0:
            client.cancel(job_id)
            break
    view = client.wait(job_id, timeout=120)
    assert view.state == M.CANCELLED
    assert not view.artifacts


def _refusal(client: Client, params: dict[str, Any]) -> str:
    with pytest.raises(ServerError) as err:
        client.submit("clips.render", params)
    assert err.value.remote_ename == M.E_BAD_REQUEST
    return err.value.evalue


def test_hostile_params_are_refused_naming_the_field(client: Client, roots: dict[str, Path]) -> None:
    before = len(client.list_jobs())
    bad_k = orbit_path(2, width=32, height=32).to_payload()
    bad_k["K"][1, 0, 0] = np.nan
    cases = [
        ({"size": [100_000, 100_000]}, "params.size[0]: must be an int in [1, 2048]"),
        ({"frames": 10**9}, "params.frames: must be an int in [1, 1000]"),
        ({"cameras": [bad_k]}, "params.cameras[0].K: must hold finite numbers only"),
        ({"cameras": ["ring:0"]}, "params.cameras[0]: must be camera rig"),
        ({"people": 9}, "params.people: must be an int in [1, 4]"),
        ({"motions": ["fly"]}, "params.motions[0]: must be"),
        ({"passes": ["x-ray"]}, "params.passes[0]: must be one of rgb"),
    ]
    for params, expected in cases:
        assert _refusal(client, params).startswith(expected)
    # Paths outside the roots (existing, missing, a symlink out): one message, existence never told.
    outside = [roots["outside"] / "bend.npz", roots["outside"] / "none.npz", roots["root"] / "escape.npz",
               Path("../../outside/bend.npz")]
    answers = {_refusal(client, {"motions": ["walk", str(p)]}) for p in outside}
    assert answers == {"params.motions[1]: not a readable file inside the server's input roots "
                       "(see `serve --input-root`)"}
    assert len(client.list_jobs()) == before  # nothing was stored


def test_over_budget_or_inconsistent_cameras_fail_before_rendering(client: Client) -> None:
    not_rotation = orbit_path(2, width=32, height=32).to_payload()
    not_rotation["R"][0] *= 2.0
    cases = [
        ({"clips": 1000, "frames": 1000, "cameras": ["ring:64"]}, "one job renders at most 5000"),
        ({"cameras": [not_rotation]}, "cameras[0].path: invalid camera path payload: R must be rotation"),
        ({"cameras": [orbit_path(2, width=32, height=32).to_payload()], "frames": 3},
         "cameras[0].path: 2 frames of 32x32, the spec renders 3 of 32x32"),
    ]
    for params, expected in cases:
        view = client.wait(client.submit("clips.render", params), timeout=120)
        assert view.state == M.FAILED and view.error["ename"] == "JobInputError"
        assert expected in view.error["evalue"], view.error
        assert not view.artifacts


class _CancelAfter:
    """A job context whose cancel arrives after ``frames`` images were reported."""

    def __init__(self, work_dir: Path, frames: int) -> None:
        self.work_dir = work_dir
        self.frames = frames
        self.seen = 0.0

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview: Any = None) -> None:
        self.seen = fraction

    def check_cancelled(self) -> None:
        if self.seen * 3 * 16 >= self.frames:
            raise JobCancelled("cancelled by request")


def test_a_cancel_between_frames_leaves_complete_clips_only(tmp_path: Path) -> None:
    # 3 clips x 1 camera x 16 frames, cancelled after 24 images: in clip 1, after its first chunk.
    ctx = _CancelAfter(tmp_path, 24)
    with pytest.raises(JobCancelled):
        clips_render({"cameras": ["ring:1"], "frames": 16, "size": [32, 32], "clips": 3}, ctx)
    clips = tmp_path / "dataset" / "clips"
    assert sorted(p.name for p in clips.iterdir()) == ["000000"]  # no 000001, no .tmp-000001-*
    assert len(list((clips / "000000" / "cam_00" / "rgb").glob("*.png"))) == 16
    assert read_clip(tmp_path / "dataset", 0).cameras["cam_00"].depth.shape == (16, 32, 32)


def test_trusted_local_call_reports_a_bad_spec_as_input_error(tmp_path: Path) -> None:
    with pytest.raises(JobInputError, match=r"params\.size"):
        clips_render({"size": [0, 0]}, _CancelAfter(tmp_path, 10**9))


def test_a_dataset_over_the_artifact_quota_fails_the_job(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--artifact-quota", "300K", workers=1).start()
    try:
        with server.client(timeout=30.0) as c:
            view = c.wait(c.submit("clips.render", {"cameras": ["ring:2"], "frames": 8, "size": [128, 128]}),
                          timeout=300)
    finally:
        server.stop()
    assert view.state == M.FAILED and "the artifact store is full" in view.error["evalue"], view.error
    assert not view.artifacts
