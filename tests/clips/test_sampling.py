"""Sampling: mirrored motions, motion files through the spec, placement, per-clip seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.body.bvh import save_bvh
from backend.body.loading import load_body_model
from backend.body.motion import save_amass
from backend.body.procedural import load_motion
from backend.clips import read_clip
from backend.clips.dataset import render_dataset
from backend.clips.sample import (
    PlacementError,
    mirror_joint_index,
    mirror_motion,
    place_people,
    plan_clip,
    pose,
)
from backend.clips.spec import ClipSpec, load_spec
from protocol.smplx import PER_FRAME_FIELDS


def _params(motion, model) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    out = {k: getattr(motion, k).astype(np.float32) for k in PER_FRAME_FIELDS}
    out["betas"] = np.zeros(model.num_betas, np.float32)
    out["expression"] = np.zeros(model.num_expression, np.float32)
    return out


def test_a_mirrored_motion_poses_the_mirror_image_of_the_body() -> None:
    model = load_body_model("neutral")
    walk = load_motion("walk", n_frames=5)
    twice = mirror_motion(mirror_motion(walk))
    assert np.allclose(twice.full_pose(), walk.full_pose()) and np.allclose(twice.transl, walk.transl)
    verts, joints = pose(model, _params(walk, model))
    mirrored, mirrored_joints = pose(model, _params(mirror_motion(walk), model))
    flip = np.array([-1.0, 1.0, 1.0])
    swap = mirror_joint_index()
    assert np.abs(mirrored_joints[:, :55] - joints[:, swap] * flip).max() < 1e-5
    error = np.abs(mirrored - verts[:, model.mirror_vertex_index()] * flip).max(-1)
    # all but a few thigh vertices (whose 4 strongest skinning weights are not mirror images in
    # the stand-in: a property of the body, not of the mirrored motion) match to float precision
    assert (error > 1e-5).mean() < 0.005 and error.max() < 0.01


def test_motion_files_from_the_spec_folder(tmp_path: Path) -> None:
    model = load_body_model("neutral")
    walk = load_motion("walk", n_frames=12)
    save_amass(walk, tmp_path / "walk_stageii.npz")
    save_bvh(load_motion("wave", n_frames=12), tmp_path / "wave.bvh", model.rest_joints().numpy())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({
        "clips": 2, "frames": 3, "width": 32, "height": 32, "seed": 5,
        "motion": {"sources": ["walk_stageii.npz", "wave.bvh"], "mirror": 1.0, "speed": 1.0},
        "cameras": ["dolly:1"], "passes": ["depth"]}))
    spec = load_spec(spec_file)
    assert all(Path(s).is_absolute() for s in spec.motion.sources)
    render_dataset(spec, tmp_path / "out")
    sources = {read_clip(tmp_path / "out", i, images=False).info["people"][0]["source"] for i in range(2)}
    assert sources <= set(spec.motion.sources)
    clip = read_clip(tmp_path / "out", 0, images=False)
    assert clip.info["people"][0]["mirrored"] is True and clip.cameras["cam_00"].rgb is None
    centre = np.array(clip.info["scene_centre"])
    cam = clip.cameras["cam_00"]
    eye = -np.einsum("fji,fj->fi", cam.R, cam.t)  # camera centres
    distance = np.linalg.norm(eye - centre, axis=1)
    assert distance[-1] < 0.95 * distance[0]  # the dolly moves in


def test_people_are_on_the_ground_and_apart() -> None:
    spec = ClipSpec.parse({"frames": 6, "people": {"count": 4, "area": 5.0},
                           "motion": {"sources": ["walk", "turn"]}, "width": 16, "height": 16,
                           "cameras": ["orbit:1"]})
    plan = plan_clip(spec, 0)
    assert len(plan.people) == 4
    lows = [verts[..., 1].min() for verts, _ in plan.posed]
    assert np.allclose(lows, 0.0, atol=1e-5)
    for a in range(4):
        for b in range(a + 1, 4):  # no vertex of one body inside the other's footprint circle
            va, ka = plan.posed[a]
            vb, kb = plan.posed[b]
            ra = np.linalg.norm(va[..., [0, 2]] - ka[:, :1, [0, 2]], axis=-1).max()
            rb = np.linalg.norm(vb[..., [0, 2]] - kb[:, :1, [0, 2]], axis=-1).max()
            gap = np.linalg.norm(ka[:, 0, [0, 2]] - kb[:, 0, [0, 2]], axis=-1).min()
            assert gap >= ra + rb
    with pytest.raises(PlacementError, match="cannot place person 2"):
        place_people([(np.zeros((3, 2)), 1.0)] * 2, area=0.5, margin=0.0, rng=np.random.default_rng(0))


def test_a_clip_depends_on_its_index_and_the_seed_only() -> None:
    base = {"frames": 2, "width": 16, "height": 16, "people": {"count": [1, 3]}, "seed": 11}
    small = ClipSpec.parse({**base, "clips": 2})
    large = ClipSpec.parse({**base, "clips": 50})
    a, b = plan_clip(small, 1), plan_clip(large, 1)
    assert np.array_equal(a.cameras[0].R, b.cameras[0].R)
    assert len(a.people) == len(b.people)
    assert all(np.array_equal(p.params["body_pose"], q.params["body_pose"])
               for p, q in zip(a.people, b.people, strict=True))
    assert not np.array_equal(plan_clip(large, 2).cameras[0].R, a.cameras[0].R)
