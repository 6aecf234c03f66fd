"""Robust sculpting (backend/avatar/geometry/sculpt.py, hands.py) on perturbed views
(backend/avatar/eval/perturb.py): the inconsistent view is down-weighted, noisy masks at a coarse
grid no longer lose the surface, the perturbations are deterministic and of the stated size, and
the hands keep the body's thickness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar.eval.perturb import PerturbConfig, perturb_views
from backend.avatar.geometry.sculpt import SculptConfig, pseudo_huber, sculpt, view_confidence


def test_view_confidence_and_pseudo_huber_down_weight_outliers() -> None:
    w = view_confidence(np.array([0.10, 0.11, 0.09, 0.12, 0.10, 0.35, 0.10, 0.11]), ratio=2.0)
    assert np.all(np.delete(w, 5) > 0.95) and w[5] < 0.2
    d = torch.tensor([0.05, 1.0], requires_grad=True)
    pseudo_huber(d, 0.3).sum().backward()
    mse = 2 * d.detach()
    # Sub-pixel rim residuals keep (almost) the squared error's pull; a whole wrong pixel ~3.5x less.
    assert d.grad[0] > 0.95 * mse[0] and d.grad[1] < 0.3 * mse[1]


@pytest.fixture(scope="module")
def perturbed(small_character):
    _, views, char = small_character
    cfg = PerturbConfig(seed=1, warp_px=32.0)  # 8 px at 128 px: as visible as 8 px at 512
    return perturb_views(views, cfg), views, char


def test_perturbations_are_deterministic_and_of_the_stated_size(perturbed, small_character) -> None:
    (pv, report), views, _ = perturbed
    again, _ = perturb_views(views, PerturbConfig(seed=1, warp_px=32.0))
    for a, b in zip(pv.views, again.views, strict=True):
        assert np.array_equal(a.rgba, b.rgba) and np.allclose(a.camera.R, b.camera.R)
    centre = np.asarray(small_character[2].vertices).mean(0)
    for before, after, rep in zip(views.split("train"), pv.split("train"), report.views, strict=True):
        shift = np.linalg.norm(after.camera.project(centre[None])[0] - before.camera.project(centre[None])[0])
        assert 0.9 <= shift <= 2.2, shift  # 1-2 px at the looked-at point (the centroid is near it)
        assert np.allclose(after.camera.centre, before.camera.centre, atol=1e-9)
        assert rep.mask_changed_px > 0
    for a, b in zip(views.split("test"), pv.split("test"), strict=True):  # held-out views untouched
        assert np.array_equal(a.rgba, b.rgba)
    assert sum(r.inconsistent for r in report.views) == 1 and report.views[3].inconsistent


def test_the_inconsistent_view_gets_the_lowest_sculpt_weight(perturbed) -> None:
    (pv, _), _, char = perturbed
    # The box of the body + margin (hull_box off): on these perturbed 128 px views the visual hull
    # opens 17 cm behind the back (the A-pose's arms cover it in the oblique views, and the added
    # mask blobs do the rest), and at grid 24 the SDF net's features spread over that deeper box
    # blur the warped view's disagreement into the others' (its weight 0.98, as theirs). The box
    # growth is tested in test_hull_box.py and through Avatar from Selected.
    cfg = SculptConfig(grid_resolution=24, init_iters=30, refine_iters=16, render_scale=1.0,
                       init_samples=2048, refine_cameras=True, hull_box=False)
    res = sculpt(pv.split("train"), char.body.vertices, char.body.faces, cfg)
    w = res.view_weights
    assert w is not None and int(np.argmin(w)) == 3, w
    # At this grid the sculpt's own error is most of every view's disagreement (the warp adds ~40-60 %).
    assert w[3] < 0.9 and np.all(np.delete(w, 3) > 0.94), w
    assert res.camera_corrections is not None and res.camera_corrections.shape == (8, 3)
    assert len(res.faces) > 1000


def test_fat_masks_at_grid_24_keep_a_surface(a_pose_body) -> None:
    """What lost the surface (docs/generate.md): masks far larger than the body, a coarse grid and
    a short init fit. Now the init runs until the body's sign is right, the grid's boundary and
    the body's core are pinned, and a step that empties the mesh is undone."""
    from scipy.ndimage import binary_dilation

    from backend.avatar.eval.synthetic import SyntheticConfig, make_synthetic

    views, _ = make_synthetic(SyntheticConfig(resolution=64, supersample=1, skirt=False, hair=False),
                              body=a_pose_body)
    train = views.split("train")
    for v in train:
        v.rgba[..., 3] = binary_dilation(v.rgba[..., 3] > 0.5, iterations=4).astype(np.float32)
    cfg = SculptConfig(grid_resolution=24, init_iters=15, refine_iters=12, render_scale=1.0,
                       init_samples=2048)
    res = sculpt(train, a_pose_body.vertices, a_pose_body.faces, cfg)
    assert res.init_faces is not None and len(res.init_faces) > 800  # the init fit kept going
    assert len(res.faces) > 2000
    lo, hi = res.vertices.min(0), res.vertices.max(0)
    body_lo, body_hi = a_pose_body.vertices.min(0), a_pose_body.vertices.max(0)
    assert np.all(hi - lo > 0.7 * (body_hi - body_lo))  # a body-sized surface, not a pinned core


def test_hands_take_the_body_thickness(inflated_body) -> None:
    from backend.avatar.eval.metrics import body_hands, hand_thickness
    from backend.avatar.geometry.hands import HandConfig, keep_body_hands
    from backend.mesh.normals import vertex_normals

    body = inflated_body[0]
    fat = body.vertices + 0.012 * vertex_normals(body.vertices, body.faces)  # a mitten 2.4 cm thicker
    hands = body_hands(body)
    before = hand_thickness(fat, body.faces, body.vertices, body.faces, hands, samples=60_000)
    assert before.ratio > 1.6
    moved, counts = keep_body_hands(fat, body.faces, body, cell_size=0.029, config=HandConfig())
    after = hand_thickness(moved, body.faces, body.vertices, body.faces, hands, samples=60_000)
    assert after.ratio < 1.15 and set(counts) == {"left", "right"}
    far = np.linalg.norm(body.vertices - body.joints[body.joint_names.index("left_wrist")], axis=1) > 0.3
    far &= np.linalg.norm(body.vertices - body.joints[body.joint_names.index("right_wrist")], axis=1) > 0.3
    assert np.array_equal(moved[far], fat[far])  # nothing away from the hands moves
    same, none = keep_body_hands(fat, body.faces, body, cell_size=0.005, config=HandConfig())
    assert same is fat and none == {}  # a grid that resolves hands keeps its own
