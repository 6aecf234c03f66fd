"""Perturbed views: what generated or real views do to a perfect synthetic set.

Generated views (issue 12, ``backend/generate``) disagree with each other and with the body in a
few typical ways; this module makes each of them, seeded and deterministic, from perfect views so
that robustness can be measured against a known ground truth (``bench/avatar.py --perturb``):

- **mask noise**: a segmentation model's errors along the outline, as blobs (discs of a few pixels)
  centred on the boundary that either add background to the mask (dilation) or cut the person out
  (erosion); RGB follows the alpha (a cut-out pixel shows the background);
- **camera error**: each training camera rotated about its own centre by a random small rotation
  so that the body's centre reprojects 1-2 px away from where the images put it;
- **colour shifts**: per view and per channel gain, offset and gamma on the person's pixels
  (white balance and exposure differences between generated views);
- **one inconsistent view**: one training view whose shirt has another colour (blue-dominant
  pixels get their channels rotated) and whose silhouette is warped (a smooth displacement field of
  several pixels moves the image, mask and normals together).

Only ``split == "train"`` views are perturbed: held-out views stay the ground truth the result is
scored against. What was done to each view is returned (``PerturbReport``) and kept in
``ViewSet.extra["perturbed"]``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import binary_erosion, map_coordinates

from backend.avatar.io.views import ViewSet
from protocol.cameras import CameraFrame


@dataclass
class PerturbConfig:
    seed: int = 0
    mask_blobs: int = 12  # blobs per view along the outline (half added, half cut)
    blob_radius_px: tuple[float, float] = (2.0, 6.0)  # at 512 px; scaled with the view's width
    camera_px: tuple[float, float] = (1.0, 2.0)  # reprojection error of the body centre, pixels
    gain: tuple[float, float] = (0.85, 1.15)
    offset: tuple[float, float] = (-0.05, 0.05)
    gamma: tuple[float, float] = (0.85, 1.15)
    inconsistent_view: int | None = 3  # index among the training views; None: none
    warp_px: float = 8.0  # amplitude of the inconsistent view's displacement, at 512 px
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class ViewPerturbation:
    name: str
    camera_shift_px: float
    gain: list[float]
    offset: list[float]
    gamma: list[float]
    mask_changed_px: int
    inconsistent: bool = False


@dataclass
class PerturbReport:
    views: list[ViewPerturbation] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"views": [asdict(v) for v in self.views]}


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation matrix of ``angle`` radians about the unit ``axis``."""
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def perturb_camera(
    cam: CameraFrame, centre: np.ndarray, shift_px: float, rng: np.random.Generator
) -> CameraFrame:
    """The camera turned about its own centre so that ``centre`` reprojects ``shift_px`` away.

    A rotation by ``theta`` about an axis perpendicular to the optical axis moves the image by about
    ``f * theta`` pixels; the angle is then corrected by the measured shift (one Newton step is
    exact to well under 0.01 px at these angles). A small roll (a tenth of the angle) is added.
    """
    f = float(cam.K[0, 0])
    phi = rng.uniform(0, 2 * np.pi)
    axis_cam = np.array([np.cos(phi), np.sin(phi), 0.1 * rng.choice([-1.0, 1.0])])
    theta = shift_px / f
    before = cam.project(centre[None])[0][0]
    out = cam
    for _ in range(2):
        dR = rotation_about(axis_cam, theta)
        R = dR @ cam.R
        t = dR @ cam.t  # the centre C = -R^T t is unchanged
        out = CameraFrame(K=cam.K.copy(), R=R, t=t, width=cam.width, height=cam.height,
                          near=cam.near, far=cam.far)
        moved = float(np.linalg.norm(out.project(centre[None])[0][0] - before))
        theta *= shift_px / max(moved, 1e-9)
    return out


def mask_blobs(alpha: np.ndarray, count: int, radius: tuple[float, float],
               rng: np.random.Generator) -> np.ndarray:
    """New alpha with ``count`` discs on the outline, alternately filled (1) and cut (0)."""
    inside = alpha > 0.5
    edge = inside & ~binary_erosion(inside)
    ys, xs = np.nonzero(edge)
    out = alpha.copy()
    if len(ys) == 0:
        return out
    h, w = alpha.shape
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(count):
        i = rng.integers(len(ys))
        r = rng.uniform(*radius)
        disc = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= r * r
        out[disc] = 1.0 if k % 2 == 0 else 0.0
    return out


def colour_shift(rgb: np.ndarray, alpha: np.ndarray, gain: np.ndarray, offset: np.ndarray,
                 gamma: np.ndarray) -> np.ndarray:
    """Per-channel ``gain * x ** gamma + offset`` on the person's pixels (alpha-blended)."""
    shifted = np.clip(gain * np.clip(rgb, 0, 1) ** gamma + offset, 0, 1)
    a = alpha[..., None]
    return (shifted * a + rgb * (1 - a)).astype(np.float32)


def recolour_shirt(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Another shirt colour: blue-dominant pixels (the synthetic top) get channels (g, b, r)."""
    blue = (rgb[..., 2] > rgb[..., 0] + 0.05) & (alpha > 0.5)
    out = rgb.copy()
    out[blue] = rgb[blue][:, [1, 2, 0]]
    return out


def warp(image: np.ndarray, amplitude_px: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth displacement (two low-frequency sinusoids per axis) applied to every channel."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ph = rng.uniform(0, 2 * np.pi, 4)
    dx = amplitude_px * np.sin(2 * np.pi * yy / h * 1.5 + ph[0]) * np.cos(2 * np.pi * xx / w + ph[1])
    dy = 0.5 * amplitude_px * np.sin(2 * np.pi * xx / w * 1.5 + ph[2]) * np.cos(2 * np.pi * yy / h + ph[3])
    coords = [yy + dy, xx + dx]
    chans = [map_coordinates(image[..., c], coords, order=1, mode="constant", cval=0.0)
             for c in range(image.shape[-1])]
    return np.stack(chans, -1).astype(np.float32)


def perturb_views(views: ViewSet, config: PerturbConfig | None = None,
                  centre: np.ndarray | None = None) -> tuple[ViewSet, PerturbReport]:
    """A deep copy of ``views`` with its training views perturbed (see the module docstring).

    ``centre`` is the world point whose reprojection error the camera perturbation sets (default:
    the point closest to all training cameras' optical axes, i.e. what they look at).
    """
    cfg = config or PerturbConfig()
    rng = np.random.default_rng(cfg.seed)
    out = copy.deepcopy(views)
    train = out.split("train")
    if centre is None:
        centre = _look_at_point([v.camera for v in train])
    report = PerturbReport()
    bg = np.asarray(cfg.background, np.float32)
    for k, v in enumerate(train):
        scale = v.camera.width / 512.0
        shift = float(rng.uniform(*cfg.camera_px))
        v.camera = perturb_camera(v.camera, centre, shift, rng)
        rgb, alpha = v.rgba[..., :3].copy(), v.rgba[..., 3].copy()
        normal = v.normal
        inconsistent = k == cfg.inconsistent_view
        if inconsistent:
            rgb = recolour_shirt(rgb, alpha)
            amp = cfg.warp_px * scale
            stacked = np.concatenate([rgb, alpha[..., None]] + ([normal] if normal is not None else []), -1)
            stacked = warp(stacked, amp, np.random.default_rng(cfg.seed + 1000 + k))
            rgb, alpha = stacked[..., :3], np.clip(stacked[..., 3], 0, 1)
            if normal is not None:
                n = stacked[..., 4:7]
                normal = (n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)).astype(np.float32)
        radius = (cfg.blob_radius_px[0] * scale, cfg.blob_radius_px[1] * scale)
        new_alpha = mask_blobs(alpha, cfg.mask_blobs, radius, rng)
        changed = int(((new_alpha > 0.5) != (alpha > 0.5)).sum())
        # Added pixels show the background (what a loose segmentation includes); cut pixels too.
        cut = new_alpha < alpha - 0.5
        rgb[cut] = bg
        alpha = new_alpha
        gain = rng.uniform(*cfg.gain, 3)
        offset = rng.uniform(*cfg.offset, 3)
        gamma = rng.uniform(*cfg.gamma, 3)
        rgb = colour_shift(rgb, alpha, gain, offset, gamma)
        v.rgba = np.concatenate([rgb, alpha[..., None]], -1).astype(np.float32)
        v.normal = normal
        report.views.append(ViewPerturbation(
            name=v.name, camera_shift_px=shift, gain=gain.tolist(), offset=offset.tolist(),
            gamma=gamma.tolist(), mask_changed_px=changed, inconsistent=inconsistent))
    out.extra = {**out.extra, "perturbed": {"config": asdict(cfg), **report.as_dict()}}
    return out, report


def _look_at_point(cams: list[CameraFrame]) -> np.ndarray:
    """Least-squares point closest to every camera's optical axis."""
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for cam in cams:
        c = np.asarray(cam.centre, np.float64)
        d = np.asarray(cam.R, np.float64)[2]  # the optical axis (camera +z) in the world
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ c
    return np.linalg.lstsq(a, b, rcond=None)[0]

