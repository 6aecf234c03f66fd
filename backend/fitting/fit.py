"""SMPLify-X style fit of SMPL-X shape and pose to calibrated multi-view silhouettes (+ keypoints).

``fit_body(views, config)`` optimises ``global_orient``, ``transl``, ``body_pose`` and ``betas``
(hands flat, jaw and eyes at rest, no expression) in stages, each with Adam:

1. ``orient``: root rotation and translation only, silhouettes at a quarter of the resolution
   (broad basins) and keypoints (which, triangulated, give the facing); without keypoints the
   best of ``yaw_hypotheses`` probed yaws *and its opposite* (a body's outline is nearly the
   same from the front and the back) run this stage and the next, the lower loss goes on;
2. ``pose``: plus the body pose, half resolution, strong pose prior; then, without keypoints,
   left/right limb swaps are tried (``LIMB_FLIPS``);
3. ``shape``: plus the betas, full resolution, weaker prior;
4. ``refine``: everything against the rendered antialiased silhouette (``backend.render``'s
   differentiable alpha) at full resolution, prior weakest.

Terms and their weights are in docs/fitting.md. Torch on the CPU, or CUDA when present (chosen at
run time, ``device="auto"``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from backend.body.joints import JOINT_INDEX
from backend.body.loading import load_body_model
from backend.body.model import BodyModel, BodyParams
from backend.render.camera import CameraBatch
from backend.render.threads import torch_threads

from .init import kabsch, mask_anchor_points, triangulate_keypoints
from .inputs import FitInputError, FitView, check_views
from .keypoints import keypoint_term, layout_index, reprojection_errors
from .posing import SubsetPoser
from .priors import PosePrior, shape_prior
from .silhouette import ScaledMasks, point_terms, project, raster_term, scaled_masks, silhouette_iou

ProgressFn = Callable[[float, str], None]

# Keypoints that fix the root's rotation (rigid torso points), when the layout has them.
TORSO_KEYPOINTS = ("pelvis", "left_hip", "right_hip", "spine3", "neck", "left_shoulder", "right_shoulder")
COARSE_STRIDE = 3  # below full resolution, the silhouette terms use every third vertex


@dataclass
class Stage:
    name: str
    free: tuple[str, ...]  # which of global_orient, transl, body_pose, betas move
    iterations: int
    scale: float  # resolution of the point terms' masks
    lr: float
    pose_weight: float  # Gaussian pose prior
    raster: bool = False  # add the rendered-silhouette term
    # Geman-McClure scale of the keypoint term, fraction of the image's larger side: wide while
    # the body is far from the keypoints (a saturated residual has no gradient), narrow at the end
    keypoint_sigma: float = 0.05


DEFAULT_STAGES = (
    Stage("orient", ("global_orient", "transl"), 30, 0.25, 0.03, 1.0, keypoint_sigma=0.5),
    Stage("pose", ("global_orient", "transl", "body_pose"), 60, 0.5, 0.03, 0.3, keypoint_sigma=0.3),
    Stage("shape", ("global_orient", "transl", "body_pose", "betas"), 80, 1.0, 0.02, 0.05),
    Stage("refine", ("global_orient", "transl", "body_pose", "betas"), 20, 1.0, 0.005, 0.01, raster=True),
)


@dataclass
class FitConfig:
    gender: str = "neutral"
    layout: str | None = None  # keypoint layout of the views' keypoints (coco17 | smplx127)
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    yaw_hypotheses: int = 8  # facings probed without keypoints
    init_arms_degrees: float = 45.0  # the A-pose the fit starts from
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    # torch threads on the CPU during the fit: its ops are small (10k vertices), and on a busy CPU
    # every parallel op waits for a descheduled thread (2 threads measured ~6x slower than 1 here)
    cpu_threads: int = 1
    # Weights (silhouette and keypoint terms are in pixels^2 of the full-resolution images).
    inside_weight: float = 1.0
    cover_weight: float = 1.0
    raster_weight: float = 2000.0  # a mean squared alpha difference of 1e-3 ~ 2 pixels^2
    keypoint_weight: float = 1.0
    limit_weight: float = 1000.0
    shape_weight: float = 0.05
    max_abs_beta: float = 4.0


@dataclass
class FitResult:
    params: dict[str, Any]  # protocol SMPL-X payload, one frame (lists, JSON-ready)
    diagnostics: dict[str, Any]
    vertices: np.ndarray  # (V,3) posed body
    joints: np.ndarray  # (55,3)
    timings: dict[str, float] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _Problem:
    """The fixed data of one fit on one device: model, cameras, masks, keypoints, priors."""

    def __init__(self, views: list[FitView], model: BodyModel, config: FitConfig, device: torch.device):
        self.config = config
        self.model = model
        self.device = device
        h, w = views[0].size
        self.size = (h, w)
        self.K = torch.tensor(np.stack([v.K for v in views]), dtype=torch.float32, device=device)
        self.R = torch.tensor(np.stack([v.R for v in views]), dtype=torch.float32, device=device)
        self.t = torch.tensor(np.stack([v.t for v in views]), dtype=torch.float32, device=device)
        self.cameras = CameraBatch(self.K, self.R, self.t, w, h, near=0.01, far=1000.0, device=device)
        self.masks_np = np.stack([v.mask for v in views])
        self.masks = torch.tensor(self.masks_np, dtype=torch.float32, device=device)
        self._scaled: dict[float, ScaledMasks] = {}
        self.faces = model.faces_tensor.to(device)
        self.prior = PosePrior().to(device)
        n_verts = model.smplx.v_template.shape[0]
        self.coarse = SubsetPoser(model, np.arange(0, n_verts, COARSE_STRIDE))
        self.full = SubsetPoser(model, np.arange(n_verts))
        kp_views = [v.keypoints is not None for v in views]
        self.has_keypoints = any(kp_views)
        if self.has_keypoints:
            assert config.layout is not None
            self.kp_index = torch.as_tensor(layout_index(config.layout), device=device)
            n = len(self.kp_index)
            kp = np.stack([v.keypoints if v.keypoints is not None else np.zeros((n, 3)) for v in views])
            self.keypoints = torch.tensor(kp, dtype=torch.float32, device=device)
        self.image_side = max(h, w)

    def masks_at(self, scale: float) -> ScaledMasks:
        if scale not in self._scaled:
            self._scaled[scale] = scaled_masks(list(self.masks_np), scale, self.device)
        return self._scaled[scale]

    def pose(self, p: dict[str, torch.Tensor]) -> Any:
        params = BodyParams.from_arrays(dict(p), n_frames=1, num_betas=self.model.num_betas,
                                        num_expression=self.model.num_expression, device=self.device)
        params.betas = p["betas"]  # keep autograd (from_arrays copies into a fresh vector)
        return self.model(params)

    def keypoints_3d(self, out: Any) -> torch.Tensor:
        return torch.cat([out.joints, out.extra_joints, out.landmarks], dim=1)[0]

    def loss(self, p: dict[str, torch.Tensor], stage: Stage) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        poser = self.full if stage.raster or stage.scale >= 1.0 else self.coarse
        verts, _, keypoints = poser(p["global_orient"], p["body_pose"], p["betas"], p["transl"])
        pixels = project(verts, self.K, self.R, self.t)
        inside, cover = point_terms(pixels, self.masks_at(stage.scale))
        terms = {"inside": c.inside_weight * inside, "cover": c.cover_weight * cover}
        if self.has_keypoints:
            kp = project(keypoints[self.kp_index], self.K, self.R, self.t)
            sigma = stage.keypoint_sigma * self.image_side
            terms["keypoints"] = c.keypoint_weight * keypoint_term(kp, self.keypoints, sigma)
        if stage.raster:
            terms["raster"] = c.raster_weight * raster_term(verts, self.faces, self.cameras, self.masks)
        terms["pose_prior"] = stage.pose_weight * self.prior.gaussian(p["body_pose"])
        terms["limits"] = c.limit_weight * self.prior.limits(p["body_pose"])
        terms["shape_prior"] = c.shape_weight * shape_prior(p["betas"])
        total = torch.stack(list(terms.values())).sum()
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def run_stage(self, p: dict[str, torch.Tensor], stage: Stage,
                  tick: Callable[[], None]) -> dict[str, float]:
        for name, value in p.items():
            value.requires_grad_(name in stage.free)
        lrs = {"transl": stage.lr * 0.5, "betas": stage.lr * 3.0}
        opt = torch.optim.Adam([{"params": [p[n]], "lr": lrs.get(n, stage.lr)} for n in stage.free])
        terms: dict[str, float] = {}
        for _ in range(stage.iterations):
            opt.zero_grad(set_to_none=True)
            total, terms = self.loss(p, stage)
            total.backward()
            opt.step()
            with torch.no_grad():
                p["betas"].clamp_(-self.config.max_abs_beta, self.config.max_abs_beta)
            tick()
        with torch.no_grad():
            total, terms = self.loss(p, stage)
        return {"total": float(total), **terms}


def _a_pose(degrees: float) -> np.ndarray:
    pose = np.zeros(63)
    a = math.radians(degrees)
    pose[(JOINT_INDEX["left_shoulder"] - 1) * 3 + 2] = -a
    pose[(JOINT_INDEX["right_shoulder"] - 1) * 3 + 2] = a
    return pose


def _initial_params(problem: _Problem, views: list[FitView],
                    yaw: float) -> tuple[dict[str, torch.Tensor], dict]:
    """A-pose at the triangulated place and height, facing ``yaw`` (or the keypoints' facing)."""
    model, dev = problem.model, problem.device
    anchors = mask_anchor_points(views)
    p = {
        "global_orient": torch.tensor([[0.0, yaw, 0.0]], device=dev),
        "transl": torch.zeros(1, 3, device=dev),
        "body_pose": torch.tensor(_a_pose(problem.config.init_arms_degrees)[None], dtype=torch.float32,
                                  device=dev),
        "betas": torch.zeros(model.num_betas, device=dev),
    }
    # Height -> betas: the least-norm betas change giving the measured height (the model's own
    # height gradient, so it holds for the stand-in and a licensed SMPL-X alike).
    height = float(anchors["top"][1] - anchors["bottom"][1])
    betas = p["betas"].clone().requires_grad_(True)
    out = problem.pose({**p, "betas": betas})
    model_height = out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min()
    (grad,) = torch.autograd.grad(model_height, betas)
    grad = grad.detach()
    if float(grad.norm()) > 1e-6:
        step = (height - float(model_height.detach())) * grad / grad.norm() ** 2
        p["betas"] = step.clamp(-3.0, 3.0).detach()
    with torch.no_grad():
        out = problem.pose(p)
        v = out.vertices[0].cpu().numpy()
        centre = (v.min(0) + v.max(0)) / 2
        shift = np.array([anchors["centre"][0] - centre[0], anchors["bottom"][1] - v[:, 1].min(),
                          anchors["centre"][2] - centre[2]])
        p["transl"] = torch.tensor(shift[None], dtype=torch.float32, device=dev)
        info: dict[str, Any] = {"height_m": height, "yaw_deg": math.degrees(yaw)}
        if problem.has_keypoints:
            info.update(_orient_from_keypoints(problem, views, p))
    return p, info


def _orient_from_keypoints(problem: _Problem, views: list[FitView], p: dict[str, torch.Tensor]) -> dict:
    """Root rotation and translation from the triangulated torso keypoints (Kabsch), in place."""
    from .keypoints import LAYOUTS

    names = LAYOUTS[problem.config.layout or ""]
    points, ok = triangulate_keypoints(views)
    use = [i for i, n in enumerate(names) if n in TORSO_KEYPOINTS and ok[i]]
    if len(use) < 3:
        return {"keypoint_orient": False}
    zero = {**p, "global_orient": torch.zeros_like(p["global_orient"]),
            "transl": torch.zeros_like(p["transl"])}
    out = problem.pose(zero)
    model_kp = problem.keypoints_3d(out)[problem.kp_index].cpu().numpy()
    rot, shift = kabsch(model_kp[use], points[use])
    root = out.joints[0, 0].cpu().numpy()
    p["global_orient"] = torch.tensor(Rotation.from_matrix(rot).as_rotvec()[None], dtype=torch.float32,
                                      device=problem.device)
    p["transl"] = torch.tensor((shift - root + rot @ root)[None], dtype=torch.float32, device=problem.device)
    return {"keypoint_orient": True, "triangulated_keypoints": int(ok.sum())}


def _search_facing(problem: _Problem, views: list[FitView], config: FitConfig, stages: dict[str, Stage],
                   tick: Callable[[], None], info: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Without keypoints: the facing is the best of ``yaw_hypotheses`` yaws by the initial
    silhouette loss, *and* its opposite (a body's outline from the front and from the back are
    nearly the same); both go through the orient and pose stages, the lower loss goes on."""
    coarse = Stage("probe", (), 0, 0.25, 0.0, 0.0)
    probes = []
    for k in range(max(1, config.yaw_hypotheses)):
        yaw = 2 * math.pi * k / max(1, config.yaw_hypotheses)
        p, _ = _initial_params(problem, views, yaw)
        with torch.no_grad():
            probes.append((float(problem.loss(p, coarse)[0]), yaw))
    yaw = min(probes)[1]
    results = []
    for candidate in (yaw, yaw + math.pi):
        p, cinfo = _initial_params(problem, views, candidate)
        terms: dict[str, float] = {}
        for name in ("orient", "pose"):
            if name in stages:
                terms = problem.run_stage(p, stages[name], tick)
        results.append((terms.get("total", 0.0), p, cinfo))
    best = min(results, key=lambda r: r[0])
    best[2]["facing_losses"] = [r[0] for r in results]
    return best[1], best[2]


# Left/right swaps tried after the pose stage: each pair's whole rotations exchanged, mirrored
# (a rotation (x, y, z) of a left joint is (x, -y, -z) on the right). Starting from straight
# limbs, the optimiser may send the left leg where the right one is, or raise the wrong arm (local
# minima most views agree with).
LIMB_FLIPS: dict[str, tuple[tuple[str, str], ...]] = {
    "legs": (("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle")),
    "arms": (("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
             ("left_wrist", "right_wrist")),
}
FLIP_ITERATIONS = 20
MIRROR = torch.tensor([1.0, -1.0, -1.0])


def _flip_limbs(problem: _Problem, p: dict[str, torch.Tensor], stage: Stage,
                tick: Callable[[], None]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Try each swap of :data:`LIMB_FLIPS` (and no swap) for a few pose iterations; keep the best."""
    short = Stage(stage.name, stage.free, FLIP_ITERATIONS, stage.scale, stage.lr, stage.pose_weight,
                  keypoint_sigma=stage.keypoint_sigma)
    flipped: list[str] = []
    for name, pairs in LIMB_FLIPS.items():
        keep = {k: v.detach().clone() for k, v in p.items()}
        swap = {k: v.detach().clone() for k, v in p.items()}
        pose = swap["body_pose"].reshape(21, 3)
        mirror = MIRROR.to(pose)
        for left, right in pairs:
            a, b = JOINT_INDEX[left] - 1, JOINT_INDEX[right] - 1
            pose[[a, b]] = pose[[b, a]].clone() * mirror
        loss_keep = problem.run_stage(keep, short, tick)["total"]
        loss_swap = problem.run_stage(swap, short, tick)["total"]
        if loss_swap < loss_keep:
            flipped.append(name)
        p = swap if loss_swap < loss_keep else keep
    return p, flipped




def fit_body(views: Sequence[FitView], config: FitConfig | None = None,
             progress: ProgressFn | None = None, model: BodyModel | None = None) -> FitResult:
    """Fit SMPL-X to ``views`` (masks, optional keypoints in ``config.layout``); see the module doc."""
    config = config or FitConfig()
    checked = check_views(views, config.layout)
    device = pick_device(config.device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and config.cpu_threads > 0:
        threads = config.cpu_threads
    with torch_threads(threads):
        return _fit(checked, config, device, progress, model)


def _fit(checked: list[FitView], config: FitConfig, device: torch.device, progress: ProgressFn | None,
         model: BodyModel | None) -> FitResult:
    model = model or load_body_model(config.gender)
    if next(model.buffers()).device != device:  # a copy: the per-process cached model stays put
        model = copy.deepcopy(model).to(device)
    problem = _Problem(checked, model, config, device)
    start = time.perf_counter()
    total_iters = sum(s.iterations for s in config.stages)
    search = sum(s.iterations for s in config.stages if s.name in ("orient", "pose"))
    total_iters += 2 * FLIP_ITERATIONS * len(LIMB_FLIPS) + search  # an upper bound (no keypoints)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None and done[0] % 10 == 0:
            progress(min(done[0] / max(total_iters, 1), 1.0), f"fitting the body: iteration {done[0]}")

    timings: dict[str, float] = {}
    stage_terms: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    p, info = _initial_params(problem, checked, 0.0)
    by_stage = {s.name: s for s in config.stages}
    # Keypoints that gave the facing (enough torso points triangulated) also say which limb is
    # which; otherwise (no keypoints, or too few detected) the silhouettes decide both.
    guided = bool(info.get("keypoint_orient"))
    if not guided:
        p, info = _search_facing(problem, checked, config, by_stage, tick, info)
    else:
        for name in ("orient", "pose"):
            if name in by_stage:
                stage_terms[name] = problem.run_stage(p, by_stage[name], tick)
    if "pose" in by_stage and not guided:
        p, flips = _flip_limbs(problem, p, by_stage["pose"], tick)
        info["flips"] = flips
    timings["search"] = time.perf_counter() - t0
    for stage in config.stages:
        if stage.name in ("orient", "pose"):
            continue
        t0 = time.perf_counter()
        stage_terms[stage.name] = problem.run_stage(p, stage, tick)
        timings[stage.name] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    with torch.no_grad():
        out = problem.pose(p)
        verts = out.vertices[0]
        iou = silhouette_iou(verts, problem.faces, problem.cameras, problem.masks_np)
        diagnostics: dict[str, Any] = {
            "views": [v.name for v in checked],
            "iou": iou,
            "mean_iou": float(np.mean(iou)),
            "stages": stage_terms,
            "device": str(device),
            "body_standin": bool(model.is_standin),
            **info,
        }
        if problem.has_keypoints:
            kp = project(problem.keypoints_3d(out)[problem.kp_index], problem.K, problem.R, problem.t)
            err = reprojection_errors(kp.cpu().numpy(), problem.keypoints.cpu().numpy())
            diagnostics["keypoint_error_px"] = err
            seen = [e for e in err if e is not None]
            diagnostics["mean_keypoint_error_px"] = float(np.mean(seen)) if seen else None
    params = payload(p, config.gender, model.num_expression)
    fitted = [x for key in ("betas", "global_orient", "body_pose", "transl") for x in params[key]]
    if not all(map(math.isfinite, fitted)):  # a ValueError, so commands report it as bad input
        raise FitInputError("the body fit diverged (non-finite parameters); check the cameras and masks")
    return FitResult(params, strict_json(diagnostics), verts.cpu().numpy().astype(np.float64),
                     out.joints[0].cpu().numpy().astype(np.float64), timings)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None: results travel as strict JSON."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def payload(p: dict[str, torch.Tensor], gender: str, num_expression: int = 10) -> dict[str, Any]:
    """The protocol's SMPL-X parameters for one frame (docs/protocol.md), as JSON-ready lists."""
    def flat(name: str) -> list[float]:
        return [float(x) for x in p[name].detach().cpu().reshape(-1)]

    return {
        "gender": gender,
        "betas": flat("betas"),
        "expression": [0.0] * num_expression,
        "global_orient": flat("global_orient"),
        "body_pose": flat("body_pose"),
        "left_hand_pose": [0.0] * 45,
        "right_hand_pose": [0.0] * 45,
        "jaw_pose": [0.0] * 3,
        "leye_pose": [0.0] * 3,
        "reye_pose": [0.0] * 3,
        "transl": flat("transl"),
    }
