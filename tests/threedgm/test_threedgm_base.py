"""The pieces that let the ``base`` config run: an exact nearest-vertex search that scales (the k-d
tree against the brute force, the pytorch3d dispatch guarded by import) and EG3D's importance pass
(inverse-CDF draws from the coarse weights, deterministic, off by default)."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest
import torch

from backend.threedgm import knn
from backend.threedgm.config import BASE, TINY, TrainConfig, get_config
from backend.threedgm.knn import build_leaves, nearest_vertex, nearest_vertex_brute, nearest_vertex_tree
from backend.threedgm.volume import importance_depths, ray_weights


def _body_points(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The full SMPL-X stand-in at rest (10,475 vertices, batch 2: the second moved) and points:
    half uniform in its box + 1 m, half within ~1 cm of its vertices (where ties are near)."""
    from backend.body.loading import load_body_model

    v = load_body_model("neutral").rest_vertices().detach().float()
    verts = torch.stack([v, v * 1.1 + torch.tensor([0.2, -0.1, 0.3])])
    g = torch.Generator().manual_seed(seed)
    lo, hi = verts.amin(1, keepdim=True) - 1.0, verts.amax(1, keepdim=True) + 1.0
    uniform = lo + (hi - lo) * torch.rand(2, count // 2, 3, generator=g)
    pick = torch.randint(verts.shape[1], (2, count // 2), generator=g)
    near = torch.gather(verts, 1, pick[..., None].expand(-1, -1, 3))
    near = near + 0.01 * torch.randn(2, count // 2, 3, generator=g)
    return torch.cat([uniform, near], 1), verts


@pytest.mark.parametrize("seed", [0, 1])
def test_tree_search_gives_the_brute_force_answers(seed: int) -> None:
    points, verts = _body_points(seed, 6000)
    brute = nearest_vertex_brute(points, verts)
    for leaf, probe in ((256, 1), (32, 3)):
        tree = nearest_vertex_tree(points, verts, leaf=leaf, probe=probe, chunk=1000)
        assert torch.equal(tree[0], brute[0]) and torch.equal(tree[1], brute[1])


def test_tree_search_on_random_clouds_and_exact_ties() -> None:
    g = torch.Generator().manual_seed(3)
    for nv in (1, 7, 300, 3001):  # one leaf, a padded tree, several levels
        verts = torch.randn(1, nv, 3, generator=g)
        points = 2 * torch.randn(1, 2000, 3, generator=g)
        brute = nearest_vertex_brute(points, verts)
        tree = nearest_vertex_tree(points, verts, leaf=16)
        assert torch.equal(tree[0], brute[0]) and torch.equal(tree[1], brute[1]), nv
    # duplicated vertices: the lower index wins, as the brute force's min
    verts = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0], [0, 1.0, 0]] * 40])
    points = torch.tensor([[[2.0, 0, 0], [0, 3.0, 0]]])
    idx, _ = nearest_vertex_tree(points, verts, leaf=4)
    assert idx.tolist() == [[0, 1]] == nearest_vertex_brute(points, verts)[0].tolist()


def test_leaves_partition_the_vertices() -> None:
    verts = torch.randn(2, 1000, 3, generator=torch.Generator().manual_seed(0))
    index, lo, hi = build_leaves(verts, leaf=64)
    assert index.shape == (2, 16, 63)  # 16 leaves of ceil(1000 / 16)
    for b in range(2):
        assert set(index[b].reshape(-1).tolist()) == set(range(1000))
        inside = verts[b][index[b]]  # (16,63,3)
        assert bool(((inside >= lo[b][:, None]) & (inside <= hi[b][:, None])).all())


def test_dispatch_brute_force_for_small_bodies_pytorch3d_when_installed(monkeypatch) -> None:
    points, verts = _body_points(2, 400)
    small = verts[:, :512]
    # the tiny config's path is the brute force itself (its runs stay bit-identical)
    pairs = zip(nearest_vertex(points, small), nearest_vertex_brute(points, small), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    # pytorch3d is not installed here: the tree answers
    assert knn._pytorch3d_knn() is None or "pytorch3d" in sys.modules
    expect = nearest_vertex_brute(points, verts)
    assert all(torch.equal(a, b) for a, b in zip(nearest_vertex(points, verts), expect, strict=True))
    # when it is installed, its knn_points answers (a stand-in module with the same signature)
    calls = []

    def knn_points(p1: torch.Tensor, p2: torch.Tensor, K: int) -> types.SimpleNamespace:
        calls.append(K)
        return types.SimpleNamespace(idx=nearest_vertex_brute(p1, p2)[0][..., None])

    ops = types.ModuleType("pytorch3d.ops")
    ops.knn_points = knn_points
    monkeypatch.setitem(sys.modules, "pytorch3d", types.ModuleType("pytorch3d"))
    monkeypatch.setitem(sys.modules, "pytorch3d.ops", ops)
    idx, dist = nearest_vertex(points, verts)
    assert calls == [1] and torch.equal(idx, expect[0])
    torch.testing.assert_close(dist, expect[1], rtol=0, atol=1e-6)


# ---- importance sampling -----------------------------------------------------------------------------
def test_importance_depths_follow_the_coarse_weights() -> None:
    depths = torch.linspace(1.0, 3.0, 32).expand(2, 5, 32).contiguous()
    sigma = torch.zeros(2, 5, 32)
    sigma[..., 20:] = 500.0  # an opaque surface at depth ~2.29: all the weight on sample 20
    w = ray_weights(sigma, depths)
    fine = importance_depths(depths, w, 48)
    assert fine.shape == (2, 5, 48)
    assert bool((fine[..., 1:] >= fine[..., :-1]).all())  # sorted
    # nearly all draws land within two coarse spacings of the surface (the smoothing spreads one
    # neighbour; + 0.01 keeps a little everywhere)
    near = ((fine - depths[..., 20:21]).abs() < 2 * (depths[0, 0, 1] - depths[0, 0, 0])).float().mean()
    assert float(near) > 0.8
    # an empty ray: the + 0.01 floor spreads the draws evenly over the interior bins
    flat = importance_depths(depths, torch.zeros(2, 5, 32), 30)
    gaps = flat[..., 1:] - flat[..., :-1]
    torch.testing.assert_close(gaps, torch.full_like(gaps, float(gaps.mean())), atol=2e-3, rtol=0)
    # deterministic: the quantiles without a generator, the same draws for the same seed
    assert torch.equal(fine, importance_depths(depths, w, 48))
    a = importance_depths(depths, w, 48, torch.Generator().manual_seed(5))
    b = importance_depths(depths, w, 48, torch.Generator().manual_seed(5))
    c = importance_depths(depths, w, 48, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # no gradient flows through the draws
    w_grad = w.clone().requires_grad_(True)
    assert not importance_depths(depths, w_grad, 8).requires_grad


def test_importance_pass_renders_a_thin_surface_better_and_off_changes_nothing(data) -> None:
    from backend.threedgm.dataset import collate
    from backend.threedgm.generator import BodyBatch
    from backend.threedgm.train import build_generator

    torch.manual_seed(0)
    G = build_generator(TINY, data).requires_grad_(False)
    items = collate([data[i] for i in range(2)])
    body = BodyBatch(items["verts"], items["transforms"], items["root"])
    z = torch.randn(2, TINY.generator.z_dim)
    off = G(z, items["cond"], items["K"], items["R"], items["t"], body)
    assert TINY.generator.samples_importance == 0
    # the same weights with an importance pass: another rendering of the same field
    G2 = build_generator(replace(TINY, generator=replace(TINY.generator, samples_importance=12)), data)
    G2.load_state_dict(G.state_dict())
    G2.requires_grad_(False)
    on = G2(z, items["cond"], items["K"], items["R"], items["t"], body)
    assert on["image"].shape == off["image"].shape
    assert not torch.equal(on["alpha"], off["alpha"])
    # far more samples of the stratified pass alone (the reference): importance lands nearer it
    G3 = build_generator(replace(TINY, generator=replace(TINY.generator, samples=96)), data)
    G3.load_state_dict(G.state_dict())
    G3.requires_grad_(False)
    ref = G3(z, items["cond"], items["K"], items["R"], items["t"], body)
    err_on = float((on["alpha"] - ref["alpha"]).abs().mean())
    err_off = float((off["alpha"] - ref["alpha"]).abs().mean())
    assert err_on < err_off, (err_on, err_off)
    # training draws: one seed, one rendering
    gen = [torch.Generator().manual_seed(9) for _ in range(2)]
    r = [G2(z, items["cond"], items["K"], items["R"], items["t"], body, generator=g)["image"] for g in gen]
    assert torch.equal(r[0], r[1])


def test_configs_json_round_trip_and_tiny_runs_unchanged() -> None:
    # tiny's config.json has no samples_importance key (runs written before it still match)
    assert "samples_importance" not in TINY.to_json()["generator"]
    assert TrainConfig.from_json(TINY.to_json()) == TINY
    assert BASE.generator.samples == 48 and BASE.generator.samples_importance == 48
    assert BASE.to_json()["generator"]["samples_importance"] == 48
    assert TrainConfig.from_json(BASE.to_json()) == BASE
    assert get_config("base", batch=1).batch == 1
