"""body.preview / body.mesh run in-process with a fake job context (real body model, real files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from backend.body.procedural import procedural_motion
from backend.jobs.api import JobCancelled, JobInputError, get_job_kind
from backend.preview.video import decode_depth_uint16, read_mp4_frame_count
from protocol.cameras import orbit_path
from protocol.kinds import check_result


@dataclass
class FakeContext:
    work_dir: Path
    cancel_after: int | None = None  # raise on this many-th check_cancelled call
    events: list[tuple[float, str, str]] = field(default_factory=list)
    checks: int = 0

    def progress(self, fraction: float, message: str = "", *, stage: str = "", preview=None) -> None:
        self.events.append((fraction, message, stage))

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.cancel_after is not None and self.checks >= self.cancel_after:
            raise JobCancelled()


def test_body_preview_orbit(tmp_path: Path) -> None:
    run = get_job_kind("body.preview").load()
    ctx = FakeContext(tmp_path)
    result = run({"motion": "wave", "cameras": "orbit:3", "frames": 3, "size": "96x128"}, ctx)
    assert check_result("body.preview", result.data, result.arrays) == []  # protocol/kinds.py
    for pass_name in ("rgb", "mask", "depth", "normal", "pose"):
        names = sorted(k for k in result.files if k.startswith(pass_name + "/"))
        assert names == [f"{pass_name}/000{i}.png" for i in (1, 2, 3)]
    rgb = iio.imread(result.files["rgb/0002.png"])
    mask = iio.imread(result.files["mask/0002.png"])
    depth = iio.imread(result.files["depth/0002.png"])
    normal = iio.imread(result.files["normal/0002.png"])
    pose = iio.imread(result.files["pose/0001.png"])
    assert rgb.shape == (128, 96, 3) and mask.shape == (128, 96) and depth.dtype == np.uint16
    fg = mask > 0
    assert 0.05 < fg.mean() < 0.7, "the body fills a sensible part of the frame"
    assert (rgb[fg].sum(-1) > 0).all() and (rgb[~fg] == 0).all()
    assert ((depth > 0) == fg).all() and (normal[fg].sum(-1) > 0).all()
    metres = decode_depth_uint16(depth, tuple(result.data["depth_range"]))
    assert 1.0 < metres[fg].min() < metres[fg].max() < 10.0
    assert pose.shape == (128, 96, 3) and (pose.sum(-1) > 0).sum() > 50
    assert read_mp4_frame_count(result.files["rgb.mp4"]) == 3
    assert result.arrays["camera_K"].shape == (3, 3, 3) and result.arrays["joints_2d"].shape == (3, 127, 2)
    assert result.data["frames"] == 3 and result.data["width"] == 96 and result.data["height"] == 128
    # Visible joints project inside the body's mask (they are inside the body).
    names = result.data["keypoint_names"]
    masks = [iio.imread(result.files[f"mask/000{i}.png"]) > 0 for i in (1, 2, 3)]
    body_joints = [names.index(n) for n in ("pelvis", "spine3", "neck", "left_knee", "right_hip", "head")]
    for f in range(3):
        xy, vis = result.arrays["joints_2d"][f], result.arrays["joints_visible"][f].astype(bool)
        for j in body_joints:
            x, y = np.floor(xy[j]).astype(int)
            assert 0 <= x < 96 and 0 <= y < 128
            if vis[j]:
                assert masks[f][y, x], f"frame {f}: {names[j]} projects outside the mask"
        assert vis[body_joints].sum() >= 3
    fractions = [e[0] for e in ctx.events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("frame" in e[1] for e in ctx.events) == 3 and ctx.checks >= 3


def test_body_preview_with_camera_path_and_cancel(tmp_path: Path) -> None:
    run = get_job_kind("body.preview").load()
    cams = orbit_path(2, radius=3.2, target=(0.0, -0.3, 0.0), width=64, height=80).to_payload()
    result = run({"motion": "a-pose", "cameras": cams, "passes": ["mask"], "mp4": False},
                 FakeContext(tmp_path / "a"))
    assert sorted(result.files) == ["mask/0001.png", "mask/0002.png"]
    assert iio.imread(result.files["mask/0001.png"]).shape == (80, 64)
    ctx = FakeContext(tmp_path / "b", cancel_after=3)
    with pytest.raises(JobCancelled):
        run({"motion": "walk", "cameras": "orbit:6", "frames": 6, "size": [48, 48]}, ctx)
    assert not (tmp_path / "b" / "rgb" / "0003.png").exists()


@pytest.mark.parametrize("params", [
    {"motion": "moonwalk"}, {"cameras": "ring:3"}, {"size": "big"}, {"passes": ["albedo"]},
    {"cameras": {"K": [[1, 0, 0]]}}, {"motion": "/nonexistent/file.npz"},
])
def test_body_preview_rejects_bad_params(params: dict, tmp_path: Path) -> None:
    with pytest.raises(JobInputError):
        get_job_kind("body.preview").load()({**params, "frames": 1, "size": params.get("size", "32x32")},
                                            FakeContext(tmp_path))


def test_body_mesh_arrays(tmp_path: Path) -> None:
    run = get_job_kind("body.mesh").load()
    ctx = FakeContext(tmp_path)
    result = run({"motion": "walk", "frames": 4, "betas": [1.0, 0.5]}, ctx)
    assert check_result("body.mesh", result.data, result.arrays) == []  # protocol/kinds.py
    a = result.arrays
    assert a["rest_vertices"].shape == (10475, 3) and a["faces"].shape == (20908, 3)
    assert a["faces"].dtype == np.int32 and a["weights"].shape == (10475, 55)
    assert np.allclose(a["weights"].sum(1), 1.0, atol=1e-4)
    assert a["parents"].shape == (55,) and a["parents"][0] == -1 and a["joints_rest"].shape == (55, 3)
    assert a["part_labels"].shape == (10475,) and a["part_labels"].max() < len(result.data["part_names"])
    assert a["posed_vertices"].shape == (4, 10475, 3) and a["joint_transforms"].shape == (4, 55, 4, 4)
    assert np.isfinite(a["posed_vertices"]).all()
    assert not np.allclose(a["posed_vertices"][0], a["posed_vertices"][3]), "the walk moves"
    assert len(result.data["joint_names"]) == 55 and result.data["n_frames"] == 4
    # Joint transform translations are the posed joints; rotations are proper.
    rot = a["joint_transforms"][..., :3, :3]
    assert np.allclose(np.linalg.det(rot), 1.0, atol=1e-4)
    assert ctx.events and ctx.events[-1][0] >= 0.9
    taller = run({"motion": "a-pose", "betas": [2.0]}, FakeContext(tmp_path))
    base = run({"motion": "a-pose"}, FakeContext(tmp_path))
    height = lambda r: np.ptp(r.arrays["rest_vertices"][:, 1])  # noqa: E731
    assert height(taller) != pytest.approx(height(base))


def test_body_mesh_from_pose_payload(tmp_path: Path) -> None:
    payload = procedural_motion("turn", 3).to_payload()
    result = get_job_kind("body.mesh").load()({"pose": payload}, FakeContext(tmp_path))
    assert result.arrays["posed_vertices"].shape == (3, 10475, 3)
    with pytest.raises(JobInputError):
        get_job_kind("body.mesh").load()({"pose": "nope"}, FakeContext(tmp_path))


def test_preview_and_body_mesh_share_one_cached_body_per_process() -> None:
    """Both load through backend.body.loading (not through each other), one model per (gender, file)."""
    import backend.jobs.body as jobs_body
    import backend.preview.pipeline as preview
    from backend.body.loading import load_body_model

    assert preview.load_body_model is load_body_model
    assert not hasattr(jobs_body, "load_body_model")  # imported inside body_mesh, from backend.body
    assert load_body_model("neutral") is load_body_model("neutral")
    assert load_body_model("neutral").faces.shape == (20908, 3)
