"""The add-on's job params are built from the contracts (protocol/kinds.py) and pass them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from protocol import kinds
from protocol.cameras import orbit_path

job_params = pytest.importorskip("blender_addon.job_params")


def _motion(frames: int = 3) -> dict:
    pose = kinds.names(kinds.SMPLX_POSE)
    return {
        pose.global_orient: np.zeros((frames, 3)),
        pose.body_pose: np.zeros((frames, 63)),
        pose.transl: np.zeros((frames, 3)),
        pose.betas: np.zeros(10),
        pose.expression: np.zeros(10),
        pose.gender: "female",
        pose.fps: 24.0,
        pose.frame_start: 1,
    }


def test_every_builder_passes_its_contract() -> None:
    settings = SimpleNamespace(betas=[0.5] * 10, expression=[0.0] * 10, gender="male")
    shape = job_params.shape_params(settings)
    for params in (
        job_params.body_mesh_params(shape),
        job_params.body_mesh_params(shape, _motion()),
        job_params.body_mesh_params(job_params.default_shape("neutral")),
    ):
        kinds.validate("body.mesh", params)
    path = orbit_path(3, radius=3.0, width=64, height=48)
    preview = job_params.body_preview_params(_motion(), path, ["mask", "pose", "bogus"])
    kinds.validate("body.preview", preview)
    assert preview[job_params.PREVIEW.passes] == ["rgb", "mask", "pose"]
    for quality in job_params.AVATAR_QUALITY:
        kinds.validate("avatar.from_views", job_params.synthetic_avatar_params(quality, "tall", True, False))
    assert job_params.motion_frames(_motion(5)) == 5


def test_a_param_missing_from_the_contract_fails_at_import_time() -> None:
    with pytest.raises(AttributeError):
        _ = job_params.MESH.model_path


def test_clips_params_with_scene_bodies_pass_the_contract() -> None:
    settings = SimpleNamespace(clips=2, seed=3, passes={"rgb", "overlay"}, rig="ring", rig_count=2,
                               width=64, height=48, frames=9, people=1, people_max=2, motion="walk",
                               motion_path="")
    bodies = [_motion(3), _motion(3)]
    for paths in (None, [orbit_path(3, radius=3.0, width=64, height=48)]):
        params = job_params.clips_render_params(settings, paths, bodies)
        typed = kinds.parse("clips.render", params)
        assert len(typed.bodies) == 2 and typed.passes == ["rgb", "overlay"]
        assert typed.frames is None  # the bodies' (or the paths') own frames
        assert job_params.CLIPS.people not in params and job_params.CLIPS.motions not in params
    sampled = kinds.parse("clips.render", job_params.clips_render_params(settings))
    assert sampled.bodies is None and sampled.people == [1, 2] and sampled.frames == 9
