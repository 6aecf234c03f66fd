"""Surface refinement: per-vertex offsets of the sculpted mesh against the views' masks at full size.

The DMTet sculpt (sculpt.py) works on a grid of ~2.9 cm cells (~8 px at 512 px) and compares
silhouettes at half the views' resolution, so its outlines are ~1 px off on views it never saw,
and on held-out views most of the error inside the masks sits in the 3-px band around the outlines
(docs/benchmarks.md, Avatar). This stage takes the extracted mesh (optionally midpoint-subdivided:
the faces stay watertight and manifold if they were) and moves each vertex along its smoothed
normal by a scalar offset, optimised against every training view's mask at the view's own
resolution through the antialiased coverage (``render_views.silhouette_coverage``: it walks to the
true silhouette edge, so it is unbiased with pixel-sized triangles).

Why offsets along fixed normals and not free 3D moves: a silhouette only says where the outline
is across it, and free moves slide vertices along the surface and tangle the triangles. The offset
field is the parameter vector diffused over the mesh (a few neighbour averagings), so a silhouette
gradient at an outline vertex moves a patch, not a spike; a Laplacian penalty on the field keeps it
smooth (without shrinking the mesh, as a Laplacian on positions would), and offsets are clamped to
``max_offset`` (the sculpt already has the shape; this only corrects the outline).

Generated views disagree (1-2 px camera error, blobs on the mask outline, one warped view): each
view's loss is scaled by a per-view confidence (the sculpt's Cauchy weight of its silhouette
disagreement against the median view's, updated here at full size), optionally through a
pseudo-Huber of the coverage residual. A view with weight 0 contributes nothing. Vertices with a
``free`` weight below 1 (the body's hands where the grid was too coarse, hands.py) move less, 0:
not at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from backend.avatar.geometry.sculpt import _soft_disagreement, pseudo_huber, view_confidence
from backend.avatar.io.views import View
from backend.avatar.progress import ProgressFn, no_progress
from backend.avatar.render_views import (
    camera_clip,
    mesh_coverages,
    resize_image,
    scaled_size,
    silhouette_coverage,
)
from backend.mesh.adjacency import vertex_adjacency, vertex_degree
from backend.mesh.normals import vertex_normals
from backend.render.edges import edge_twins


@dataclass
class RefineConfig:
    # 24 x 2 views: ~35 CPU s on the bench's 512 px views (~64 renders of ~0.55 CPU s with the
    # before/after measurements), what the 90 s budget of the default views leaves (30 x 3: 58 CPU s).
    iterations: int = 24  # 0: the stage is off
    subdivide: int = 0  # midpoint subdivisions before optimising (each: 4x faces)
    render_scale: float = 1.0  # fraction of the views' resolution the masks are compared at
    # A vertex gets a silhouette gradient only from views whose outline it is on: with 2 of 6
    # views per step a sphere converged ~3x slower than with all of them (tests/avatar/test_refine.py
    # uses all); more views per step cost proportionally more.
    views_per_iter: int = 2
    lr: float = 2e-3  # metres per Adam step at the start; linear decay to 10 %
    smooth_steps: int = 2  # neighbour averagings from the parameters to the offset field
    normal_smooth_steps: int = 4  # neighbour averagings of the offset directions (MT normals are noisy)
    max_offset: float = 0.015  # metres: the offsets are clamped to +-this
    w_mask: float = 1.0
    w_laplacian: float = 0.05  # on the offset field, per squared mean edge length
    # Pseudo-Huber scale of the coverage residual (0: squared error). At 0.1 a pixel a mask blob got
    # wholly wrong pulls like an L1 term, not 10x harder than a rim pixel a tenth off: perturbed
    # bench +0.18 dB inside the masks, perfect views +0.03 dB (same sculpt, texture re-fitted).
    mask_robust_scale: float = 0.1
    view_weights: bool = True
    view_outlier_ratio: float = 2.0
    rasterizer: str = "auto"
    seed: int = 0


@dataclass
class RefineResult:
    vertices: np.ndarray
    faces: np.ndarray
    free: np.ndarray  # (N,) per-vertex freedom used (subdivided with the mesh)
    offsets: np.ndarray  # (N,) metres along ``directions``
    directions: np.ndarray  # (N,3) unit
    seconds: float
    losses: list[float]
    view_weights: np.ndarray | None
    disagreement_before: np.ndarray  # (V,) outline misplacement per training view, px, before ...
    disagreement_after: np.ndarray  # ... and after (at the refinement's render scale)


def subdivide_midpoint(
    vertices: np.ndarray, faces: np.ndarray, values: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One 1-to-4 midpoint subdivision. Each undirected edge gets one midpoint shared by the faces
    on both sides, so a watertight manifold mesh stays watertight and manifold; per-vertex
    ``values`` are averaged onto the midpoints."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = np.sort(e, axis=1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(3, len(f)).T + len(v)  # (F,3) midpoint of edges 01, 12, 20
    new_v = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])])
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    ab, bc, ca = inverse[:, 0], inverse[:, 1], inverse[:, 2]
    new_f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                            np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)])
    new_values = None
    if values is not None:
        vals = np.asarray(values, dtype=np.float64)
        new_values = np.concatenate([vals, 0.5 * (vals[uniq[:, 0]] + vals[uniq[:, 1]])])
    return new_v, new_f, new_values


def _averaging_operator(faces: np.ndarray, n: int) -> torch.Tensor:
    """Sparse (n,n) row-stochastic matrix: half the vertex's own value, half its neighbours' mean."""
    adj = vertex_adjacency(faces, n)
    deg = vertex_degree(adj)
    m = (0.5 * sp.identity(n) + 0.5 * sp.diags(1.0 / deg) @ adj).tocoo()
    idx = torch.as_tensor(np.stack([m.row, m.col]), dtype=torch.int64)
    return torch.sparse_coo_tensor(idx, torch.as_tensor(m.data, dtype=torch.float32), (n, n),
                                   check_invariants=False).coalesce()


def _smooth(op: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
    column = x.dim() == 1
    y = x.unsqueeze(1) if column else x
    for _ in range(steps):
        y = torch.sparse.mm(op, y)
    return y[:, 0] if column else y


def _view_targets(views: list[View], scale: float) -> list[tuple[tuple[int, int], torch.Tensor]]:
    return [(scaled_size(v.camera, scale),
             torch.as_tensor(resize_image(v.rgba[..., 3:4], scaled_size(v.camera, scale)))[..., 0])
            for v in views]


def outline_error_px(
    vertices: np.ndarray, faces: np.ndarray, views: list[View], scale: float = 1.0, rasterizer: str = "auto"
) -> np.ndarray:
    """Per view: the mesh's silhouette misplacement against the view's mask, in pixels at ``scale``
    (|coverage - mask| summed over the image per pixel of the mask's outline)."""
    coverages = mesh_coverages(vertices, faces, [view.camera for view in views], scale, rasterizer)
    return np.asarray([_soft_disagreement(cover, mask) * 1.0
                       for cover, (_, mask) in zip(coverages, _view_targets(views, scale), strict=True)])


def refine_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    views: list[View],
    config: RefineConfig,
    view_weights: np.ndarray | None = None,
    free: np.ndarray | None = None,
    progress: ProgressFn = no_progress,
) -> RefineResult:
    """Refine ``vertices`` (faces unchanged, or subdivided) against ``views``' masks (module doc).

    ``view_weights``: the sculpt's per-view confidences to start from (None: measured here);
    ``free``: (N,) in [0, 1], how much each vertex may move (None: all 1).
    """
    from backend.render import get_rasterizer

    t0 = time.perf_counter()
    cfg = config
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    v_np = np.asarray(vertices, dtype=np.float64)
    f_np = np.asarray(faces, dtype=np.int64)
    free_np = np.ones(len(v_np)) if free is None else np.clip(np.asarray(free, dtype=np.float64), 0, 1)
    for _ in range(cfg.subdivide):
        v_np, f_np, free_np = subdivide_midpoint(v_np, f_np, free_np)
    n_views = len(views)
    n = len(v_np)
    op = _averaging_operator(f_np, n)
    base = torch.as_tensor(v_np, dtype=torch.float32)
    f = torch.as_tensor(f_np, dtype=torch.int64)
    directions = F.normalize(_smooth(op, vertex_normals(base, f), cfg.normal_smooth_steps), dim=-1)
    free_t = torch.as_tensor(free_np, dtype=torch.float32)
    edges = np.unique(np.sort(np.concatenate([f_np[:, [0, 1]], f_np[:, [1, 2]], f_np[:, [2, 0]]]), 1), axis=0)
    lengths = np.linalg.norm(v_np[edges[:, 0]] - v_np[edges[:, 1]], axis=1)
    mean_edge = float(lengths.mean()) if len(lengths) else 1.0
    targets = _view_targets(views, cfg.render_scale)
    rast = get_rasterizer(cfg.rasterizer)
    twins = edge_twins(f)
    fi = f.int()

    def offsets_of(u: torch.Tensor) -> torch.Tensor:
        s = _smooth(op, u, cfg.smooth_steps)
        return cfg.max_offset * torch.tanh(s / cfg.max_offset) * free_t  # soft clamp keeps a gradient

    def coverage(verts: torch.Tensor, k: int) -> torch.Tensor:
        clip = camera_clip(verts, views[k].camera, cfg.render_scale)
        r = rast.rasterize(clip, fi, resolution=targets[k][0])
        return silhouette_coverage(r, clip, f, twins)

    with torch.no_grad():
        before = np.array([_soft_disagreement(coverage(base, k), targets[k][1]) for k in range(n_views)])
    # The given weights (the sculpt's) times the confidence measured here at full size: a view
    # given weight 0 stays at 0.
    prior = np.ones(n_views) if view_weights is None else np.clip(np.asarray(view_weights, float), 0, None)
    adapt = cfg.view_weights and n_views > 2
    weights = prior * (view_confidence(before, cfg.view_outlier_ratio) if adapt else 1.0)
    disagreement = before.copy()
    u = torch.zeros(n, requires_grad=True)
    opt = torch.optim.Adam([u], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / max(cfg.iterations, 1))
    losses: list[float] = []
    # Views with zero weight are never drawn: they could only add a zero-weight term.
    usable = np.nonzero(weights > 0)[0]
    for it in range(cfg.iterations if len(usable) else 0):
        pick = rng.choice(usable, size=min(cfg.views_per_iter, len(usable)), replace=False)
        s = offsets_of(u)
        verts = base + s.unsqueeze(1) * directions
        weight_sum = float(weights[pick].sum())
        loss = torch.zeros(())
        for k in pick:
            cover = coverage(verts, int(k))
            mask = targets[k][1]
            with torch.no_grad():
                disagreement[k] = 0.5 * disagreement[k] + 0.5 * _soft_disagreement(cover, mask)
            wk = weights[k] / max(weight_sum, 1e-9)
            loss = loss + wk * cfg.w_mask * pseudo_huber(cover - mask, cfg.mask_robust_scale).mean()
        lap = s - _smooth(op, s, 1)  # the operator's own Laplacian (half the uniform one)
        loss = loss + cfg.w_laplacian * lap.pow(2).mean() / mean_edge**2 * 1e-2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if adapt:
            weights = prior * view_confidence(disagreement, cfg.view_outlier_ratio)
            usable = np.nonzero(weights > 0)[0]
        losses.append(float(loss.item()))
        progress("sculpt.surface", (it + 1) / cfg.iterations,
                 f"surface {it + 1}/{cfg.iterations} loss {losses[-1]:.5f}")
    with torch.no_grad():
        s = offsets_of(u)
        out = v_np + s.double().unsqueeze(1).numpy() * directions.double().numpy()  # exact where s = 0
        after = np.array([_soft_disagreement(coverage(torch.as_tensor(out, dtype=torch.float32), k),
                                             targets[k][1]) for k in range(n_views)])
    return RefineResult(
        vertices=out,
        faces=f_np,
        free=free_np,
        offsets=s.double().numpy(),
        directions=directions.double().numpy(),
        seconds=time.perf_counter() - t0,
        losses=losses,
        view_weights=weights,
        disagreement_before=before,
        disagreement_after=after,
    )
