"""Explicit people (``people.explicit``, the ``clips.render`` ``bodies`` param): rendered with exactly
the given SMPL-X parameters where they are; bad ones refused naming the field. And the optional
``overlay`` pass (``clips vis``'s drawing per frame)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.body.loading import load_body_model
from backend.body.procedural import load_motion
from backend.clips.dataset import render_dataset
from backend.clips.sample import plan_clip, pose
from backend.clips.spec import ClipSpec, SpecError
from backend.clips.vis import draw_frame
from backend.jobs.clips import spec_object
from protocol import kinds
from protocol.smplx import PER_FRAME_FIELDS

FRAMES = 3


def payload(motion: str, shift: float, gender: str = "neutral", seed: int = 0) -> dict:
    """An SMPL-X payload (the contract's SMPLX_POSE) as the add-on exports it: float64 lists."""
    m = load_motion(motion, n_frames=FRAMES, fps=30.0)
    rng = np.random.default_rng(seed)
    out = {k: np.asarray(getattr(m, k), np.float64) for k in PER_FRAME_FIELDS}
    out["body_pose"] = out["body_pose"] + rng.normal(scale=0.05, size=out["body_pose"].shape)
    out["transl"] = out["transl"] + np.array([shift, 0.3, -0.2])  # off the ground: kept as given
    out["betas"] = rng.normal(size=10)
    out["expression"] = rng.normal(scale=0.3, size=10)
    out["gender"], out["fps"], out["frame_start"] = gender, 24.0, 7
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}


def spec(bodies: list[dict], **extra: object) -> dict:
    return {"frames": FRAMES, "width": 64, "height": 48, "seed": 2, "cameras": ["ring:2"],
            "people": {"explicit": bodies}, **extra}


def test_explicit_people_render_with_exactly_the_given_pose(tmp_path: Path) -> None:
    bodies = [payload("walk", -0.6), payload("wave", 0.7, seed=1)]
    parsed = ClipSpec.parse(spec(bodies, passes=["rgb", "instance", "overlay"]))
    assert parsed.people.count == (2, 2)
    assert ClipSpec.parse(parsed.to_json_dict()) == parsed  # the JSON round trip (workers, resume)
    out = tmp_path / "ds"
    render_dataset(parsed, out)
    clip = out / "clips" / "000000"
    model = load_body_model("neutral")
    with np.load(clip / "people.npz") as z:
        for p, body in enumerate(bodies):
            for key in (*PER_FRAME_FIELDS, "betas", "expression"):
                want = np.asarray(body[key], np.float32)[..., :z[key].shape[-1]]
                np.testing.assert_array_equal(z[key][p], want, err_msg=key)
            params = {k: np.asarray(body[k], np.float32) for k in (*PER_FRAME_FIELDS, "betas", "expression")}
            _verts, keypoints = pose(model, params)
            np.testing.assert_allclose(z["joints"][:, p], keypoints, atol=1e-6)  # not moved, not lifted
    info = json.loads((clip / "clip.json").read_text())
    assert [person["source"] for person in info["people"]] == ["explicit", "explicit"]
    # Deterministic: the same spec gives the same people and cameras.
    a, b = plan_clip(parsed, 0), plan_clip(parsed, 0)
    np.testing.assert_array_equal(a.people[1].colors, b.people[1].colors)
    np.testing.assert_array_equal(a.cameras[0].R, b.cameras[0].R)
    # The overlay pass: clips vis's drawing of each frame over its RGB.
    with np.load(clip / "cam_01" / "annotations.npz") as z:
        coco, bbox = z["coco17"], z["bbox"]
    instance = np.load(clip / "cam_01" / "instance.npy")
    overlays = sorted((clip / "cam_01" / "overlay").glob("*.png"))
    assert [o.name for o in overlays] == [f"{f:06d}.png" for f in range(FRAMES)]
    for f in range(FRAMES):
        rgb = np.asarray(Image.open(clip / "cam_01" / "rgb" / f"{f:06d}.png").convert("RGB"))
        got = np.asarray(Image.open(overlays[f]).convert("RGB"))
        np.testing.assert_array_equal(got, np.asarray(draw_frame(rgb, instance[f], coco[f], bbox[f])))
        assert (got != rgb).any()  # something drawn


def bad(index: int = 0, **change: object) -> list[dict]:
    bodies = [payload("walk", 0.0), payload("wave", 1.0)]
    bodies[index].update(change)
    return bodies


NAN_POSE = np.zeros((FRAMES, 63)).tolist()
NAN_POSE[1][5] = float("nan")


@pytest.mark.parametrize("people, message", [
    ({"explicit": bad(1, global_orient=np.zeros((FRAMES + 1, 3)).tolist(),
                      transl=np.zeros((FRAMES + 1, 3)).tolist(),
                      body_pose=np.zeros((FRAMES + 1, 63)).tolist(),
                      left_hand_pose=np.zeros((FRAMES + 1, 45)).tolist(),
                      right_hand_pose=np.zeros((FRAMES + 1, 45)).tolist(),
                      jaw_pose=np.zeros((FRAMES + 1, 3)).tolist(),
                      leye_pose=np.zeros((FRAMES + 1, 3)).tolist(),
                      reye_pose=np.zeros((FRAMES + 1, 3)).tolist())},
     "people.explicit[1]: 4 frames, the spec renders 3"),
    ({"explicit": bad(0, transl=np.zeros((FRAMES + 1, 3)).tolist())},
     "people.explicit[0].transl: F = 4 here but 3 in another field"),
    ({"explicit": bad(1, body_pose=NAN_POSE)}, "people.explicit[1].body_pose: must hold finite numbers only"),
    ({"explicit": bad() * 3},
     "people.explicit: a list of at most 4 SMPL-X parameter objects, got a list of 6"),
    ({"explicit": bad(0, gender="robot")}, "people.explicit[0].gender"),
    ({"explicit": bad(0, body_pose=np.zeros((FRAMES, 60)).tolist())}, "people.explicit[0].body_pose"),
    ({"explicit": [{"transl": np.zeros((FRAMES, 3)).tolist()}]},
     "people.explicit[0]: a SMPL-X parameters needs global_orient"),
    ({"explicit": bad(), "count": [1, 2]}, "people.count: the clip's people are the 2 explicit ones"),
])
def test_bad_explicit_people_are_refused_naming_the_field(people: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        render_dataset(ClipSpec.parse({**spec([]), "people": people}), tmp_path / "ds")
    assert message in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_overlay_needs_rgb() -> None:
    with pytest.raises(SpecError, match="passes: overlay is drawn over the rgb pass; add rgb"):
        ClipSpec.parse({"passes": ["depth", "overlay"]})
    assert "overlay" not in ClipSpec.parse({}).passes  # off by default


def test_the_job_contract_carries_bodies_into_the_spec() -> None:
    bodies = [payload("walk", 0.0)]
    typed = kinds.parse("clips.render", {"bodies": bodies, "cameras": ["ring:1"], "size": [32, 32]})
    made = ClipSpec.parse(spec_object(typed, ["walk"]))
    assert made.frames == FRAMES and made.fps == 24.0 and made.people.count == (1, 1)
    np.testing.assert_array_equal(np.asarray(made.people.explicit[0]["body_pose"], np.float32),
                                  np.asarray(bodies[0]["body_pose"], np.float32))
    with pytest.raises(kinds.ParamError) as err:
        kinds.parse("clips.render", {"bodies": bodies * 5})
    assert err.value.field == "params.bodies"
    with pytest.raises(kinds.ParamError) as err:
        kinds.parse("clips.render", {"bodies": [{**bodies[0], "body_pose": NAN_POSE}]})
    assert err.value.field == "params.bodies[0].body_pose" and "finite" in str(err.value)
    for other in ({"people": 2}, {"motions": ["wave"]}):
        with pytest.raises(kinds.ParamError, match=r"give either \w+ or bodies, not both"):
            kinds.parse("clips.render", {"bodies": bodies, **other})


def test_explicit_clips_check_clean_and_are_byte_identical_with_two_workers(tmp_path: Path) -> None:
    from backend.clips.check import TOLERANCES, check_dataset

    parsed = ClipSpec.parse(spec([payload("walk", -0.6), payload("turn", 0.7, gender="female", seed=4)],
                                 clips=2, passes=["rgb", "depth", "instance", "overlay"]))
    render_dataset(parsed, tmp_path / "a")
    render_dataset(parsed, tmp_path / "b", workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(p.parent.name == "overlay" for p in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    report = check_dataset(tmp_path / "a")
    for key, limit in TOLERANCES.items():
        assert report.worst[key] <= limit, (key, report.worst[key])
    a, b = plan_clip(parsed, 0), plan_clip(parsed, 1)  # same people, a look per clip
    np.testing.assert_array_equal(a.people[0].params["body_pose"], b.people[0].params["body_pose"])
    assert not np.array_equal(a.people[0].colors, b.people[0].colors)
