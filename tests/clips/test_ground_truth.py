"""The stored ground truth agrees with itself and with the body: keypoints, depth, masks, params."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backend.body.loading import load_body_model
from backend.cli import main
from backend.clips import read_clip
from backend.clips.check import check_dataset, surface_distance
from backend.clips.render import render_clip
from backend.clips.sample import Camera, ClipPlan, Person, pose, sample_colors, sample_motion
from backend.mesh.closest import MeshQuery
from protocol.cameras import intrinsics_from_fov, look_at
from protocol.smplx import PER_FRAME_FIELDS

PARAMS = (*PER_FRAME_FIELDS, "betas", "expression")


def _clips(dataset: Path) -> list[str]:
    return [c["id"] for c in json.loads((dataset / "manifest.json").read_text())["clips"]]


def test_projected_joints_land_on_stored_keypoints(dataset: Path) -> None:
    checked = 0
    for cid in _clips(dataset):
        clip = read_clip(dataset, cid, images=False)
        joints = clip.people["joints"].astype(np.float64)  # (F,P,127,3) world
        for cam in clip.cameras.values():
            x_cam = np.einsum("fij,fpnj->fpni", cam.R, joints) + cam.t[:, None, None]
            uvw = np.einsum("fij,fpnj->fpni", cam.K, x_cam)
            pixels = uvw[..., :2] / uvw[..., 2:]
            front = x_cam[..., 2] > 0
            error = np.abs(pixels - cam.annotations["keypoints"])[front]
            assert error.max() < 0.01
            checked += int(front.sum())
            # the camera-frame 3D joints are the world joints moved by R, t
            assert np.abs(cam.annotations["joints_cam"] - x_cam).max() < 1e-9
    assert checked > 1000


def test_depth_back_projects_onto_the_posed_body(dataset: Path) -> None:
    clip = read_clip(dataset, _clips(dataset)[0], images=False)
    bodies = [load_body_model(p["gender"]) for p in clip.info["people"]]
    posed = [pose(b, {k: clip.people[k][p] for k in PARAMS})[0] for p, b in enumerate(bodies)]
    n = posed[0].shape[1]
    faces = np.concatenate([bodies[0].faces + p * n for p in range(len(bodies))])
    worst, points = 0.0, 0
    for f in (0, clip.info["frames"] - 1):
        query = MeshQuery(np.concatenate([v[f] for v in posed]), faces)
        for cam in clip.cameras.values():
            ys, xs = np.nonzero(cam.depth[f] > 0)
            z = cam.depth[f][ys, xs].astype(np.float64)
            rays = np.stack([xs + 0.5, ys + 0.5, np.ones_like(z)], 1) @ np.linalg.inv(cam.K[f]).T
            world = (rays * z[:, None] - cam.t[f]) @ cam.R[f]
            worst = max(worst, float(surface_distance(query, world).max()))
            points += len(z)
    assert points > 500
    assert worst < 1e-3


def test_visible_keypoints_lie_on_their_own_modal_mask(dataset: Path) -> None:
    counts = np.zeros(3, dtype=int)
    for cid in _clips(dataset):
        for cam in read_clip(dataset, cid, images=False).cameras.values():
            vis = cam.annotations["visibility"]
            counts += np.bincount(vis.reshape(-1), minlength=3)
            f, p, j = np.nonzero(vis == 2)
            xy = np.floor(cam.annotations["keypoints"][f, p, j]).astype(int)
            assert (cam.instance[f, xy[:, 1], xy[:, 0]] == p + 1).all()
            coco = cam.annotations["coco17"]
            assert set(np.unique(coco[..., 2]).tolist()) <= {0, 1, 2}
            assert (coco[coco[..., 2] == 0][:, :2] == 0).all()
    assert counts[2] > 100 and counts[1] > 0  # some seen, some hidden behind a body


def test_modal_masks_boxes_and_amodal_masks_agree(dataset: Path) -> None:
    for cam in read_clip(dataset, _clips(dataset)[0], images=False).cameras.values():
        inst, amodal, bbox = np.asarray(cam.instance), np.asarray(cam.amodal), cam.annotations["bbox"]
        for f in range(inst.shape[0]):
            for p in range(amodal.shape[1]):
                modal = inst[f] == p + 1
                assert not (modal & ~amodal[f, p]).any()  # modal is inside amodal
                assert cam.annotations["area"][f, p] == modal.sum()
                if modal.any():
                    ys, xs = np.nonzero(modal)
                    assert bbox[f, p].tolist() == [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                                                   ys.max() + 1 - ys.min()]


def _standing(model, z: float) -> Person:  # type: ignore[no-untyped-def]
    motion, _ = sample_motion("a-pose", 2, 30.0, 1.0, False, np.random.default_rng(0))
    params = {k: getattr(motion, k).astype(np.float32) for k in PER_FRAME_FIELDS}
    params["transl"][:, 1] += 1.18
    params["transl"][:, 2] += z
    params["betas"] = np.zeros(model.num_betas, np.float32)
    params["expression"] = np.zeros(model.num_expression, np.float32)
    colors = sample_colors(model.rest_vertices().numpy(), model.part_labels(), np.random.default_rng(1))
    return Person("neutral", params, colors, {"source": "a-pose"})


def test_a_person_hidden_behind_another_has_a_larger_amodal_mask(tmp_path: Path) -> None:
    model = load_body_model("neutral")
    R, t = look_at((0.0, 1.0, 6.0), (0.0, 1.0, 0.0))
    K = intrinsics_from_fov(40.0, 64, 64)
    cam = Camera("cam_00", "ring", np.tile(K, (2, 1, 1)), np.tile(R, (2, 1, 1)), np.tile(t, (2, 1)))
    plan = ClipPlan(0, "000000", [0, 0], [_standing(model, 0.0), _standing(model, -1.5)], [cam], 2, 64, 64,
                    30.0, 0.05, 100.0)
    render_clip(plan, tmp_path / "c", ("rgb", "instance", "amodal"), model=model)
    inst = np.load(tmp_path / "c" / "cam_00" / "instance.npy")
    amodal = np.load(tmp_path / "c" / "cam_00" / "amodal.npy")
    front, back = inst == 1, inst == 2
    assert (amodal[:, 0] == front).all()  # nobody in front of the front person
    assert amodal[:, 1].sum() > 2 * back.sum()
    vis = np.load(tmp_path / "c" / "cam_00" / "annotations.npz")["visibility"]
    assert (vis[:, 1] == 1).mean() > 0.5 and (vis[:, 0] == 2).mean() > 0.5


def test_check_command_passes_and_catches_a_corrupted_keypoint(dataset: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    report = check_dataset(dataset)
    assert not report.failures, report.worst
    assert report.worst["camera_params_m"] < 1e-4 and report.depth_points > 500
    assert main(["clips", "check", str(dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    path = broken / "clips" / _clips(dataset)[0] / "cam_00" / "annotations.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["keypoints"][0, 0, 0, 0] += 0.5
    np.savez(path, **arrays)
    assert main(["clips", "check", str(broken)]) == 1
    assert "reprojection_px" in capsys.readouterr().out


def test_vis_sheet_and_reader_shapes(dataset: Path, tmp_path: Path) -> None:
    cid = _clips(dataset)[1]
    clip = read_clip(dataset, cid)
    cam = clip.cameras["cam_00"]
    F, P = clip.info["frames"], len(clip.info["people"])
    assert cam.rgb.shape == (F, 72, 96, 3) and cam.depth.dtype == np.float32
    assert cam.normal.shape == (F, 72, 96, 3) and cam.part.min() == -1
    assert cam.annotations["coco17"].shape == (F, P, 17, 3)
    assert cam.annotations["global_orient_cam"].shape == (F, P, 3)
    assert clip.people["body_pose"].shape == (P, F, 63) and clip.people["joints"].shape == (F, P, 127, 3)
    normals = np.asarray(cam.normal, dtype=np.float32)[np.asarray(cam.depth) > 0]
    assert np.abs(np.linalg.norm(normals, axis=1) - 1).max() < 5e-3 and (normals[:, 2] < 0.2).mean() > 0.95
    out = tmp_path / "sheet.png"
    assert main(["clips", "vis", str(dataset), "--clip", cid, "--out", str(out)]) == 0
    from PIL import Image

    assert Image.open(out).size == (96 * F, 72 * len(clip.cameras))


def test_vis_video_has_every_frame_with_the_cameras_tiled(dataset: Path, tmp_path: Path) -> None:
    import imageio.v3 as iio

    cid = _clips(dataset)[0]
    clip = read_clip(dataset, cid)
    out = tmp_path / "overlay.mp4"
    assert main(["clips", "vis", str(dataset), "--clip", cid, "--out", str(out)]) == 0
    frames = np.stack(list(iio.imiter(out)))
    columns = int(np.ceil(np.sqrt(len(clip.cameras))))
    rows = int(np.ceil(len(clip.cameras) / columns))
    assert frames.shape == (clip.info["frames"], 72 * rows, 96 * columns, 3)
    # the first tile is camera 0's first frame with its overlays (lossy video: compare loosely)
    from backend.clips.vis import _tile

    first = frames[0, :72, :96].astype(np.float32)
    same = np.abs(first - np.asarray(_tile(clip, "cam_00", 0), dtype=np.float32)).mean()
    other = np.abs(first - np.asarray(_tile(clip, "cam_01", 0), dtype=np.float32)).mean()
    assert same < 8.0 and other > 2 * same, (same, other)


def test_surface_distance_is_exact_where_the_kd_tree_guess_is_not() -> None:
    from backend.mesh.closest import closest_on_triangles

    rng = np.random.default_rng(0)
    # a fan of long, thin triangles: where nearest-sample guesses go wrong
    angles = np.linspace(0, np.pi, 40)
    rim = np.stack([np.cos(angles), np.sin(angles), 0 * angles], 1) * 2.0
    vertices = np.concatenate([[[0.0, 0.0, 0.0]], rim])
    faces = np.array([[0, i, i + 1] for i in range(1, 40)])
    query = MeshQuery(vertices, faces, candidates=2)
    points = rng.uniform(-2, 2, (300, 3)) * np.array([1, 1, 0.05])
    tri = vertices[faces]
    bary = closest_on_triangles(points[:, None], tri[None, :, 0], tri[None, :, 1], tri[None, :, 2])
    brute = np.linalg.norm((bary[..., None] * tri[None]).sum(2) - points[:, None], axis=-1).min(1)
    assert np.abs(surface_distance(query, points, exact_above=0.0) - brute).max() < 1e-12
