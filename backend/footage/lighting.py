"""Lighting of the inserted character: order-2 spherical-harmonic irradiance, RGB.

Convention (the clips renderer's, :func:`backend.clips.shade._sh_eval`): ``sh`` (9, 3) are the
coefficients of the irradiance itself (already convolved with the cosine lobe), basis order
``1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2`` with the real-SH constants, world axes (Y up); a
surface of albedo ``a`` and world normal ``n`` shows ``a * max(E(n), 0)`` with
``E(n) = sum_k sh_k Y_k(n)``. Colours are display values in [0, 1] (PNG / 255), the same space the
plate is in, so a character lit by ``E`` matches a CG plate rendered the same way.

- ``flat``: ``E = 1`` (the texture as is).
- ``sh``: the given coefficients (e.g. from the scene's lights in Blender).
- ``plate``: fitted to the plate. Each pixel of known geometry is a surface of unknown albedo lit
  by ``E(n)``; with one image the albedo and the light's scale cannot be separated, so the fit
  assumes the scene's average reflectance is photographic middle grey (18 %, 0.46 in display
  values: :data:`ASSUMED_ALBEDO`), as a light meter does. Normals come from the depth (the camera's
  back-projection, central differences; pixels across depth edges are dropped); without depth,
  the pixels whose rays meet the ground plane are taken as ground (normal up) and the rest are
  left out. The fit is least squares over a subsample of a few frames, ridge-regularised towards
  a generic prior shape (a view sees few normal directions: a ground plane only "up"): light from
  above with some bounce from below, ``E(n) ~ 0.75 + 0.25 n_y`` (up 1, sideways 0.75, down 0.5;
  :data:`PRIOR_UP`), i.e. the linear y term is tied to the constant term by that ratio and only
  departures from it are penalised. The shape is fitted to luminance (a coloured object reads as
  a brightness, not as a coloured light) and the light's colour is the median chroma of the
  samples; robust: residuals beyond 3 median absolute deviations (at least 10 % of the signal) are
  dropped twice (textures, specular highlights are outliers of a diffuse model).
"""

from __future__ import annotations

import numpy as np

Y00 = 0.282095
Y1 = 0.488603
Y2A = 1.092548
Y20 = 0.315392
Y22 = 0.546274
ASSUMED_ALBEDO = 0.46
FIT_FRAMES = 5  # frames of the shot the fit looks at (evenly spaced)
FIT_SAMPLES = 40_000  # pixels at most over those frames
RIDGE = 0.05  # weight of the pull of the non-constant terms towards 0, per sample
DEPTH_EDGE = 0.05  # relative depth jump between neighbours that marks an edge (no normal there)
LUMA = np.array([0.2126, 0.7152, 0.0722])
PRIOR_UP = 0.25 / 0.75  # the prior's E = a + b n_y: b / a
PRIOR_RATIO = PRIOR_UP * Y00 / Y1  # its sh[1] / sh[0]


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(..., 9) basis values of unit world normals (..., 3)."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack([np.full_like(x, Y00), Y1 * y, Y1 * z, Y1 * x, Y2A * x * y, Y2A * y * z,
                     Y20 * (3.0 * z * z - 1.0), Y2A * x * z, Y22 * (x * x - y * y)], axis=-1)


def irradiance(sh: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(..., 3) irradiance ``max(E(n), 0)`` at unit world normals (..., 3)."""
    return np.maximum(sh_basis(normals).astype(np.float32) @ np.asarray(sh, np.float32), 0.0)


def flat_sh() -> np.ndarray:
    """E = 1 in every direction, every channel."""
    sh = np.zeros((9, 3), np.float32)
    sh[0] = 1.0 / Y00
    return sh


def pixel_rays(K: np.ndarray, R: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """World directions (..., 3) of the rays through pixel centres (xs + 0.5, ys + 0.5), scaled so
    their camera z is 1 (a depth d along the optical axis is the point C + d * ray)."""
    Kinv = np.linalg.inv(K)
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], -1)
    return (pix @ Kinv.T) @ R  # R^T applied to each camera ray


def normals_from_depth(depth: np.ndarray, K: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World normals (H, W, 3) of a depth map (H, W) and where they are valid (no edge, finite)."""
    H, W = depth.shape
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = pixel_rays(K, R, xs, ys)
    d = np.where(np.isfinite(depth), depth, np.nan).astype(np.float64)
    P = rays * d[..., None]  # world offsets from the camera centre
    dx = np.full_like(P, np.nan)
    dy = np.full_like(P, np.nan)
    dx[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dy[1:-1] = P[2:] - P[:-2]
    n = np.cross(dy, dx)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
        flip = np.sum(n * rays, -1) > 0  # face the camera
        n[flip] *= -1.0
        jump = np.zeros((H, W), bool)
        jump[:, 1:-1] |= np.abs(d[:, 2:] - d[:, :-2]) > DEPTH_EDGE * d[:, 1:-1]
        jump[1:-1] |= np.abs(d[2:] - d[:-2]) > DEPTH_EDGE * d[1:-1]
        valid = np.isfinite(n).all(-1) & ~jump & (norm[..., 0] > 0)
    return np.nan_to_num(n).astype(np.float32), valid


def ground_normals(K: np.ndarray, R: np.ndarray, t: np.ndarray, ground_y: float, H: int,
                   W: int) -> tuple[np.ndarray, np.ndarray]:
    """Without depth: every pixel whose ray meets the ground plane (within 100 m) is ground."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = pixel_rays(K, R, xs, ys)
    C = -R.T @ t
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (ground_y - C[1]) / rays[..., 1]
    valid = np.isfinite(lam) & (lam > 0) & (lam < 100.0)
    n = np.zeros((H, W, 3), np.float32)
    n[..., 1] = 1.0
    return n, valid


def fit_plate_sh(frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray, R: np.ndarray,
                 t: np.ndarray, ground_y: float, rng_seed: int = 0) -> tuple[np.ndarray, dict]:
    """The SH irradiance (9, 3) fitted to the plate (module doc) and a summary of the fit."""
    F, H, W = frames.shape[:3]
    picks = np.unique(np.linspace(0, F - 1, min(F, FIT_FRAMES)).round().astype(int))
    rng = np.random.default_rng(rng_seed)
    basis, colours = [], []
    per_frame = max(FIT_SAMPLES // len(picks), 1)
    for f in picks:
        if depth is not None:
            n, valid = normals_from_depth(depth[f], K[f], R[f])
        else:
            n, valid = ground_normals(K[f], R[f], t[f], ground_y, H, W)
        idx = np.flatnonzero(valid.reshape(-1))
        if len(idx) > per_frame:
            idx = rng.choice(idx, per_frame, replace=False)
        basis.append(sh_basis(n.reshape(-1, 3)[idx].astype(np.float64)))
        colours.append(frames[f].reshape(-1, 3)[idx].astype(np.float64) / 255.0)
    A = np.concatenate(basis) if basis else np.zeros((0, 9))
    b = np.concatenate(colours) / ASSUMED_ALBEDO if colours else np.zeros((0, 3))
    if len(A) < 16:  # nothing of known geometry: the plate's mean level as ambient light
        sh = np.zeros((9, 3), np.float32)
        sh[0] = frames.reshape(-1, 3).mean(0) / 255.0 / ASSUMED_ALBEDO / Y00
        return sh, {"samples": len(A), "kept": 0, "source": "mean"}
    # Tie the y term to the constant one by the prior's ratio; penalise only departures from it.
    A_fit = A.copy()
    A_fit[:, 0] += PRIOR_RATIO * A[:, 1]
    # The light's shape from luminance (a coloured object then reads as its brightness, not as a
    # coloured light); its colour from the median chroma of the samples (most are one surface).
    lum = b @ LUMA
    keep = np.ones(len(A), bool)
    reg = np.full(9, RIDGE)
    reg[0] = 0.0
    x = np.zeros(9)
    for _ in range(3):
        Ak = A_fit[keep]
        x = np.linalg.solve(Ak.T @ Ak + np.diag(reg * len(Ak)), Ak.T @ lum[keep])
        r = A_fit @ x - lum
        centre = np.median(r[keep])
        spread = max(3.0 * 1.4826 * np.median(np.abs(r[keep] - centre)), 0.1 * float(np.median(np.abs(lum))))
        keep = np.abs(r - centre) <= spread
        if keep.sum() < 16:
            keep[:] = True
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        chroma = np.nanmedian(b[keep] / lum[keep, None], axis=0)
    chroma = np.where(np.isfinite(chroma), chroma, 1.0)
    chroma /= max(float(chroma @ LUMA), 1e-6)
    sh = x[:, None] * chroma[None, :]
    sh[1] += PRIOR_RATIO * sh[0]
    return sh.astype(np.float32), {"samples": len(A), "kept": int(keep.sum()),
                                   "source": "depth" if depth is not None else "ground"}


def dominant_direction(sh: np.ndarray, min_elevation_deg: float = 20.0) -> tuple[np.ndarray, float]:
    """The direction towards the light (world unit vector) from the linear band of ``sh``
    (luminance), raised to at least ``min_elevation_deg`` above the horizon (grazing light would
    cast shadows to infinity); straight up when the light has no direction or comes from straight
    above or below. Also the
    directionality: the linear band's strength relative to the constant term (0 = ambient)."""
    sh = np.asarray(sh, np.float64)
    v = np.array([sh[3] @ LUMA, sh[1] @ LUMA, sh[2] @ LUMA]) * Y1
    dc = max(float(sh[0] @ LUMA) * Y00, 1e-9)
    strength = float(np.linalg.norm(v)) / dc
    d = v / max(np.linalg.norm(v), 1e-12)
    if strength < 1e-3 or np.linalg.norm(d[[0, 2]]) < 1e-6:  # no direction, or straight up/down
        return np.array([0.0, 1.0, 0.0]), strength
    lo = np.sin(np.radians(min_elevation_deg))
    if d[1] < lo:  # grazing, or from below the ground (bounce): the horizontal part, raised
        horiz = d[[0, 2]] / max(np.linalg.norm(d[[0, 2]]), 1e-12)
        d = np.array([horiz[0] * np.cos(np.arcsin(lo)), lo, horiz[1] * np.cos(np.arcsin(lo))])
    return d, strength
