"""Quality metrics: symmetric Chamfer distance, normal consistency, PSNR and SSIM.

Chamfer and normal consistency are computed on area-uniform surface samples of the two meshes,
matching each sample to the nearest *sample* of the other surface (standard practice, e.g. the
occupancy-networks evaluation). ``ground_truth_keep`` lets a caller drop GT samples hidden inside
other closed parts (a body under a skirt), which no method could ever see.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from backend.mesh import sampling
from backend.mesh.normals import face_normals


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points (count,3) on a triangle mesh and the face normals there (count,3)."""
    pts, face = sampling.sample_surface(vertices, faces, count, np.random.default_rng(seed))
    return pts, face_normals(vertices, np.asarray(faces)[face])


@dataclass
class GeometryScores:
    chamfer: float  # mean of the two directed mean distances, metres
    chamfer_pred_to_gt: float
    chamfer_gt_to_pred: float
    normal_consistency: float  # mean |cos| between matched normals, both directions averaged


def geometry_scores(
    pred_v: np.ndarray,
    pred_f: np.ndarray,
    gt_v: np.ndarray,
    gt_f: np.ndarray,
    samples: int = 100_000,
    ground_truth_keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> GeometryScores:
    p, pn = sample_surface(pred_v, pred_f, samples, seed=1)
    g, gn = sample_surface(gt_v, gt_f, samples * 2 if ground_truth_keep else samples, seed=2)
    if ground_truth_keep is not None:
        keep = ground_truth_keep(g)
        g, gn = g[keep][:samples], gn[keep][:samples]
    d_pg, i_pg = cKDTree(g).query(p)
    d_gp, i_gp = cKDTree(p).query(g)
    nc_p = np.abs((pn * gn[i_pg]).sum(1)).mean()
    nc_g = np.abs((gn * pn[i_gp]).sum(1)).mean()
    return GeometryScores(
        chamfer=float((d_pg.mean() + d_gp.mean()) / 2),
        chamfer_pred_to_gt=float(d_pg.mean()),
        chamfer_gt_to_pred=float(d_gp.mean()),
        normal_consistency=float((nc_p + nc_g) / 2),
    )


def psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB for images in [0,1]; over the masked pixels when a mask is given."""
    err = (np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2
    if mask is not None:
        err = err[np.asarray(mask, bool)]
    mse = float(err.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(pred: np.ndarray, target: np.ndarray, sigma: float = 1.5, mask: np.ndarray | None = None) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) over (H,W[,C]) in [0,1];
    with ``mask`` (H,W) the SSIM map is averaged over the masked pixels only."""
    x = np.asarray(pred, np.float64)
    y = np.asarray(target, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for c in range(x.shape[-1]):
        a, b = x[..., c], y[..., c]
        f = lambda z: gaussian_filter(z, sigma, truncate=3.5)  # noqa: E731 - 11x11 window as in the paper
        mu_a, mu_b = f(a), f(b)
        va = f(a * a) - mu_a**2
        vb = f(b * b) - mu_b**2
        cov = f(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
        vals.append(s.mean() if mask is None else s[np.asarray(mask, bool)].mean())
    return float(np.mean(vals))


@dataclass
class HandThickness:
    ratio: float  # predicted / ground-truth thickness, mean over the two hands
    per_hand: dict[str, tuple[float, float]]  # name -> (predicted, ground truth) thickness, metres


def hand_thickness(
    pred_v: np.ndarray,
    pred_f: np.ndarray,
    gt_v: np.ndarray,
    gt_f: np.ndarray,
    hands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    samples: int = 200_000,
    reach: float = 0.03,
) -> HandThickness:
    """Thickness of each hand (palm to back) of a predicted mesh against the ground truth's.

    ``hands`` maps a name to ``(wrist, tip, palm_normal)`` in world coordinates: the hand region is
    the part of a surface past the wrist along wrist->tip (up to 1.2x that length) and within
    ``reach`` of that axis' GT hand surface; thickness is the 5-95 % range of the region's
    surface samples along the palm normal. A mitten-like blob thicker than the hand shows a ratio
    above 1; the skirt or thigh next to a hand is kept out by ``reach`` (distance to the GT hand).
    """
    ps, _ = sample_surface(pred_v, pred_f, samples, seed=3)
    gs, _ = sample_surface(gt_v, gt_f, samples, seed=4)
    per: dict[str, tuple[float, float]] = {}
    for name, (wrist, tip, normal) in hands.items():
        axis = tip - wrist
        length = float(np.linalg.norm(axis))
        axis = axis / length
        n = normal - axis * float(normal @ axis)
        n = n / np.linalg.norm(n)

        g = gs[_hand_region(gs, wrist, axis, length)]
        p = ps[_hand_region(ps, wrist, axis, length)]
        p = p[cKDTree(g).query(p)[0] < reach] if len(g) and len(p) else p
        if len(g) < 20 or len(p) < 20:
            continue
        per[name] = (_slice_thickness(p, wrist, axis, n, length), _slice_thickness(g, wrist, axis, n, length))
    ratios = [a / b for a, b in per.values() if np.isfinite(a) and np.isfinite(b) and b > 0]
    return HandThickness(ratio=float(np.mean(ratios)) if ratios else float("nan"), per_hand=per)


def _hand_region(p: np.ndarray, wrist: np.ndarray, axis: np.ndarray, length: float) -> np.ndarray:
    t = (p - wrist) @ axis
    radial = np.linalg.norm((p - wrist) - np.outer(t, axis), axis=1)
    return (t > 0.15 * length) & (t < 1.2 * length) & (radial < 0.6 * length)


def _slice_thickness(
    x: np.ndarray, wrist: np.ndarray, axis: np.ndarray, n: np.ndarray, length: float
) -> float:
    """Median over slices along the hand of the 5-95 % extent along ``n`` (a taper is not thickness)."""
    t = (x - wrist) @ axis
    h = (x - wrist) @ n
    vals = []
    for lo, hi in itertools.pairwise(np.linspace(0.15 * length, 1.2 * length, 8)):
        s = h[(t >= lo) & (t < hi)]
        if len(s) >= 10:
            vals.append(np.percentile(s, 95) - np.percentile(s, 5))
    return float(np.median(vals)) if vals else float("nan")


def body_hands(body: object) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``hands`` for :func:`hand_thickness` from a ``BodyMesh``: wrist, middle-finger tip (the hand
    part's vertex farthest from the wrist) and the palm normal (smallest principal axis)."""
    out = {}
    ji = {n: i for i, n in enumerate(body.joint_names)}  # type: ignore[attr-defined]
    for side, part in (("left", "hand_l"), ("right", "hand_r")):
        if part not in body.part_names or f"{side}_wrist" not in ji:  # type: ignore[attr-defined]
            continue
        wrist = body.joints[ji[f"{side}_wrist"]]  # type: ignore[attr-defined]
        pts = body.vertices[body.part_labels == body.part_names.index(part)]  # type: ignore[attr-defined]
        tip = pts[np.argmax(np.linalg.norm(pts - wrist, axis=1))]
        centred = pts - pts.mean(0)
        normal = np.linalg.svd(centred, full_matrices=False)[2][2]
        out[side] = (np.asarray(wrist, float), np.asarray(tip, float), normal)
    return out
