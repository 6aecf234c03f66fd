"""Optical flow against analytic motion, and the mp4 per camera."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from backend.clips.dataset import render_dataset
from backend.clips.read import read_clip
from backend.clips.render import project, render_clip
from backend.clips.sample import plan_clip
from backend.clips.spec import ClipSpec

STEP = np.array([0.03, 0.01, -0.04])  # metres per frame


def _backproject(cam, f: int, ys: np.ndarray, xs: np.ndarray, depth: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    d = depth[f, ys, xs].astype(np.float64)
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(d)], 1)
    cam_pts = (pix @ np.linalg.inv(cam.K[f]).T) * d[:, None]
    return (cam_pts - cam.t[f]) @ cam.R[f]


@pytest.mark.parametrize("camera", ["ring:1", "orbit:1"])
def test_flow_of_a_translated_body_is_the_analytic_displacement(tmp_path: Path, camera: str) -> None:
    spec = ClipSpec.parse({"frames": 4, "width": 128, "height": 96, "seed": 5, "cameras": [camera],
                           "motion": {"sources": ["a-pose"]},
                           "passes": ["depth", "instance", "flow"]})
    plan = plan_clip(spec, 0)
    # Move the posed body rigidly by STEP per frame (the GT writer renders plan.posed).
    plan.posed = [(v + (np.arange(4)[:, None, None] * STEP).astype(np.float32), k) for v, k in plan.posed]
    out = tmp_path / "clip"
    render_clip(plan, out, spec.passes)
    flow = np.load(out / "cam_00/flow.npy")
    depth = np.load(out / "cam_00/depth.npy")
    cams = np.load(out / "cam_00/camera.npz")

    class Cam:
        K, R, t = cams["K"], cams["R"], cams["t"]

    assert flow.shape == (4, 96, 128, 2) and flow.dtype == np.float32
    assert not flow[3].any()  # the last frame has no next one
    worst = 0.0
    for f in range(3):
        ys, xs = np.nonzero(depth[f] > 0)
        assert len(ys) > 200
        world = _backproject(Cam, f, ys, xs, depth)
        here, _ = project(world[None], Cam.K[f:f + 1], Cam.R[f:f + 1], Cam.t[f:f + 1])
        there, _ = project((world + STEP)[None], Cam.K[f + 1:f + 2], Cam.R[f + 1:f + 2], Cam.t[f + 1:f + 2])
        expected = there[0] - here[0]
        worst = max(worst, float(np.abs(flow[f, ys, xs] - expected).max()))
        assert np.abs(expected).max() > 0.5  # the motion is visible
    print(f"worst flow error {worst:.2e} px")
    assert worst < 0.05


def test_ground_flow_is_zero_for_a_fixed_camera(tmp_path: Path) -> None:
    spec = ClipSpec.parse({"frames": 3, "width": 96, "height": 72, "seed": 1, "cameras": ["ring:1"],
                           "passes": ["instance", "scene_depth", "flow"]})
    render_dataset(spec, tmp_path / "ds")
    folder = tmp_path / "ds/clips/000000/cam_00"
    flow, scene = np.load(folder / "flow.npy"), np.load(folder / "scene_depth.npy")
    instance = np.load(folder / "instance.npy")
    ground = (scene[0] > 0) & (instance[0] == 0)
    assert ground.sum() > 100
    assert np.abs(flow[0][ground]).max() < 1e-3
    assert np.abs(flow[0][instance[0] > 0]).max() > 0.01  # the walker moves


@pytest.mark.parametrize("size", [(64, 48), (63, 47)])
def test_mp4_per_camera_has_every_frame(tmp_path: Path, size: tuple[int, int]) -> None:
    w, h = size
    spec = ClipSpec.parse({"frames": 5, "width": w, "height": h, "seed": 2, "cameras": ["ring:2"],
                           "passes": ["rgb"], "video": True})
    assert "mp4" in spec.passes
    render_dataset(spec, tmp_path / "ds")
    clip = read_clip(tmp_path / "ds", 0)
    for name, cam in clip.cameras.items():
        path = tmp_path / "ds/clips/000000" / name / "rgb.mp4"
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = reader.__next__()
        frames = [np.frombuffer(f, np.uint8).reshape(h + h % 2, w + w % 2, 3) for f in reader]
        assert tuple(meta["size"]) == (w + w % 2, h + h % 2)  # odd sides padded to even
        assert len(frames) == 5
        # Lossy, but the same pictures as the PNGs.
        assert cam.rgb is not None
        err = np.abs(frames[2][:h, :w].astype(int) - cam.rgb[2].astype(int)).mean()
        assert err < 12


def test_every_new_pass_is_byte_identical_with_1_and_2_workers(tmp_path: Path) -> None:
    spec = ClipSpec.parse({"clips": 2, "frames": 3, "width": 64, "height": 48, "seed": 9,
                           "people": {"count": [1, 2], "area": 3.0}, "cameras": ["ring:1", "handheld:1"],
                           "passes": ["rgb", "depth", "instance", "scene_depth", "flow", "mp4"]})
    render_dataset(spec, tmp_path / "a")
    render_dataset(spec, tmp_path / "b", workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {"rgb.mp4", "flow.npy", "scene_depth.npy"} <= {p.name for p in files}
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    clip = read_clip(tmp_path / "a", 1)
    cam = clip.cameras["cam_01"]
    assert cam.flow is not None and cam.flow.shape == (3, 48, 64, 2)
    assert cam.scene_depth is not None and (cam.scene_depth >= cam.depth).all()
