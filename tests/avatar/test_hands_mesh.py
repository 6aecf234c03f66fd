"""The body's hand mesh instead of a projected mitten (backend/avatar/geometry/hands.py).

The sculpt stand-in is the body inflated by 5 mm with each hand replaced by a fat webbed mitten
(the hand's convex hull, subdivided and inflated: the finger gaps filled, as a grid-64 sculpt
makes them). Rendered from palm- and back-facing cameras, the projection (``keep_body_hands``)
leaves the finger gaps covered; ``replace_body_hands`` brings the body's own finger gaps back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_closing
from scipy.spatial import ConvexHull

from backend.avatar.eval.metrics import body_hands
from backend.avatar.eval.synthetic import look_at_camera
from backend.avatar.geometry.hands import HandConfig, hand_frames, keep_body_hands, replace_body_hands
from backend.avatar.geometry.refine import subdivide_midpoint
from backend.avatar.render_views import camera_clip
from backend.mesh.normals import vertex_normals

CELL = 0.029  # grid 64 on the bench's body: too coarse for a hand


def _hull_mitten(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points' convex hull wound outward, subdivided to ~cell-sized faces, inflated by 4 mm."""
    hull = ConvexHull(points)
    f = hull.simplices.copy()
    n = np.cross(points[f[:, 1]] - points[f[:, 0]], points[f[:, 2]] - points[f[:, 0]])
    flip = (n * (points[f].mean(1) - points.mean(0))).sum(1) < 0
    f[flip] = f[flip][:, ::-1]
    used = np.unique(f)
    remap = np.full(len(points), -1)
    remap[used] = np.arange(len(used))
    v, f = points[used], remap[f]
    for _ in range(3):
        v, f, _ = subdivide_midpoint(v, f)
    return v + 0.004 * vertex_normals(v, f), f


@pytest.fixture(scope="module")
def webbed(a_pose_body):
    """(body, mitten sculpt vertices, faces): the body inflated by 5 mm, its hands webbed mittens."""
    body = a_pose_body
    verts = [body.vertices + 0.005 * vertex_normals(body.vertices, body.faces)]
    keep = np.ones(len(body.faces), bool)
    faces, offset = [], len(body.vertices)
    for part in ("hand_l", "hand_r"):
        hand = body.part_labels == body.part_names.index(part)
        keep &= ~hand[body.faces].all(1)
        mv, mf = _hull_mitten(body.vertices[hand])
        verts.append(mv)
        faces.append(mf + offset)
        offset += len(mv)
    return body, np.concatenate(verts), np.concatenate([body.faces[keep], *faces])


def _hand_silhouette(
    vertices: np.ndarray, faces: np.ndarray, cam, centre: np.ndarray, radius: float
) -> np.ndarray:
    """(H,W) bool: what the camera sees of the faces within ``radius`` of ``centre`` (the hand and
    the end of its forearm, not the thigh behind it)."""
    from backend.render import get_rasterizer

    inside = np.linalg.norm(vertices - centre, axis=1) < radius
    f = faces[inside[faces].all(1)]
    clip = camera_clip(torch.as_tensor(vertices, dtype=torch.float32), cam)
    r = get_rasterizer("auto").rasterize(clip, torch.as_tensor(f).int(), resolution=(cam.height, cam.width))
    return r.mask[0].numpy() > 0


def _edge_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    return np.unique(e, axis=0, return_counts=True)


def test_a_webbed_mitten_comes_back_with_the_body_finger_gaps(webbed) -> None:
    body, mv, mf = webbed
    projected, _ = keep_body_hands(mv, mf, body, CELL, HandConfig())
    swap = replace_body_hands(mv, mf, body, CELL, HandConfig())
    assert set(swap.body_faces) == {"left", "right"} and min(swap.removed_faces.values()) > 1000
    for side, (wrist, tip, palm) in body_hands(body).items():
        centre, length = 0.5 * (wrist + tip), float(np.linalg.norm(tip - wrist))
        for facing in (1.0, -1.0):  # the palm's side and the back of the hand
            cam = look_at_camera(centre + facing * 0.5 * palm, centre, 128, 128, 250.0)
            truth = _hand_silhouette(body.vertices, body.faces, cam, centre, 0.8 * length)
            new = _hand_silhouette(swap.vertices, swap.faces, cam, centre, 0.8 * length)
            old = _hand_silhouette(projected, mf, cam, centre, 0.8 * length)
            gaps = binary_closing(truth, iterations=4) & ~truth  # background between the fingers
            assert gaps.sum() > 150, (side, facing, gaps.sum())
            iou_new = (new & truth).sum() / (new | truth).sum()
            iou_old = (old & truth).sum() / (old | truth).sum()
            assert iou_new >= 0.95, (side, facing, iou_new)
            assert new[gaps].mean() < 0.03, (side, facing, new[gaps].mean())
            # Today's projection keeps the mitten's webs: the gaps covered, the silhouette wrong.
            assert old[gaps].mean() > 0.9 and iou_old < 0.85, (side, facing, old[gaps].mean(), iou_old)


def test_the_replaced_mesh_keeps_the_rest_and_overlaps_at_the_wrist(webbed) -> None:
    body, mv, mf = webbed
    swap = replace_body_hands(mv, mf, body, CELL, HandConfig())
    v, f = swap.vertices, swap.faces
    assert f.min() >= 0 and f.max() == len(v) - 1
    assert len(np.unique(f)) == len(v)  # no vertex left without a face
    assert np.array_equal(swap.weight[swap.from_body], np.ones(int(swap.from_body.sum())))
    assert np.all(swap.weight[~swap.from_body] < 1.0 + 1e-12)
    # The body's vertices are the body's, exactly (the refinement then keeps them: weight 1).
    from scipy.spatial import cKDTree

    assert cKDTree(body.vertices).query(v[swap.from_body])[0].max() == 0.0
    # Away from the hands the sculpt is untouched.
    frames = hand_frames(body)
    far = np.all([np.linalg.norm(v - w, axis=1) > 1.6 * L for w, _, L in frames.values()], axis=0)
    sculpt_far = far & ~swap.from_body
    assert sculpt_far.sum() > 5000
    assert cKDTree(mv).query(v[sculpt_far])[0].max() == 0.0
    # Edges: 1 or 2 faces each (no edge shared by the two surfaces); the open ones only at the
    # wrists, and each open edge of the sculpt's cut rim lies over the body's forearm stub.
    edges, count = _edge_counts(f)
    assert set(np.unique(count)) <= {1, 2}
    open_v = np.unique(edges[count == 1])
    given_edges, given_count = _edge_counts(mf)  # the body's own open edges (the eyes) stay open
    open_v = open_v[cKDTree(mv[np.unique(given_edges[given_count == 1])]).query(v[open_v])[0] > 0]
    near_wrist = np.min([np.linalg.norm(v[open_v] - w, axis=1) / L for w, _, L in frames.values()], axis=0)
    assert near_wrist.max() < 0.8, near_wrist.max()
    rim = open_v[~swap.from_body[open_v]]
    stub_faces = f[swap.from_body[f].all(1)]
    from backend.mesh.closest import MeshQuery

    gap = MeshQuery(v, stub_faces).closest(v[rim]).distance
    assert len(rim) > 20 and gap.max() < 0.012, gap.max()  # the sculpt here is the body + 5 mm
    # A grid that resolves hands keeps its own mesh.
    same = replace_body_hands(mv, mf, body, 0.005, HandConfig())
    assert np.array_equal(same.faces, mf) and not same.from_body.any() and same.body_faces == {}
    with pytest.raises(ValueError, match=r"auto\|body\|sculpt"):
        replace_body_hands(mv, mf, body, CELL, HandConfig(mode="mitten"))
