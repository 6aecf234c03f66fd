"""A body fitted to one photo: the single-view problem of ``avatar.from_image``.

One view has no triangulation, so this module brings its own camera and starting point and then
runs the multi-view fit's problem (``fit._Problem``: the same silhouette, keypoint, prior and
joint-limit terms, the same stages) on that single view:

- **Camera** (assumed, not estimated): a pinhole at the world origin looking down -z with +y up
  (``R = diag(1, -1, -1)``, ``t = 0``), square pixels, the principal point at the image centre and
  a focal length from a vertical field of view (``PhotoFitConfig.fov_y_deg``, default 40 degrees:
  the generated views' cameras). The person faces the camera at yaw 0 (SMPL-X faces +z).
- **Photo**: squared first (:func:`square_photo`: padded to a square with its border colour,
  resized), so the anchor view the generator keeps and the fitted view are the same image.
- **Silhouette**: the photo's alpha when it has one, else :func:`photo_mask` (the person is what
  differs from the border's median colour: photos on a plain background).
- **Keypoints** (optional): COCO-17 rows from a keypoints JSON or from the ``pose-estimator`` role
  (:func:`detect_keypoints`; estimator output is kept only where it agrees with the silhouette,
  :func:`plausible_keypoints`).
- **Start**: an A-pose with zero betas, its height filling the mask's height: the depth is
  ``f * model height / mask height``, the body's centre on the ray through the mask's box centre.
  The facing: yaws probed by the initial loss (all around with keypoints, within +-60 degrees of
  facing the camera without: a silhouette from the back is the one from the front), the two best
  run the orient and pose stages and the lower loss goes on.

Monocular depth is ambiguous: a taller person farther away casts the same silhouette, and the
shape prior settles it towards the mean body. So accuracy is measured as 2D reprojection error and
the 3D joint error after aligning the root (docs/fitting.md, "One photo").
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from backend.body.loading import load_body_model
from backend.body.model import BodyModel
from backend.render.threads import torch_threads

from .fit import (
    DEFAULT_STAGES,
    FitConfig,
    FitResult,
    ProgressFn,
    Stage,
    _a_pose,
    _Problem,
    payload,
    pick_device,
    strict_json,
)
from .inputs import FitInputError, FitView, check_views
from .keypoints import reprojection_errors
from .silhouette import project, silhouette_iou

PHOTO_R = np.diag([1.0, -1.0, -1.0])  # world -> camera: looking down -z, +y up in the image
DEFAULT_FOV_Y_DEG = 40.0  # the generated views' cameras (backend/generate/conditions.framed_ring)
MASK_THRESHOLD = 0.12  # RGB distance from the background colour (as backend/generate/masks.py)
MIN_KEYPOINT_CONF = 0.3
MIN_PLAUSIBLE = 6  # estimator keypoints inside the silhouette needed to use any of them


@dataclass
class PhotoFitConfig:
    fov_y_deg: float = DEFAULT_FOV_Y_DEG
    fit_size: int = 192  # side of the square image the fit works on (the photo is resized to it)
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    yaw_step_deg: float = 30.0  # the facings probed
    front_only_deg: float = 60.0  # without keypoints the probes stay within this of facing the camera
    candidates: int = 2  # probed facings that run the orient and pose stages
    fit: FitConfig = field(default_factory=FitConfig)  # gender, weights, device, threads


@dataclass
class SquarePhoto:
    """A photo padded to a square and resized: its pixels, alpha (or None) and the mapping
    ``square = original * scale + offset`` (pixel coordinates, OpenCV convention)."""

    rgb: np.ndarray  # (S,S,3) uint8
    alpha: np.ndarray | None  # (S,S) float32 in [0, 1]
    scale: float
    offset: np.ndarray  # (2,) x, y

    def map_keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        out = np.array(keypoints, dtype=np.float64, copy=True)
        out[:, :2] = out[:, :2] * self.scale + self.offset
        return out


def photo_camera(size: int, fov_y_deg: float = DEFAULT_FOV_Y_DEG) -> tuple[np.ndarray, ...]:
    """K, R, t of the assumed photo camera for a square image of ``size`` pixels."""
    if not 1.0 <= fov_y_deg <= 170.0:
        raise FitInputError(f"the photo's field of view must be in [1, 170] degrees, got {fov_y_deg}")
    f = size / 2.0 / math.tan(math.radians(fov_y_deg) / 2.0)
    K = np.array([[f, 0.0, size / 2.0], [0.0, f, size / 2.0], [0.0, 0.0, 1.0]])
    return K, PHOTO_R.copy(), np.zeros(3)


def border_colour(rgb: np.ndarray) -> np.ndarray:
    """(3,) median colour of the image's outermost pixels (float in [0, 1])."""
    img = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return np.median(border[:, :3], axis=0)


def square_photo(image: np.ndarray, size: int) -> SquarePhoto:
    """``image`` ((H,W,3) or (H,W,4) uint8) centred on a square of its border colour, resized to
    ``size``; an alpha channel (RGBA input with transparency) composited over white and padded with 0."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 8:
        raise FitInputError(f"the photo must be an RGB(A) image of at least 8x8 pixels, got {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    has_alpha = img.shape[2] == 4 and bool((img[..., 3] < 255).any())
    if has_alpha:  # composited over white: the background the generated views are asked for
        a = img[..., 3:4].astype(np.float32) / 255.0
        over = np.round(img[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)
        img = np.concatenate([over, img[..., 3:]], -1)
    h, w = img.shape[:2]
    # Resized first, then padded: a hostile 100000 x 10 photo never becomes a 100000^2 canvas.
    scale = size / max(h, w)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    ox, oy = (size - nw) // 2, (size - nh) // 2
    bg = np.round(border_colour(img[..., :3]) * 255).astype(np.uint8)
    rgb = np.empty((size, size, 3), np.uint8)
    rgb[:] = bg
    resized = img[..., :3] if (nw, nh) == (w, h) else \
        np.asarray(Image.fromarray(img[..., :3]).resize((nw, nh), Image.Resampling.LANCZOS))
    rgb[oy:oy + nh, ox:ox + nw] = resized
    alpha = None
    if has_alpha:
        a = Image.fromarray((img[..., 3] / 255.0).astype(np.float32), "F")
        alpha = np.zeros((size, size), np.float32)
        small = np.asarray(a.resize((nw, nh), Image.Resampling.BILINEAR))
        alpha[oy:oy + nh, ox:ox + nw] = np.clip(small, 0.0, 1.0)
    return SquarePhoto(rgb, alpha, scale, np.array([float(ox), float(oy)]))


def photo_mask(rgb: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """(H,W) bool person mask of a photo on a plain background: pixels whose colour differs from
    the border's median by more than ``threshold``, holes filled, the largest component kept."""
    img = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    differs = np.linalg.norm(img[..., :3] - border_colour(img), axis=-1) > threshold
    labels, count = ndimage.label(ndimage.binary_fill_holes(differs))
    if count == 0:
        raise FitInputError("no person found in the photo: nothing differs from its border colour "
                            "(give a photo on a plain background, with an alpha channel, or a mask)")
    sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def mask_box(mask: np.ndarray, pad: float = 0.1) -> list[float]:
    """COCO box (x, y, w, h) around the mask, grown by ``pad`` of its size each side."""
    ys, xs = np.nonzero(mask > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    dx, dy = pad * (x1 - x0), pad * (y1 - y0)
    x0, y0 = max(0.0, x0 - dx), max(0.0, y0 - dy)
    x1, y1 = min(mask.shape[1], x1 + dx), min(mask.shape[0], y1 + dy)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def detect_keypoints(estimator: Any, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(17,3) COCO-17 x, y, score of the person in ``mask`` by a ViTPose estimator (anything with
    ``processor``, ``model``, ``device``: ``backend.models.load.load_pose_estimator``'s result)."""
    from PIL import Image

    box = [[mask_box(mask)]]
    inputs = estimator.processor(Image.fromarray(rgb[..., :3]), boxes=box, return_tensors="pt")
    dtype = next(estimator.model.parameters()).dtype
    inputs = {k: v.to(estimator.device, dtype=dtype if v.is_floating_point() else v.dtype)
              for k, v in inputs.items()}
    with torch.no_grad():
        out = estimator.model(**inputs)
    out.heatmaps = out.heatmaps.float().cpu()
    person = estimator.processor.post_process_pose_estimation(out, boxes=box)[0][0]
    xy = np.asarray(person["keypoints"], dtype=np.float64).reshape(17, 2)
    # The processor's coordinates are pixel indices; ours put pixel (0, 0)'s centre at (0.5, 0.5).
    scores = np.clip(np.asarray(person["scores"], dtype=np.float64).reshape(17), 0.0, 1.0)
    return np.concatenate([xy + 0.5, scores[:, None]], axis=1)


def plausible_keypoints(keypoints: np.ndarray, mask: np.ndarray, min_conf: float = MIN_KEYPOINT_CONF,
                        min_count: int = MIN_PLAUSIBLE) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Estimator keypoints that a fit may trust: confidence >= ``min_conf`` and inside the mask
    grown by 5 % of its height (a detector can miss the person: its keypoints then scatter);
    None when fewer than ``min_count`` are left (the silhouette alone is then fitted)."""
    m = mask > 0.5
    height = int(np.ptp(np.nonzero(m.any(axis=1))[0])) + 1
    grown = ndimage.binary_dilation(m, iterations=max(1, round(0.05 * height)))
    out = np.array(keypoints, dtype=np.float64, copy=True)
    xs = np.clip(np.floor(out[:, 0]).astype(int), 0, m.shape[1] - 1)
    ys = np.clip(np.floor(out[:, 1]).astype(int), 0, m.shape[0] - 1)
    inside = grown[ys, xs] & (out[:, 0] >= 0) & (out[:, 1] >= 0) & (out[:, 0] < m.shape[1]) & \
        (out[:, 1] < m.shape[0])
    keep = (out[:, 2] >= min_conf) & inside
    out[~keep, 2] = 0.0
    info = {"detected": int((keypoints[:, 2] >= min_conf).sum()), "kept": int(keep.sum())}
    if keep.sum() < min_count:
        return None, {**info, "used": False}
    return out, {**info, "used": True}


def fit_photo(mask: np.ndarray, keypoints: np.ndarray | None = None, layout: str | None = None,
              config: PhotoFitConfig | None = None, progress: ProgressFn | None = None,
              model: BodyModel | None = None) -> FitResult:
    """SMPL-X fitted to one square photo's ``mask`` ((S,S) in [0, 1]) and optional ``keypoints`` in
    ``layout`` (pixels of the same square), seen by :func:`photo_camera`; see the module doc.

    The result's diagnostics carry the camera (``camera``: K, R, t at the mask's size).
    """
    config = config or PhotoFitConfig()
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise FitInputError(f"the photo's mask must be square (see square_photo), got {mask.shape}")
    K, R, t = photo_camera(mask.shape[0], config.fov_y_deg)
    fit_config = copy.copy(config.fit)
    fit_config.layout = layout if keypoints is not None else None
    fit_config.stages = config.stages
    view = FitView(K, R, t, mask, keypoints, "photo")
    checked = check_views([view], fit_config.layout, min_views=1)
    device = pick_device(fit_config.device)
    threads = fit_config.cpu_threads if device.type == "cpu" and fit_config.cpu_threads > 0 \
        else torch.get_num_threads()
    with torch_threads(threads):
        result = _fit_photo(checked, config, fit_config, device, progress, model)
    result.diagnostics["camera"] = {"K": K.tolist(), "R": R.tolist(), "t": t.tolist(),
                                    "fov_y_deg": config.fov_y_deg, "size": int(mask.shape[0])}
    return result


def _start(problem: _Problem, view: FitView, yaw: float) -> dict[str, torch.Tensor]:
    """A-pose, zero betas, facing ``yaw``, filling the mask's height at the depth that makes it so."""
    dev = problem.device
    p = {
        "global_orient": torch.tensor([[0.0, yaw, 0.0]], device=dev),
        "transl": torch.zeros(1, 3, device=dev),
        "body_pose": torch.tensor(_a_pose(problem.config.init_arms_degrees)[None], dtype=torch.float32,
                                  device=dev),
        "betas": torch.zeros(problem.model.num_betas, device=dev),
    }
    with torch.no_grad():
        v = problem.pose(p).vertices[0].cpu().numpy()
    ys, xs = np.nonzero(view.mask > 0.5)
    top, bottom = ys.min(), ys.max() + 1.0
    cx, cy = (xs.min() + xs.max() + 1.0) / 2, (top + bottom) / 2
    fx, fy = view.K[0, 0], view.K[1, 1]
    depth = fy * float(v[:, 1].max() - v[:, 1].min()) / max(bottom - top, 1.0)
    centre_cam = np.array([(cx - view.K[0, 2]) * depth / fx, (cy - view.K[1, 2]) * depth / fy, depth])
    centre_world = view.R.T @ (centre_cam - view.t)
    shift = centre_world - (v.min(0) + v.max(0)) / 2
    p["transl"] = torch.tensor(shift[None], dtype=torch.float32, device=dev)
    return p


def _probe_yaws(config: PhotoFitConfig, keypoints: bool) -> list[float]:
    step = max(config.yaw_step_deg, 1.0)
    if keypoints:  # the keypoints tell the front from the back: all around
        degrees = np.arange(-180.0, 180.0, step)
    else:
        limit = config.front_only_deg
        degrees = np.arange(-math.floor(limit / step) * step, limit + 1e-9, step)
    return [math.radians(d) for d in degrees]


def _fit_photo(views: list[FitView], config: PhotoFitConfig, fit_config: FitConfig, device: torch.device,
               progress: ProgressFn | None, model: BodyModel | None) -> FitResult:
    model = model or load_body_model(fit_config.gender)
    if next(model.buffers()).device != device:
        model = copy.deepcopy(model).to(device)
    problem = _Problem(views, model, fit_config, device)
    by_stage = {s.name: s for s in fit_config.stages}
    early = [by_stage[n] for n in ("orient", "pose") if n in by_stage]
    late = [s for s in fit_config.stages if s.name not in ("orient", "pose")]
    n_candidates = max(1, config.candidates)
    total_iters = n_candidates * sum(s.iterations for s in early) + sum(s.iterations for s in late)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None and done[0] % 10 == 0:
            progress(min(done[0] / max(total_iters, 1), 1.0),
                     f"fitting the body to the photo: iteration {done[0]}")

    start = time.perf_counter()
    probe_stage = Stage("probe", (), 0, early[0].scale if early else 0.25, 0.0, 0.0,
                        keypoint_sigma=early[0].keypoint_sigma if early else 0.5)
    probes = []
    for yaw in _probe_yaws(config, problem.has_keypoints):
        p = _start(problem, views[0], yaw)
        with torch.no_grad():
            probes.append((float(problem.loss(p, probe_stage)[0]), yaw))
    probes.sort()
    results = []
    for _, yaw in probes[:n_candidates]:
        p = _start(problem, views[0], yaw)
        terms: dict[str, float] = {"total": 0.0}
        for stage in early:
            terms = problem.run_stage(p, stage, tick)
        results.append((terms["total"], yaw, p))
    _, yaw, p = min(results, key=lambda r: r[0])
    timings = {"search": time.perf_counter() - start}
    stage_terms: dict[str, dict[str, float]] = {}
    for stage in late:
        t0 = time.perf_counter()
        stage_terms[stage.name] = problem.run_stage(p, stage, tick)
        timings[stage.name] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    with torch.no_grad():
        out = problem.pose(p)
        verts = out.vertices[0]
        iou = silhouette_iou(verts, problem.faces, problem.cameras, problem.masks_np)
        diagnostics: dict[str, Any] = {
            "views": ["photo"], "iou": iou, "mean_iou": float(np.mean(iou)), "stages": stage_terms,
            "device": str(device), "body_standin": bool(model.is_standin),
            "yaw_deg": math.degrees(yaw),
            "facing_probes": [[round(math.degrees(y), 1), round(loss, 3)] for loss, y in probes],
            "facing_losses": [r[0] for r in results],
        }
        if problem.has_keypoints:
            kp = project(problem.keypoints_3d(out)[problem.kp_index], problem.K, problem.R, problem.t)
            err = reprojection_errors(kp.cpu().numpy(), problem.keypoints.cpu().numpy())
            diagnostics["keypoint_error_px"] = err
            diagnostics["mean_keypoint_error_px"] = err[0]
    params = payload(p, fit_config.gender, model.num_expression)
    fitted = [x for key in ("betas", "global_orient", "body_pose", "transl") for x in params[key]]
    if not all(map(math.isfinite, fitted)):
        raise FitInputError("the body fit to the photo diverged (non-finite parameters)")
    return FitResult(params, strict_json(diagnostics), verts.cpu().numpy().astype(np.float64),
                     out.joints[0].cpu().numpy().astype(np.float64), timings)


def root_aligned_error(joints: np.ndarray, truth: np.ndarray, root: int = 0) -> np.ndarray:
    """Per-joint distance after moving the fitted root (pelvis) onto the true one (metres)."""
    return np.linalg.norm((joints - joints[root]) - (truth - truth[root]), axis=1)


def procrustes_error(joints: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-joint distance after the best similarity transform (rotation, translation, scale)."""
    a, b = joints - joints.mean(0), truth - truth.mean(0)
    U, s, Vt = np.linalg.svd(a.T @ b)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    rot = U @ D @ Vt
    scale = float((s * np.diag(D)).sum() / (a**2).sum())
    return np.linalg.norm(scale * a @ rot - b, axis=1)
