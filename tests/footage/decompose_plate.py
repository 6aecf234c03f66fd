"""CG plates with known truth for the decomposition tests: a textured ground (y = 0) and back wall
(z = WALL_Z, up to y = WALL_TOP; the sky above it, at infinity), ray-traced per pixel centre
through an OpenCV camera, with and without a person-shaped blob (an ellipsoid body and a sphere
head) walking across. Every pixel is the exact texture at the point its centre sees, so a frame from
another camera is the same scene point for point: what propagation must recover."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocol.cameras import look_at

WALL_Z, WALL_TOP = 7.0, 3.2


@dataclass
class Plate:
    frames: np.ndarray  # (F, H, W, 3) uint8 with the person
    background: np.ndarray  # (F, H, W, 3) uint8 the same without (the truth)
    mask: np.ndarray  # (F, H, W) float32 person coverage (1 inside)
    depth: np.ndarray  # (F, H, W) float32 metres, with the person (+inf: sky)
    background_depth: np.ndarray  # (F, H, W) float32 without the person
    K: np.ndarray  # (F, 3, 3)
    R: np.ndarray
    t: np.ndarray


def _texture(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Smooth procedural colour (N, 3) in [0, 255] of surface coordinates (metres)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(a), 3))
    for _ in range(6):
        freq = rng.uniform(2.0, 7.0)  # radians per metre: periods of ~0.9-3 m
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(angle) * a + np.sin(angle) * b) + phase)
        out += wave[:, None] * rng.uniform(8, 22, 3)
    return np.clip(128 + out, 0, 255)


def _rays(K: np.ndarray, R: np.ndarray, h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    pix = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5, np.ones(h * w)], -1)
    return (pix @ np.linalg.inv(K).T) @ R  # camera z = 1: the ray parameter is the depth


def render(K: np.ndarray, R: np.ndarray, t: np.ndarray, h: int, w: int,
           person: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8 (H, W, 3), depth float32 (H, W), person mask float32 (H, W)); ``person``: its
    (x, z) on the ground."""
    c = -R.T @ t
    d = _rays(K, R, h, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_ground = np.where(d[:, 1] < 0, -c[1] / d[:, 1], np.inf)
        s_wall = np.where(d[:, 2] > 0, (WALL_Z - c[2]) / d[:, 2], np.inf)
    wall_y = c[1] + s_wall * d[:, 1]
    s_wall = np.where(wall_y <= WALL_TOP, s_wall, np.inf)
    depth = np.minimum(s_ground, s_wall)
    colour = np.empty((h * w, 3))
    p = c + np.where(np.isfinite(depth), depth, 0.0)[:, None] * d
    g = np.isfinite(s_ground) & (s_ground <= s_wall)
    wl = np.isfinite(s_wall) & ~g
    sky = ~np.isfinite(depth)
    colour[g] = _texture(p[g, 0], p[g, 2], 1)
    colour[wl] = _texture(p[wl, 0], p[wl, 1], 2)
    dn = d[sky] / np.linalg.norm(d[sky], axis=1, keepdims=True)
    colour[sky] = np.stack([120 + 60 * dn[:, 1], 160 + 40 * dn[:, 1], 230 + 0 * dn[:, 0]], -1)
    mask = np.zeros(h * w)
    if person is not None:
        px, pz = person
        best = np.full(h * w, np.inf)
        pcol = np.zeros((h * w, 3))
        for centre, radii, base in (((px, 0.85, pz), (0.28, 0.85, 0.2), (200, 40, 40)),
                                    ((px, 1.88, pz), (0.16, 0.18, 0.16), (230, 190, 150))):
            # ray-ellipsoid: |(c + s d - centre) / radii|^2 = 1
            o = (c - np.asarray(centre)) / radii
            dd = d / np.asarray(radii)
            A = (dd * dd).sum(1)
            B = 2 * (dd @ o)
            C = o @ o - 1
            disc = B * B - 4 * A * C
            with np.errstate(invalid="ignore"):
                s = (-B - np.sqrt(disc)) / (2 * A)
            hit = (disc > 0) & (s > 0) & (s < best)
            best[hit] = s[hit]
            stripes = 30 * np.sin(12 * (c[1] + s[hit] * d[hit, 1]))[:, None]
            pcol[hit] = np.clip(np.asarray(base) + stripes, 0, 255)
        front = best < depth
        colour[front] = pcol[front]
        depth = np.where(front, best, depth)
        mask[front] = 1.0
    return (np.clip(np.rint(colour), 0, 255).astype(np.uint8).reshape(h, w, 3),
            depth.astype(np.float32).reshape(h, w), mask.astype(np.float32).reshape(h, w))


def make_plate(n: int = 12, h: int = 72, w: int = 96, *, pan: float = 0.0, yaw_deg: float = 0.0,
               walk: tuple[float, float] = (-1.6, 1.6), person_z: float = 3.2,
               focal: float = 90.0) -> Plate:
    """``n`` frames; the camera at height 1.5, 4 m before the origin, moving ``pan`` metres along x
    and turning ``yaw_deg`` degrees over the shot (0, 0: static); the person walks from x =
    walk[0] to walk[1] at z = ``person_z``."""
    K = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1.0]])
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("f", "b", "m", "d", "bd", "R", "t")}
    for i in range(n):
        a = i / max(n - 1, 1) - 0.5
        eye = np.array([pan * a, 1.5, -4.0])
        yaw = np.radians(yaw_deg * a)
        target = eye + np.array([np.sin(yaw), -0.18, np.cos(yaw)])
        R, t = look_at(eye, target)
        px = walk[0] + (walk[1] - walk[0]) * (a + 0.5)
        rgb, depth, mask = render(K, R, t, h, w, (px, person_z))
        bg, bg_depth, _ = render(K, R, t, h, w, None)
        for key, value in zip(("f", "b", "m", "d", "bd", "R", "t"), (rgb, bg, mask, depth, bg_depth, R, t),
                              strict=True):
            out[key].append(value)
    return Plate(np.stack(out["f"]), np.stack(out["b"]), np.stack(out["m"]), np.stack(out["d"]),
                 np.stack(out["bd"]), np.repeat(K[None], n, 0), np.stack(out["R"]), np.stack(out["t"]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
