"""What the footage roles give per frame, made usable: people masks from ``person-segmentation``,
and metric depth from ``depth-estimator`` aligned to the solved camera's ground plane.

A monocular depth model knows depth only up to an unknown scale (and, for relative models such as
Depth Anything, a shift in inverse depth). The solved camera fixes it: every pixel whose ray meets
the ground plane ``y = 0`` in front of the camera has a known depth (:func:`ground_depth`), so the
prediction is fitted to those pixels, per frame (a relative model's scale drifts between frames):
``1/z = a * pred + b`` for relative (inverse-depth) models, ``z = s * pred`` for metric ones. Pixels
whose ray meets the ground but that show something standing on it (a table, a person) do not fit;
the fit is iterated on the best-fitting share of the candidates (trimmed least squares), so they
drop out. People's pixels are excluded from the start.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.footage.inpaint import ground_depth

MIN_GROUND_PIXELS = 64  # fewer candidates than this: the ground is not in view, no alignment
KEEP = 0.6  # share of candidates kept by each trimmed refit
ITERATIONS = 4


class AlignmentError(ValueError):
    """The prediction cannot be tied to the camera (no ground in view, a degenerate fit)."""


def _fit_inverse(pred: np.ndarray, inv_z: np.ndarray) -> tuple[float, float]:
    A = np.stack([pred, np.ones_like(pred)], -1)
    (a, b), *_ = np.linalg.lstsq(A, inv_z, rcond=None)
    return float(a), float(b)


def align_to_ground(pred: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, *,
                    kind: str = "relative", exclude: np.ndarray | None = None,
                    frame: int | None = None) -> np.ndarray:
    """(H, W) float32 metres along the optical axis from a depth model's prediction ``pred``
    (H, W): fitted to the ground plane's depth seen by the camera (K, R, t). +inf where the fit
    says "infinitely far" (relative models: ``a * pred + b <= 0``, the sky)."""
    h, w = pred.shape
    truth = ground_depth(K, R, t, h, w)
    where = f" (frame {frame})" if frame is not None else ""
    cand = np.isfinite(truth) & np.isfinite(pred)
    if exclude is not None:
        cand &= ~exclude
    if int(cand.sum()) < MIN_GROUND_PIXELS:
        raise AlignmentError(
            f"depth_estimator{where}: the ground plane y = 0 is not in view of the camera "
            f"({int(cand.sum())} pixels), so the estimated depth cannot be scaled; give depth instead")
    p = pred[cand].astype(np.float64)
    z = truth[cand]
    keep = np.ones(len(p), bool)
    if kind == "metric":
        for _ in range(ITERATIONS):
            s = float(np.median(z[keep] / np.maximum(p[keep], 1e-9)))
            err = np.abs(s * p - z) / z
            keep = err <= np.quantile(err, KEEP)
        if not s > 0:
            raise AlignmentError(f"depth_estimator{where}: the prediction does not fit the ground plane")
        out = s * pred.astype(np.float64)
        return np.where(out > 0, out, np.inf).astype(np.float32)
    inv = 1.0 / z
    for _ in range(ITERATIONS):
        a, b = _fit_inverse(p[keep], inv[keep])
        err = np.abs(a * p + b - inv) / inv  # relative error in inverse depth = in depth, to first order
        keep = err <= np.quantile(err, KEEP)
    if not (np.isfinite(a) and a > 0):  # nearer must stay nearer
        raise AlignmentError(f"depth_estimator{where}: the prediction does not fit the ground plane "
                             f"(fitted scale {a:.3g})")
    disparity = a * pred.astype(np.float64) + b
    with np.errstate(divide="ignore"):
        return np.where(disparity > 0, 1.0 / disparity, np.inf).astype(np.float32)


def estimate_depth(estimator: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, K: np.ndarray,
                   R: np.ndarray, t: np.ndarray, *, kind: str = "relative", exclude: np.ndarray | None = None,
                   progress: Callable[[float, str], None] | None = None,
                   cancelled: Callable[[], None] | None = None) -> np.ndarray:
    """(F, H, W) float32 metres: ``estimator`` per frame, aligned to the ground plane of that frame's
    camera (``exclude``: (F, H, W) bool pixels left out of the fit, the people)."""
    out = np.empty(frames.shape[:3], np.float32)
    for f in range(len(frames)):
        if cancelled is not None:
            cancelled()
        out[f] = align_to_ground(estimator(frames[f]), K[f], R[f], t[f], kind=kind,
                                 exclude=None if exclude is None else exclude[f], frame=f + 1)
        if progress is not None:
            progress((f + 1) / len(frames), f"depth of frame {f + 1}/{len(frames)}")
    return out


def segment_people(segmenter: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, *,
                   progress: Callable[[float, str], None] | None = None,
                   cancelled: Callable[[], None] | None = None) -> np.ndarray:
    """(F, H, W) float32 in [0, 1]: the person probability of ``segmenter`` per frame."""
    out = np.empty(frames.shape[:3], np.float32)
    for f in range(len(frames)):
        if cancelled is not None:
            cancelled()
        prob = np.asarray(segmenter(frames[f]), np.float32)
        if prob.shape != frames.shape[1:3]:
            raise ValueError(f"person-segmentation gave {prob.shape} for a {frames.shape[1:3]} frame")
        out[f] = np.clip(prob, 0.0, 1.0)
        if progress is not None:
            progress((f + 1) / len(frames), f"people in frame {f + 1}/{len(frames)}")
    return out
