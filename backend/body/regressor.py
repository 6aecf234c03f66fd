"""Joint regressor: each joint as a convex combination of nearby surface vertices.

SMPL-X regresses joints from vertices so that shape changes move the skeleton with the flesh. For
the stand-in, every joint gets Gaussian weights over the vertices of its own and its parent's bone
near it, exponentially tilted (w_i ∝ g_i exp(a · v_i)) so that the weighted mean lands exactly on
the designed joint. The weights stay positive and sum to 1, so a regressed joint is always inside
the convex hull of the flesh around it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .joints import NUM_JOINTS, PARENTS


def tilted_weights(points: np.ndarray, prior: np.ndarray, target: np.ndarray, iters: int = 60) -> np.ndarray:
    """Weights ∝ prior * exp(a·p) whose weighted mean of ``points`` is ``target`` (Newton on a).

    Minimises the convex log-partition F(a) = log Σ prior exp(a·(p - target)); its gradient is the
    weighted mean minus the target, its Hessian the weighted covariance.
    """
    q = points - target
    scale = max(float(np.abs(q).max()), 1e-9)
    q = q / scale  # well-conditioned steps whatever the limb size
    log_prior = np.log(prior)

    def objective(a: np.ndarray) -> float:
        return float(logsumexp(log_prior + q @ a))

    a = np.zeros(3)
    for _ in range(iters):
        logits = log_prior + q @ a
        w = np.exp(logits - logsumexp(logits))
        mean = w @ q
        if np.linalg.norm(mean) * scale < 1e-7:
            break
        cov = (q * w[:, None]).T @ q - np.outer(mean, mean)
        step = np.linalg.solve(cov + 1e-9 * np.eye(3), mean)
        # damped Newton: halve the step until the objective decreases
        f0, t = objective(a), 1.0
        while t > 1e-4 and objective(a - t * step) > f0:
            t *= 0.5
        a = a - t * step
    logits = log_prior + q @ a
    return np.exp(logits - logsumexp(logits))


def build_regressor(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(55, V) regressor reproducing ``joints`` from ``vertices`` exactly (to ~1e-6 m)."""
    n_vertices = len(vertices)
    regressor = np.zeros((NUM_JOINTS, n_vertices))
    children: dict[int, list[int]] = {j: [] for j in range(NUM_JOINTS)}
    for j, p in enumerate(PARENTS):
        if p >= 0:
            children[p].append(j)
    for j in range(NUM_JOINTS):
        related = [j, *children[j]] + ([PARENTS[j]] if PARENTS[j] >= 0 else [])
        membership = weights[:, related].sum(axis=1)
        candidates = np.nonzero(membership > 0.25)[0]
        d = np.linalg.norm(vertices[candidates] - joints[j], axis=1)
        radius = 1.5 * float(d.min())
        for _ in range(12):
            near = candidates[d < radius]
            if len(near) >= 8:
                prior = np.exp(-0.5 * (d[d < radius] / (0.6 * radius)) ** 2)
                w = tilted_weights(vertices[near], prior, joints[j])
                if np.linalg.norm(w @ vertices[near] - joints[j]) < 1e-5:
                    regressor[j, near] = w
                    break
            radius *= 1.3
        else:
            raise RuntimeError(f"joint {j} is not surrounded by its bone's vertices")
    return regressor
