"""Geometric sculpting (GS): DMTet on a tet grid, fitted to the body SDF, refined from the views.

Stage 1 (init): the SDF/offset MLP is regressed onto the SMPL-X body's signed distance at the grid
vertices and at points scattered around the body surface (truncated, so the fit spends its capacity
near the surface). Stage 2 (refine): marching tetrahedra gives a mesh each iteration; it is
rasterised from a few training views and compared with the views' masks (through an analytic
silhouette coverage, ``render_views.silhouette_coverage``, which gives silhouette gradients) and
normal maps, with regularisers: nvdiffrec's SDF sign consistency across crossing edges (kills
floaters), a uniform Laplacian on the surface and an L2 penalty on the vertex offsets.

When the views carry no normal maps, the ``normal-estimator`` model role (Marigold normals,
backend/models/load.py) estimates them from the images; without that role
:class:`NormalEstimatorMissing` says how to proceed (give normal maps, download the role, or run
with ``normal_source="none"``: the mask-only path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from backend.avatar.geometry.body_sdf import BodySDF
from backend.avatar.geometry.hull_box import body_box, grid_box
from backend.avatar.geometry.marching_tets import marching_tets
from backend.avatar.geometry.sdf_net import SDFNet, SDFNetConfig
from backend.avatar.geometry.tetgrid import TetGrid, make_tet_grid
from backend.avatar.io.views import View
from backend.avatar.progress import ProgressFn, no_progress
from backend.avatar.render_views import (
    camera_clip,
    resize_image,
    scaled_size,
    silhouette_coverage,
)
from backend.mesh.adjacency import face_components
from backend.mesh.normals import vertex_normals
from backend.render.edges import edge_twins
from protocol.cameras import CameraFrame


class NormalEstimatorMissing(RuntimeError):
    """Views without normal maps need the ``normal-estimator`` model role."""


@dataclass
class SculptConfig:
    grid_resolution: int = 64  # tet-grid cells along the longest side of the body's box
    margin: float = 0.08  # metres added around the body's box: room for hair and loose clothes
    hull_box: bool = True  # grow the box to the views' visual hull (clothes further off the body)
    net: SDFNetConfig = field(default_factory=SDFNetConfig)
    init_iters: int = 100
    init_lr: float = 1e-2
    init_samples: int = 8192  # near-surface points per init step (and as many near grid vertices)
    # metres: SDF targets are clamped to +-this in the init fit, but never below ``min_truncation_cells``
    # cells: at grid 24-32 (cells 6-7.5 cm) 6 cm made every grid vertex's target +-6 cm, a field near
    # zero at the cell scale that the first Adam steps of the refinement could erase ("lost the surface").
    truncation: float = 0.06
    min_truncation_cells: float = 2.0
    # Vertices the refinement never changes: the grid's boundary stays outside and the body's deep
    # interior (deeper than this many cells, or than 60 % of its deepest grid vertex) stays inside,
    # so no view, however wrong (masks 3x the body from a noise generator), can turn every vertex
    # inside or outside and erase the surface.
    pin_interior_cells: float = 2.0
    pin_vertices: bool = True  # False: the old behaviour (every band vertex free), for comparison
    band_cells: float = 3.0  # refine evaluates the field only this many cells around the surface
    band_interval: int = 20  # iterations between re-evaluations of the whole grid
    # 160: with the silhouette and normal terms unbiased the sculpt keeps improving past 100
    # iterations and no longer diverges (see docs/benchmarks.md, Avatar); ~60 % more GS time.
    refine_iters: int = 160
    refine_lr: float = 3e-3
    render_scale: float = 0.5  # optimisation renders at this fraction of the views' resolution
    mask_scale: float = 1.0  # the silhouette term renders at this fraction of render_scale (1: same raster)
    views_per_iter: int = 2
    normal_source: str = "auto"  # "auto" (views' maps, else the estimator) | "views" | "estimator" | "none"
    # 4.0: the antialiased coverage's silhouette gradient is now per unit edge motion the true one
    # (each edge blended by one pair direction, as in nvdiffrast); before, slanted edges were blended
    # by both and got ~2x, which 2.0 was tuned with. At 2.0 with the correct gradient the sculpt lost
    # ~2.5 dB held-out PSNR; 4.0 gives 0.45 cm Chamfer, 27.6 dB (docs/benchmarks.md, Avatar).
    w_mask: float = 4.0
    w_normal: float = 1.0
    w_sdf_sign: float = 0.02
    w_laplacian: float = 0.5
    w_offset: float = 0.1
    keep_components_ratio: float = 0.05  # drop pieces smaller than this fraction of the largest one
    # Robustness to views that disagree (generated views, docs/avatar.md "Robust to generated views"):
    # silhouette residuals through a pseudo-Huber (Charbonnier) of this scale make a pixel a mask
    # blob gets wholly wrong pull ~3.5x less. Off (0: squared error) by default: at 0.3 the rim's
    # pull also dropped ~0.65x, like halving w_mask, and the perfect-view sculpt lost what the mask
    # weight 4 had won (Chamfer 0.58 cm against 0.47; docs/benchmarks.md, Avatar).
    mask_robust_scale: float = 0.0
    # Per-view confidence: each view's silhouette disagreement (1 - soft IoU, running mean) against
    # the median view's; a view disagreeing ``view_outlier_ratio`` x more than the median gets half
    # weight (Cauchy). The first estimate is the body fit's, i.e. agreement with the body prior.
    view_weights: bool = True
    view_outlier_ratio: float = 2.0
    # Cameras off by a few pixels: a small rotation per training view about its centre, optimised with
    # the surface (the mean over views is held at zero: the body fixes the world frame). Off by
    # default: on the perturbed bench it did not lower the Chamfer distance (0.65 cm with it and
    # the pseudo-Huber, 0.59 without either); the silhouettes alone cannot tell a turned camera
    # from a moved surface.
    refine_cameras: bool = False
    camera_lr: float = 2e-4  # radians per step (Adam)
    rasterizer: str = "auto"
    seed: int = 0


@dataclass
class SculptResult:
    vertices: np.ndarray
    faces: np.ndarray
    init_seconds: float
    refine_seconds: float
    losses: list[float]
    grid: TetGrid
    normal_source: str
    init_vertices: np.ndarray | None = None  # the mesh right after the body-SDF fit (diagnostics)
    init_faces: np.ndarray | None = None
    view_weights: np.ndarray | None = None  # (V,) the last per-view confidences (1 = trusted)
    camera_corrections: np.ndarray | None = None  # (V,3) axis-angle applied to each camera (rad)
    cameras: list | None = None  # the training cameras with the corrections applied
    init_iters_run: int = 0  # the body fit's iterations (more than init_iters when the sign was off)
    step_backs: int = 0  # refinement steps undone (empty mesh or non-finite loss)


def resolve_normal_source(views: list[View], config: SculptConfig) -> str:
    if config.normal_source == "none":
        return "none"
    have = all(v.normal is not None for v in views)
    if config.normal_source in ("auto", "views") and have:
        return "views"
    if config.normal_source == "views":
        raise ValueError("normal_source='views' but some training views have no normal map")
    try:
        from backend.models import require  # the models registry (backend/models/, docs/models.md)

        require("normal-estimator")
    except Exception as exc:
        raise NormalEstimatorMissing(
            "the training views have no normal maps and the model role 'normal-estimator' is not available "
            f"({type(exc).__name__}: {exc}). Provide normal maps in the views folder (normal/<name>.png, "
            "see docs/avatar.md), configure the 'normal-estimator' role in the models registry, or run the "
            "mask-only path (normal_source='none', CLI --normals none)."
        ) from exc
    estimate_view_normals([v for v in views if v.normal is None or config.normal_source == "estimator"],
                          config.seed)
    return "estimator"


def estimate_view_normals(views: list[View], seed: int = 0) -> None:
    """Fill ``view.normal`` (world frame) from the ``normal-estimator`` role (Marigold normals,
    backend/models/load.py): camera-space estimates rotated by the view's camera."""
    from backend.models.load import estimate_normals, load_normal_estimator

    if not views:
        return
    pipe = load_normal_estimator()
    for v in views:
        n_cam = estimate_normals(pipe, v.rgba[..., :3] * v.rgba[..., 3:4], seed)
        v.normal = (n_cam @ v.camera.R.astype(np.float32)).astype(np.float32)  # R^T n, row vectors


def _remove_small_components(v: np.ndarray, f: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    if len(f) == 0:
        return v, f
    n, label_f = face_components(f)
    sizes = np.bincount(label_f, minlength=n)
    keep_f = sizes[label_f] >= ratio * sizes.max()
    f = f[keep_f]
    used = np.unique(f)
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def _rodrigues(w: torch.Tensor) -> torch.Tensor:
    """(3,3) rotation of the axis-angle ``w`` (differentiable, exact at zero)."""
    theta2 = (w * w).sum()
    k = torch.zeros(3, 3, dtype=w.dtype)
    k = k.index_put((torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 2, 0, 2, 0, 1])),
                    torch.stack([-w[2], w[1], w[2], -w[0], -w[1], w[0]]))
    # sin(t)/t and (1-cos t)/t^2 by their series: t is a few milliradians here.
    a = 1 - theta2 / 6 + theta2 * theta2 / 120
    b = 0.5 - theta2 / 24 + theta2 * theta2 / 720
    return torch.eye(3, dtype=w.dtype) + a * k + b * (k @ k)


def corrected_camera(cam: CameraFrame, w: np.ndarray) -> CameraFrame:
    """``cam`` turned about its centre by the axis-angle ``w`` (camera frame): R' = dR R, t' = dR t."""
    d = _rodrigues(torch.as_tensor(w, dtype=torch.float64)).numpy()
    return CameraFrame(K=cam.K.copy(), R=d @ cam.R, t=d @ cam.t, width=cam.width, height=cam.height,
                       near=cam.near, far=cam.far)


def view_confidence(disagreement: np.ndarray, ratio: float) -> np.ndarray:
    """Cauchy weights of per-view disagreements relative to the median view (<= 1; 0.5 at ``ratio``x)."""
    med = float(np.median(disagreement))
    if med <= 0:
        return np.ones_like(disagreement)
    excess = np.maximum(disagreement / med - 1.0, 0.0) / max(ratio - 1.0, 1e-6)
    return 1.0 / (1.0 + excess**2)


def pseudo_huber(d: torch.Tensor, scale: float) -> torch.Tensor:
    """Charbonnier / pseudo-Huber with the squared error's scale for small ``d`` (d^2 near 0)."""
    if scale <= 0:
        return d * d
    return 2 * scale * scale * (torch.sqrt(1 + (d / scale) ** 2) - 1)


def _soft_disagreement(cover: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean silhouette misplacement in pixels: |coverage - mask| summed over the image, per pixel
    of the mask's outline. Unlike 1 - IoU it does not rank side views (small area, same outline
    error) as worse than front views."""
    m = mask[None, None]
    outline = (F.max_pool2d(m, 3, stride=1, padding=1) - (-F.max_pool2d(-m, 3, stride=1, padding=1)))
    return float((cover - mask).abs().sum() / (0.5 * outline.sum()).clamp(min=1.0))


def _uniform_laplacian(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    nsum = (
        torch.zeros_like(v)
        .index_add(0, edges[:, 0], v[edges[:, 1]])
        .index_add(0, edges[:, 1], v[edges[:, 0]])
    )
    deg = torch.zeros(v.shape[0], dtype=v.dtype).index_add(
        0, edges.reshape(-1), torch.ones(edges.numel(), dtype=v.dtype)
    )
    return (v - nsum / deg.clamp(min=1).unsqueeze(1)).pow(2).sum(1).mean()


class Sculptor:
    """Holds the grid and the field; ``fit_body`` then ``refine`` then ``extract``."""

    def __init__(self, body_vertices: np.ndarray, body_faces: np.ndarray, config: SculptConfig,
                 views: list[View] | None = None) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.body = BodySDF(body_vertices, body_faces)
        # the body's box plus the margin, grown to the views' visual hull where clothes reach further
        lo, hi = grid_box(body_vertices, config.margin, views if config.hull_box else None)
        self.body_box = body_box(body_vertices, config.margin)
        self.grid = make_tet_grid(lo, hi, config.grid_resolution)
        self.lo = torch.as_tensor(self.grid.vertices.min(0))
        self.hi = torch.as_tensor(self.grid.vertices.max(0))
        self.grid_vertices = torch.as_tensor(self.grid.vertices)
        self.tets = torch.as_tensor(self.grid.tets)
        self.net = SDFNet(config.net, self.grid.cell_size)
        self.rng = np.random.default_rng(config.seed)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo) / (self.hi - self.lo) * 2 - 1

    def fit_body(self, progress: ProgressFn = no_progress) -> None:
        cfg = self.config
        grid_sdf_np = self.body(self.grid.vertices)
        grid_sdf = torch.as_tensor(grid_sdf_np, dtype=torch.float32)
        tr = max(cfg.truncation, cfg.min_truncation_cells * self.grid.cell_size)
        near = torch.as_tensor(np.nonzero(np.abs(grid_sdf_np) < tr)[0])
        far = torch.as_tensor(np.nonzero(np.abs(grid_sdf_np) >= tr)[0])
        # A fixed pool of near-surface points (two scales), resampled in batches: the SDF query is the
        # costly part, so it is done once.
        pool = np.concatenate(
            [self.body.near_surface_samples(cfg.init_samples * 4, s, self.rng) for s in (0.01, 0.04)]
        )
        pool_sdf = torch.as_tensor(self.body(pool), dtype=torch.float32)
        pool_t = torch.as_tensor(pool, dtype=torch.float32)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.init_lr)
        n_far = min(len(far), cfg.init_samples // 4)
        n_near = min(len(near), cfg.init_samples)
        # The fit runs ``init_iters`` steps, then on in tens while the field gets the body's sign wrong
        # at more than 2 % of the grid vertices that are clearly inside or outside (at most 3x
        # ``init_iters`` more): too short a fit left a field near zero that the refinement erased.
        # Counted within the body's box + margin: a box grown to the views' hull adds far vertices
        # that are right from the start and would let a short fit pass the 2 %.
        gv = self.grid.vertices
        in_body_box = np.all((gv >= self.body_box[0]) & (gv <= self.body_box[1]), axis=1)
        clear = np.abs(grid_sdf_np) > 0.25 * self.grid.cell_size
        check = torch.as_tensor(np.nonzero(clear & in_body_box)[0])
        it, limit = 0, cfg.init_iters
        while it < limit:
            # Random subsets each step: grid vertices near the surface (where marching tets will look),
            # a few far ones (to keep the sign right everywhere) and the near-surface pool.
            pick = torch.as_tensor(self.rng.integers(0, len(pool), cfg.init_samples))
            far_pick = far[torch.as_tensor(self.rng.integers(0, max(len(far), 1), n_far))] if n_far else far
            near_pick = (
                near[torch.as_tensor(self.rng.integers(0, max(len(near), 1), n_near))] if n_near else near
            )
            idx = torch.cat([near_pick, far_pick])
            x = torch.cat([self.grid_vertices[idx], pool_t[pick]])
            target = torch.cat([grid_sdf[idx], pool_sdf[pick]]).clamp(-tr, tr)
            sdf, offset = self.net(self.normalise(x))
            # Targets are truncated; the prediction is not clamped (a clamp would kill its gradient).
            fit = F.l1_loss(sdf, target)
            loss = fit + 1e-2 * offset.pow(2).sum(1).mean() / self.grid.cell_size**2
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
            if it % 10 == 0 or it == limit:
                progress(
                    "sculpt.init",
                    min(it / cfg.init_iters, 1.0),
                    f"init fit {it}/{limit} L1 {fit.item():.4f}",
                )
            if it == limit and len(check) and limit < 4 * cfg.init_iters:
                with torch.no_grad():
                    pred = self.net(self.normalise(self.grid_vertices[check]))[0]
                wrong = float(((pred > 0) != (grid_sdf[check] > 0)).float().mean())
                if wrong > 0.02:
                    limit = min(limit + 10, 4 * cfg.init_iters)
        self.init_iters_run = it
        # Pinned vertices (see SculptConfig.pin_interior_cells) take the body's clamped SDF for good.
        gv = self.grid.vertices
        boundary = np.zeros(len(gv), bool)
        for axis in range(3):
            lo, hi = gv[:, axis].min(), gv[:, axis].max()
            boundary |= np.isclose(gv[:, axis], lo) | np.isclose(gv[:, axis], hi)
        # At grid 24 (7.8 cm cells) no vertex is 2 cells inside a body: pin the deepest ones then.
        depth = min(cfg.pin_interior_cells * self.grid.cell_size, 0.6 * float(-grid_sdf_np.min()))
        deep = grid_sdf_np < -depth
        self.pinned = torch.as_tensor((boundary | deep) & cfg.pin_vertices)
        self.pinned_sdf = torch.where(torch.as_tensor(boundary), torch.tensor(tr), grid_sdf.clamp(-tr, tr))
        self.update_band(full=True)

    def update_band(self, full: bool = False) -> None:
        """Re-evaluate the field (no grad) and choose the vertices near the surface.

        Only tets with a sign change produce surface, so between band updates the field is evaluated
        (with gradients) only at the vertices of tets within ``band_cells`` of the surface; the others
        keep their cached values. After the initial fit (``full``) only band vertices are ever
        re-evaluated: vertices far from the surface keep the sign of the body fit, so changes of the
        shared encoding cannot grow unsupervised surface far away (floating sheets).
        """
        with torch.no_grad():
            if full:
                sdf, offset = self.net(self.normalise(self.grid_vertices))
            else:
                s_band, o_band = self.net(self.normalise(self.grid_vertices[self.band]))
                sdf = self.cached_sdf.index_put((self.band,), s_band)
                offset = self.cached_offset.index_put((self.band,), o_band)
        pinned = getattr(self, "pinned", None)
        if pinned is not None:
            sdf = torch.where(pinned, self.pinned_sdf, sdf)
        self.cached_sdf, self.cached_offset = sdf, offset
        near_v = sdf.abs() < self.config.band_cells * self.grid.cell_size
        tet_near = near_v[self.tets].any(1)
        band = torch.zeros_like(near_v)
        band[self.tets[tet_near].reshape(-1)] = True
        if pinned is not None:
            band &= ~pinned
        self.band = torch.nonzero(band).squeeze(1)
        # Tets with a vertex outside the band keep fixed values there; they are marched (with the
        # cached values) so the surface stays closed, but only band tets can change.
        self.band_tets = self.tets[tet_near]

    def surface(self, full: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Current mesh (vertices, faces) plus the grid SDF and offsets it came from."""
        if full:  # extraction: band vertices from the net, the rest from the cache, all tets
            s_band, o_band = self.net(self.normalise(self.grid_vertices[self.band]))
            sdf = self.cached_sdf.index_put((self.band,), s_band)
            offset = self.cached_offset.index_put((self.band,), o_band)
            tets = self.tets
        else:
            s_band, o_band = self.net(self.normalise(self.grid_vertices[self.band]))
            sdf = self.cached_sdf.index_put((self.band,), s_band)
            offset = self.cached_offset.index_put((self.band,), o_band)
            tets = self.band_tets
        v, f = marching_tets(self.grid_vertices + offset, sdf, tets)
        return v, f, sdf, offset

    def refine(
        self, views: list[View], normal_source: str, progress: ProgressFn = no_progress
    ) -> list[float]:
        from backend.render import get_rasterizer, interpolate

        cfg = self.config
        if cfg.refine_iters <= 0:
            return []
        rast = get_rasterizer(cfg.rasterizer)
        targets = []
        for v in views:
            size = scaled_size(v.camera, cfg.render_scale)
            mask_size = scaled_size(v.camera, cfg.render_scale * cfg.mask_scale)
            mask = torch.as_tensor(resize_image(v.rgba[..., 3:4], mask_size))
            inner = torch.as_tensor(resize_image(v.rgba[..., 3:4], size))[..., 0] > 0.99
            normal = None
            if normal_source in ("views", "estimator") and v.normal is not None:
                n = resize_image(v.normal * v.rgba[..., 3:4], size)
                normal = F.normalize(torch.as_tensor(n), dim=-1, eps=1e-6)
            targets.append((size, mask_size, mask, inner, normal))
        n_views = len(views)
        self.camera_w = torch.zeros(n_views, 3, requires_grad=True)
        groups: list[dict] = [{"params": list(self.net.parameters()), "lr": cfg.refine_lr}]
        if cfg.refine_cameras:
            groups.append({"params": [self.camera_w], "lr": cfg.camera_lr})
        opt = torch.optim.Adam(groups)
        # Each view's silhouette disagreement, first measured on the body fit (agreement with the
        # body prior), then a running mean over the iterations that pick the view.
        disagreement = np.ones(n_views)
        if cfg.view_weights and n_views > 2:
            with torch.no_grad():
                v0, f0, _, _ = self.surface()
                twins0 = edge_twins(f0)
                for k in range(n_views):
                    size, mask_size, mask_t, _, _ = targets[k]
                    clip = camera_clip(v0, views[k].camera, cfg.render_scale * cfg.mask_scale)
                    r0 = rast.rasterize(clip, f0.int(), resolution=mask_size)
                    cover0 = silhouette_coverage(r0, clip, f0, twins0)
                    disagreement[k] = _soft_disagreement(cover0, mask_t[..., 0])
        self.view_weights = view_confidence(disagreement, cfg.view_outlier_ratio) if cfg.view_weights \
            else np.ones(n_views)
        # Linear decay to 10 %: long runs at a constant rate were seen to diverge (the surface
        # broke up and a sheet grew from a hand) after ~120 iterations at grid 64. That was with the
        # biased silhouette/normal terms that kept inflating the mesh; the decay is kept as a margin.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / max(cfg.refine_iters, 1))
        centres = [torch.as_tensor(np.asarray(v.camera.centre), dtype=torch.float32) for v in views]
        rots = [torch.as_tensor(np.asarray(v.camera.R), dtype=torch.float32) for v in views]
        losses: list[float] = []
        # Last good state: a step that empties the band or makes the loss non-finite is undone and
        # the learning rate halved (at most ``max_retries`` times), instead of failing the job.
        good = {k: t.clone() for k, t in self.net.state_dict().items()}
        retries = 0
        self.retries = 0

        def step_back(reason: str) -> None:
            nonlocal retries
            retries += 1
            self.retries = retries
            if retries > 3:
                raise RuntimeError(f"sculpting lost the surface ({reason}) 4 times; lower the learning rate")
            self.net.load_state_dict(good)
            for g in opt.param_groups:
                g["lr"] *= 0.5
            sched.base_lrs = [b * 0.5 for b in sched.base_lrs]
            opt.state.clear()
            self.update_band()

        for it in range(cfg.refine_iters):
            if it > 0 and it % cfg.band_interval == 0:
                self.update_band()
                good = {k: t.clone() for k, t in self.net.state_dict().items()}
            v, f, sdf, offset = self.surface()
            if f.shape[0] == 0:
                step_back("empty mesh")
                v, f, sdf, offset = self.surface()
                if f.shape[0] == 0:
                    raise RuntimeError("sculpting lost the surface (empty mesh); lower the learning rate")
            vn = vertex_normals(v, f)
            loss = torch.zeros(())
            pick = self.rng.choice(n_views, size=min(cfg.views_per_iter, n_views), replace=False)
            twins = edge_twins(f)
            weight_sum = float(sum(self.view_weights[k] for k in pick))
            for k in pick:
                size, mask_size, mask_t, inner_t, normal_t = targets[k]
                vk = v
                if cfg.refine_cameras:
                    # The camera's correction as a rotation of the mesh about the camera centre:
                    # X_cam = dR R (x - C) = R (C + R^T dR R (x - C) - C).
                    m = rots[k].T @ _rodrigues(self.camera_w[k]) @ rots[k]
                    vk = centres[k] + (v - centres[k]) @ m.T
                clip = camera_clip(vk, views[k].camera, cfg.render_scale)
                r = rast.rasterize(clip, f.int(), resolution=size)
                if mask_size != size:
                    m_clip = camera_clip(vk, views[k].camera, cfg.render_scale * cfg.mask_scale)
                    m_r = rast.rasterize(m_clip, f.int(), resolution=mask_size)
                else:
                    m_clip, m_r = clip, r
                # Antialiased mask coverage: unbiased with pixel-sized triangles (the silhouette
                # walk of ``antialias``; stopping at the first edge made the sculpt ~1 px fatter).
                cover = silhouette_coverage(m_r, m_clip, f, twins)
                target = mask_t[..., 0]
                with torch.no_grad():
                    d_k = _soft_disagreement(cover, target)
                disagreement[k] = 0.5 * disagreement[k] + 0.5 * d_k
                wk = self.view_weights[k] * len(pick) / max(weight_sum, 1e-9)
                view_loss = cfg.w_mask * pseudo_huber(cover - target, cfg.mask_robust_scale).mean()
                if normal_t is not None:
                    normals = interpolate(vn, r, f)[0]
                    # Compare normals only where both silhouettes are interior. The target's rim is
                    # excluded by ``inner_t`` (alpha < 0.99); the render's rim must be excluded too, or
                    # the loss sees the render's grazing rim normals inside a larger target (and
                    # pushes the surface out) but never the target's rim inside a larger render:
                    # a one-sided push that made the sculpt ~8 % larger than the masks.
                    covered = r.mask[0].float()[None, None]
                    pred_inner = -F.max_pool2d(-covered, 3, stride=1, padding=1)[0, 0] > 0.5
                    both = (pred_inner & inner_t).unsqueeze(-1).float()
                    pred_n = F.normalize(normals, dim=-1, eps=1e-6)
                    diff = (pred_n - normal_t).abs().sum(-1, keepdim=True) * both
                    view_loss = view_loss + cfg.w_normal * diff.sum() / both.sum().clamp(min=1)
                loss = loss + wk * view_loss
            if cfg.view_weights and n_views > 2:
                self.view_weights = view_confidence(disagreement, cfg.view_outlier_ratio)
            loss = loss / len(pick)
            # nvdiffrec's sign regulariser: SDFs across a crossing edge should agree with a clean sign flip.
            edges = self.band_tets[:, [0, 0, 0, 1, 1, 2, 1, 2, 3, 2, 3, 3]].reshape(-1, 2, 6).transpose(1, 2)
            edges = edges.reshape(-1, 2)
            sa, sb = sdf[edges[:, 0]], sdf[edges[:, 1]]
            cross = torch.sign(sa) != torch.sign(sb)
            if cross.any():
                la = sa[cross] / self.grid.cell_size
                lb = sb[cross] / self.grid.cell_size
                sign_reg = F.binary_cross_entropy_with_logits(
                    la, (lb > 0).float()
                ) + F.binary_cross_entropy_with_logits(lb, (la > 0).float())
                loss = loss + cfg.w_sdf_sign * sign_reg
            loss = loss + cfg.w_laplacian * _uniform_laplacian(v, f) / self.grid.cell_size**2 * 1e-2
            loss = loss + cfg.w_offset * (offset / self.grid.cell_size).pow(2).sum(1).mean() * 1e-2
            if not torch.isfinite(loss):
                step_back("non-finite loss")
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if cfg.refine_cameras:
                with torch.no_grad():  # gauge: the cameras' mean correction stays zero
                    self.camera_w -= self.camera_w.mean(0, keepdim=True)
            losses.append(float(loss.item()))
            progress(
                "sculpt.refine",
                (it + 1) / cfg.refine_iters,
                f"refine {it + 1}/{cfg.refine_iters} loss {losses[-1]:.4f} faces {f.shape[0]}",
            )
        return losses

    def extract(self) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            v, f, _, _ = self.surface(full=True)
        return _remove_small_components(
            v.numpy().astype(np.float64), f.numpy(), self.config.keep_components_ratio
        )


def sculpt(
    views: list[View],
    body_vertices: np.ndarray,
    body_faces: np.ndarray,
    config: SculptConfig,
    progress: ProgressFn = no_progress,
) -> SculptResult:
    """GS end to end: body-SDF init, view refinement, watertight mesh."""
    normal_source = resolve_normal_source(views, config)
    sculptor = Sculptor(body_vertices, body_faces, config, views)
    t0 = time.perf_counter()
    sculptor.fit_body(progress)
    t1 = time.perf_counter()
    init_v, init_f = sculptor.extract()
    losses = sculptor.refine(views, normal_source, progress)
    t2 = time.perf_counter()
    v, f = sculptor.extract()
    cam_w = getattr(sculptor, "camera_w", None)
    corrections = None if cam_w is None or not config.refine_cameras else cam_w.detach().double().numpy()
    return SculptResult(
        vertices=v,
        faces=f,
        init_seconds=t1 - t0,
        refine_seconds=t2 - t1,
        losses=losses,
        grid=sculptor.grid,
        normal_source=normal_source,
        init_vertices=init_v,
        init_faces=init_f,
        view_weights=getattr(sculptor, "view_weights", None),
        init_iters_run=int(getattr(sculptor, "init_iters_run", 0)),
        step_backs=int(getattr(sculptor, "retries", 0)),
        camera_corrections=corrections,
        cameras=None if corrections is None else [
            corrected_camera(view.camera, w) for view, w in zip(views, corrections, strict=True)],
    )
