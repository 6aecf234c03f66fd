"""Avatars (``avatar-studio avatar --out DIR`` folders) as clip people: LBS, UV texture, GT, check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.body.loading import load_body_model
from backend.clips.avatars import AvatarError, load_avatar_person, pose_avatar
from backend.clips.check import check_dataset
from backend.clips.dataset import render_dataset
from backend.clips.read import read_clip
from backend.clips.sample import body_params, plan_clip, pose
from backend.clips.spec import ClipSpec, SpecError

RED, BLUE = (0.9, 0.1, 0.1), (0.1, 0.1, 0.9)


def write_test_avatar(folder: Path, betas: list[float] | None = None) -> Path:
    """An avatar folder built from the body itself: its rest mesh, weights and joints, UVs from the
    height (v = 0 at the feet, 1 at the head), and a texture red above the waist, blue below."""
    body = load_body_model("neutral")
    b = torch.zeros(body.num_betas) if betas is None else torch.tensor(betas, dtype=torch.float32)
    with torch.no_grad():
        verts = body.rest_vertices(b, None).numpy().reshape(-1, 3)
        joints = body.rest_joints(b).numpy()
    height = (verts[:, 1] - verts[:, 1].min()) / np.ptp(verts[:, 1])
    uvs = np.stack([np.full(len(verts), 0.5), height], 1).astype(np.float32)
    texture = np.zeros((16, 16, 3), np.uint8)
    texture[:8] = np.round(np.array(RED) * 255)  # rows 0-7 = the top half of the texture: v > 0.5
    texture[8:] = np.round(np.array(BLUE) * 255)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "avatar_arrays.npz", vertices=verts.astype(np.float32),
                        faces=np.asarray(body.faces, np.int32), uvs=uvs, texture=texture,
                        weights=body.skinning_weights.numpy().astype(np.float32),
                        parents=np.asarray(body.parents, np.int32), joints_rest=joints.astype(np.float32),
                        part_labels=body.part_labels().astype(np.int32))
    summary = {"vertices": len(verts), "faces": len(body.faces), "bind_pose": "smplx_zero"}
    if betas is not None:
        summary["betas"] = betas
    (folder / "avatar.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_avatar(tmp_path_factory.mktemp("av") / "avatar", betas=[0.5, -0.3] + [0.0] * 8)


def test_lbs_joints_match_the_body_it_was_built_on(avatar_dir: Path) -> None:
    avatar = load_avatar_person(avatar_dir)
    spec = ClipSpec.parse({"frames": 3, "seed": 1, "motion": {"sources": ["wave"]}})
    params = plan_clip(spec, 0).people[0].params
    params = {**params, "betas": np.asarray(avatar.betas, np.float32)}
    body = load_body_model("neutral")
    _, keypoints = pose(body, params)
    verts, joints = pose_avatar(avatar, body_params(params, body).full_pose().numpy(), params["transl"])
    np.testing.assert_allclose(joints, keypoints[:, :55], atol=1e-5)
    assert verts.shape == (3, len(avatar.vertices), 3)


def test_avatar_person_renders_its_texture_in_its_mask(avatar_dir: Path, tmp_path: Path) -> None:
    white = tmp_path / "white.png"
    from PIL import Image

    Image.new("RGB", (8, 4), (255, 255, 255)).save(white)
    spec = ClipSpec.parse({"frames": 2, "width": 96, "height": 128, "seed": 5, "cameras": ["ring:2"],
                           "motion": {"sources": ["a-pose"]},
                           "people": {"count": [2, 2], "avatars": [str(avatar_dir)],
                                      "avatar_probability": 0.5},
                           "appearance": {"environment": str(white), "key_temperature_k": 6600},
                           "passes": ["rgb", "depth", "instance", "amodal", "part", "normal"]},
                          base_dir=tmp_path)
    plan = plan_clip(spec, 0)
    kinds = [p.avatar is not None for p in plan.people]
    assert kinds.count(True) == 1, "seed 5 mixes one avatar and one body"
    render_dataset(spec, tmp_path / "ds")
    clip = read_clip(tmp_path / "ds", 0)
    p = kinds.index(True)
    assert clip.info["people"][p]["avatar"] == str(avatar_dir.resolve())
    np.testing.assert_allclose(clip.people["betas"][p][:2], [0.5, -0.3])
    for cam in clip.cameras.values():
        for f in range(2):
            mask = cam.instance[f] == p + 1
            assert mask.sum() > 50
            rgb = cam.rgb[f].astype(int)
            ys = np.nonzero(mask)[0]
            top = mask & (np.arange(mask.shape[0])[:, None] < np.percentile(ys, 25))
            bottom = mask & (np.arange(mask.shape[0])[:, None] > np.percentile(ys, 75))
            red = rgb[..., 0] > rgb[..., 2] + 10
            blue = rgb[..., 2] > rgb[..., 0] + 10
            assert red[top].mean() > 0.9 and blue[bottom].mean() > 0.9
            other = cam.instance[f] == 2 - p  # the SMPL-X body: vertex colours, not the texture
            assert other.any() and not (red[other].mean() > 0.9 and blue[other].mean() == 0)
    report = check_dataset(tmp_path / "ds")
    assert not report.failures, report.to_json()
    assert report.avatars_missing == 0 and report.depth_points > 500


def test_avatar_probability_zero_gives_bodies(avatar_dir: Path) -> None:
    spec = ClipSpec.parse({"frames": 1, "people": {"count": [3, 3], "area": 6.0, "avatars": [str(avatar_dir)],
                                                   "avatar_probability": 0.0}})
    assert all(p.avatar is None for p in plan_clip(spec, 0).people)
    spec = ClipSpec.parse({"frames": 1,
                           "people": {"count": [3, 3], "area": 6.0, "avatars": [str(avatar_dir)]}})
    assert all(p.avatar is not None for p in plan_clip(spec, 0).people)


def test_bad_avatar_folders_are_clear_errors(tmp_path: Path, avatar_dir: Path) -> None:
    with pytest.raises(AvatarError, match=r"no avatar_arrays\.npz"):
        load_avatar_person(tmp_path / "nothing")
    with pytest.raises(SpecError, match=r"people\.avatars\[0\]"):
        ClipSpec.parse({"people": {"avatars": ["nothing"]}}, base_dir=tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    with np.load(avatar_dir / "avatar_arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(bad / "avatar_arrays.npz", **{**arrays, "weights": arrays["weights"][:, :20]})
    with pytest.raises(AvatarError, match="weights"):
        load_avatar_person(bad)
    np.savez(bad / "avatar_arrays.npz", **{**arrays, "faces": arrays["faces"] + 10**7})
    with pytest.raises(AvatarError, match="faces"):  # failures are not cached: the folder is read again
        load_avatar_person(bad)
    (bad / "avatar_arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(AvatarError, match=r"avatar_arrays\.npz"):
        load_avatar_person(bad)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_avatar_folder_leaves_depth_unchecked(avatar_dir: Path, tmp_path: Path) -> None:
    import shutil

    mine = _copy(avatar_dir, tmp_path / "mine")
    spec = ClipSpec.parse({"frames": 1, "width": 48, "height": 48, "seed": 1, "cameras": ["ring:1"],
                           "people": {"avatars": [str(mine)]}})
    render_dataset(spec, tmp_path / "ds")
    shutil.rmtree(mine)
    from backend.clips import avatars

    avatars._load.cache_clear()
    report = check_dataset(tmp_path / "ds")
    assert report.avatars_missing == 1 and report.depth_points == 0


def test_avatar_clips_are_byte_identical_with_1_and_2_workers(avatar_dir: Path, tmp_path: Path) -> None:
    spec = ClipSpec.parse({"clips": 2, "frames": 2, "width": 48, "height": 64, "seed": 4,
                           "people": {"count": [1, 2], "area": 3.0, "avatars": [str(avatar_dir)],
                                      "avatar_probability": 0.5},
                           "passes": ["rgb", "depth", "normal", "instance", "part", "flow"]})
    render_dataset(spec, tmp_path / "a")
    render_dataset(spec, tmp_path / "b", workers=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    people = [p for c in (0, 1) for p in read_clip(tmp_path / "a", c, images=False).info["people"]]
    assert any("avatar" in p for p in people)
