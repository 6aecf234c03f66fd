"""backend.mesh.chamfer: the numpy-only surface Chamfer that Blender's Python can run.

Its nearest-neighbour search must equal scipy's KD-tree exactly (queries near, far, outside the
points' box, duplicated), and its Chamfer must be the bench's number (``geometry_scores``: same
samples, same seeds, same hidden-surface filter) on real meshes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from backend.avatar.eval.metrics import geometry_scores
from backend.mesh.chamfer import nearest_distances, seen_from_cameras, surface_chamfer


def sphere(radius: float, centre: tuple[float, float, float], n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere, outward triangles."""
    th, ph = np.meshgrid(np.linspace(0, np.pi, n + 1)[1:-1], np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                         indexing="ij")
    ring = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    v = np.concatenate([ring, [[0, 0, 1], [0, 0, -1]]]) * radius + np.asarray(centre)
    m = 2 * n
    f = []
    for i in range(n - 2):
        for j in range(m):
            a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + j, (i + 1) * m + (j + 1) % m
            f += [(a, c, b), (b, c, d)]
    top, bot = len(ring), len(ring) + 1
    last = (n - 2) * m
    for j in range(m):
        f += [(top, j, (j + 1) % m), (bot, last + (j + 1) % m, last + j)]
    return v, np.asarray(f, np.int64)


@pytest.mark.parametrize("cell", [None, 0.001, 0.5, 10.0])
def test_nearest_distances_equal_a_kd_tree(cell: float | None) -> None:
    rng = np.random.default_rng(0)
    # A surface-like cloud (points on a sphere), a few duplicates, and queries inside, on, far
    # outside the box (whose nearest points are many cells away).
    p = rng.normal(size=(5000, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p = np.concatenate([p, p[:50]])
    q = np.concatenate([rng.normal(size=(3000, 3)) * 0.7, p[100:200], rng.normal(size=(200, 3)) * 20,
                        [[1e3, -1e3, 5.0]]])
    got = nearest_distances(q, p, cell)
    want = cKDTree(p).query(q)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_nearest_distances_one_point_and_no_points() -> None:
    assert nearest_distances(np.array([[3.0, 4.0, 0.0]]), np.zeros((1, 3)))[0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no points"):
        nearest_distances(np.zeros((2, 3)), np.zeros((0, 3)))


def test_surface_chamfer_is_the_bench_number() -> None:
    gt_v, gt_f = sphere(0.2, (0, 0, 0))
    pred_v, pred_f = sphere(0.21, (0.005, 0, 0), n=17)

    def keep(points: np.ndarray) -> np.ndarray:  # a hidden cap, as the bench drops buried samples
        return points[:, 2] < 0.15

    for gt_keep in (None, keep):
        bench = geometry_scores(pred_v, pred_f, gt_v, gt_f, 10_000, gt_keep)
        ours = surface_chamfer(pred_v, pred_f, gt_v, gt_f, 10_000, gt_keep)
        assert ours.chamfer == pytest.approx(bench.chamfer, rel=1e-12)
        assert ours.pred_to_gt.mean() == pytest.approx(bench.chamfer_pred_to_gt, rel=1e-12)
        assert ours.gt_to_pred.mean() == pytest.approx(bench.chamfer_gt_to_pred, rel=1e-12)
    # A 1 cm larger sphere is ~1 cm away (plus the sampling floor of 10k samples: a few mm).
    assert 0.008 < ours.chamfer < 0.016
    # The prediction filter drops predicted samples only.
    half = surface_chamfer(pred_v, pred_f, gt_v, gt_f, 10_000, None, lambda p: p[:, 0] > 0)
    assert len(half.gt_points) == 10_000 and 4_000 < len(half.pred_points) < 6_000
    assert (half.pred_points[:, 0] > 0).all() and half.pred_samples == 10_000
    full = surface_chamfer(pred_v, pred_f, gt_v, gt_f, 10_000)
    assert full.chamfer_all_pred == full.chamfer
    assert half.chamfer_all_pred == pytest.approx(full.chamfer, rel=1e-12) and half.chamfer != full.chamfer


def test_seen_from_cameras_hides_what_is_behind_a_surface() -> None:
    from backend.mesh.sampling import sample_surface

    # A camera at the origin looking down +z at a large sphere (radius 0.3, 2 m away); a point
    # behind the sphere is hidden, one on its near side, one beside it and one in front are seen;
    # one outside the image is not seen.
    v, f = sphere(0.3, (0, 0, 2.0), n=32)
    occ, _ = sample_surface(v, f, 200_000, np.random.default_rng(0))
    K = np.array([[200.0, 0, 64], [0, 200.0, 64], [0, 0, 1]])
    cam = (K, np.eye(3), np.zeros(3), 128, 128)
    pts = np.array([[0, 0, 2.5], [0, 0, 1.7], [0.5, 0, 2.0], [0, 0, 1.0], [5.0, 0, 1.0], [0.1, 0.1, 2.25]])
    seen = seen_from_cameras(pts, occ, [cam], behind=0.01)
    assert seen.tolist() == [False, True, True, True, False, False]
    # A second camera behind the sphere sees the far point.
    back = (K, np.diag([-1.0, 1.0, -1.0]), np.array([0, 0, 4.0]), 128, 128)
    assert seen_from_cameras(pts[:1], occ, [cam, back], behind=0.01).tolist() == [True]
