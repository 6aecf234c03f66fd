"""Quality metrics: symmetric Chamfer distance, normal consistency, PSNR and SSIM.

Chamfer and normal consistency are computed on area-uniform surface samples of the two meshes,
matching each sample to the nearest *sample* of the other surface (standard practice, e.g. the
occupancy-networks evaluation). ``ground_truth_keep`` lets a caller drop GT samples hidden inside
other closed parts (a body under a skirt), which no method could ever see.
"""

from __future__ import annotations

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


def ssim(pred: np.ndarray, target: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) over (H,W[,C]) in [0,1]."""
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
        vals.append(s.mean())
    return float(np.mean(vals))
