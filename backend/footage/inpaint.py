"""Background recovery where people are removed from a shot (the scene layer of MIMO's
decomposition, issue 13): propagate the background from other frames along the camera motion,
then fill spatially what no frame shows.

Propagation: every removed pixel of frame ``f`` looks for the same scene point in the other frames,
nearest in time first (lighting and exposure drift least), and takes it from the first frame that
shows it unmasked. How a pixel of ``f`` maps into frame ``g`` depends on what is known:

- **static camera** (one camera, or no camera and no global image motion): the same pixel.
- **camera + depth** (a CG plate's Z pass, or the depth estimator): reprojection through K, R, t.
  The depth of ``f`` at a removed pixel is the person's, not the background's, so the background
  depth there is first *forward-splatted* from ``g`` (its unmasked pixels, z-buffered, each point
  written to the 2x2 pixels around it so a magnifying warp leaves no gaps); the colour is then
  sampled bilinearly in ``g`` and accepted only when ``g``'s own depth there agrees (else that
  point is hidden in ``g`` behind something else).
- **camera, no depth**: the same reprojection with a proxy depth: the ground plane ``y = 0`` where
  the pixel's ray hits it in front of the camera, infinity elsewhere. At infinite depth the mapping
  is the rotation homography ``K_g R_g R_f^T K_f^-1``, exact for any depth when the camera only
  turns (a tripod pan), and the ground plane's homography is exact for the floor the people stand
  on; what is neither (a wall behind a moving camera) is rejected by nothing, so it is
  approximate: that is why depth is preferred when there is any.
- **no camera**: a global translation per frame by masked phase correlation
  (``skimage.registration.phase_cross_correlation`` with the people masked out, so they do not
  drag the estimate); all zero means a static camera. It covers a locked-off shot that shakes a
  little; real camera moves should come with the solved camera.

Spatial fill (pixels no frame shows): ``skimage.restoration.inpaint_biharmonic`` per frame, split
into the holes' regions: a smooth, hole-free continuation of the surroundings, from a maintained
library rather than our own solver (the fast-marching method of OpenCV would need OpenCV, not a
dependency here). ``fill="model"`` gives those pixels to a callable instead (the ``inpainting``
role's diffusion pipeline, :mod:`backend.footage.decompose`).

Masks are dilated a little before removal (:func:`removal_mask`): a person's soft edge and
motion-blurred halo are part of the person, and leaving them would leave a ghost outline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Beyond this a point is "at infinity" for the geometry (float64 keeps the direction exact).
FAR = 1.0e6
# Depth agreement for a reprojected point to count as visible in the source frame (relative).
DEPTH_TOLERANCE = 0.03
# A mask value above this is person (soft masks: their faint edge is still the person's halo).
MASK_THRESHOLD = 0.05
# Source frames tried per target frame at most (nearest in time first): bounds the work on long
# shots; a pixel not seen in this many frames is filled spatially.
MAX_SOURCES = 48

Progress = Callable[[float, str], None]
Coords = tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y (array-index coordinates), and a third array
Cancelled = Callable[[], None]


class InpaintError(ValueError):
    """Inputs that do not fit together (shapes, counts)."""


@dataclass(frozen=True)
class Fill:
    frames: np.ndarray  # (F, H, W, 3) uint8: the shot with the removed pixels filled
    depth: np.ndarray | None  # (F, H, W) float32: the given depth with removed pixels' background
    removed: np.ndarray  # (F, H, W) bool: pixels removed (the dilated masks)
    propagated: np.ndarray  # (F, H, W) bool: of those, filled from another frame
    method: str  # "static" | "translation" | "reprojection-depth" | "reprojection-ground" | "none"

    @property
    def removed_pixels(self) -> int:
        return int(self.removed.sum())

    @property
    def propagated_fraction(self) -> float:
        n = self.removed_pixels
        return float(self.propagated.sum()) / n if n else 0.0


def dilation_radius(height: int, width: int) -> int:
    """Pixels a mask grows by before removal: 2 + 0.4 % of the long side (2 px at 64 px, 9 at
    1920): a halo scales with the image."""
    return 2 + round(0.004 * max(height, width))


def removal_mask(person: np.ndarray, radius: int | None = None) -> np.ndarray:
    """(F, H, W) bool: the person masks (soft, [0, 1]) above :data:`MASK_THRESHOLD`, dilated by a
    disc of ``radius`` pixels (default :func:`dilation_radius`)."""
    from scipy import ndimage

    if person.ndim != 3:
        raise InpaintError(f"person masks must be (F, H, W), got {person.shape}")
    r = dilation_radius(*person.shape[1:]) if radius is None else int(radius)
    hard = person > MASK_THRESHOLD
    if r <= 0:
        return hard
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (yy * yy + xx * xx) <= r * r
    return np.stack([ndimage.binary_dilation(m, disc) if m.any() else m for m in hard])


# ----------------------------------------------------------------------------------- geometry


def _centre(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return -R.T @ t


def ground_depth(K: np.ndarray, R: np.ndarray, t: np.ndarray, height: int, width: int,
                 ground_y: float = 0.0) -> np.ndarray:
    """(H, W) float64: depth along the optical axis where each pixel's ray meets the plane
    ``y = ground_y`` in front of the camera; +inf where it does not (sky, above the horizon)."""
    # The ray of pixel p, scaled to camera z = 1, is R^T K^-1 p: only its world y matters here.
    M = R.T @ np.linalg.inv(K)
    px = np.arange(width, dtype=np.float64)[None, :] + 0.5
    py = np.arange(height, dtype=np.float64)[:, None] + 0.5
    dy = M[1, 0] * px + M[1, 1] * py + M[1, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (ground_y - _centre(R, t)[1]) / dy
    return np.where(np.isfinite(s) & (s > 0), s, np.inf)


def _reproject(Ks: np.ndarray, Rs: np.ndarray, ts: np.ndarray, Kt: np.ndarray, Rt: np.ndarray,
               tt: np.ndarray, ys: np.ndarray, xs: np.ndarray, z: np.ndarray) -> Coords:
    """Pixels (ys, xs) of a source camera at depth ``z`` seen from a target camera: (x, y) array
    coordinates and depth there. One 3x3 map and an offset, ``Kt (Rt Cs + tt) + z Kt Rt Rs^T Ks^-1
    p``, applied per coordinate (elementwise: much faster than stacking (N, 3) points)."""
    M = Kt @ Rt @ Rs.T @ np.linalg.inv(Ks)
    a = Kt @ (Rt @ _centre(Rs, ts) + tt)
    px, py = xs + 0.5, ys + 0.5
    hx = a[0] + z * (M[0, 0] * px + M[0, 1] * py + M[0, 2])
    hy = a[1] + z * (M[1, 0] * px + M[1, 1] * py + M[1, 2])
    hz = a[2] + z * (M[2, 0] * px + M[2, 1] * py + M[2, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        return hx / hz - 0.5, hy / hz - 0.5, hz  # K's last row is (0, 0, 1): hz is the depth


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) sampled at (u, v) (array-index coordinates, inside the image)."""
    h, w = image.shape[:2]
    x0 = np.clip(np.floor(u).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = np.clip(u - x0, 0.0, 1.0)
    fy = np.clip(v - y0, 0.0, 1.0)
    if image.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # gather first: never a float copy of the frame
        return image[y, x].astype(np.float64)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def _blocked(removed: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """True where any of the four pixels a bilinear sample at (u, v) reads is removed."""
    h, w = removed.shape
    x0 = np.clip(np.floor(u).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    return removed[y0, x0] | removed[y0, x1] | removed[y1, x0] | removed[y1, x1]


def _inside(u: np.ndarray, v: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.isfinite(u) & np.isfinite(v) & (u >= 0) & (v >= 0) & (u <= w - 1) & (v <= h - 1)


def _splat_depth(K: np.ndarray, R: np.ndarray, t: np.ndarray, depth: np.ndarray, keep: np.ndarray,
                 Kf: np.ndarray, Rf: np.ndarray, tf: np.ndarray,
                 window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Depth (H, W) of source points ``keep`` (its unremoved pixels) seen from the target camera
    (Kf, Rf, tf), z-buffered (nearest wins); each point writes the 2x2 pixels around where it
    lands, so a warp that magnifies up to 2x leaves no gaps. +inf where nothing lands, and outside
    ``window`` (y0, y1, x0, x1: only the pixels wanted are z-buffered, the costly part)."""
    h, w = depth.shape
    ys, xs = np.nonzero(keep)
    z = np.minimum(depth[ys, xs].astype(np.float64), FAR)  # +inf (sky): a far point, a direction
    u, v, zt = _reproject(K, R, t, Kf, Rf, tf, ys.astype(np.float64), xs.astype(np.float64), z)
    y_lo, y_hi, x_lo, x_hi = window if window is not None else (0, h, 0, w)
    ok = (np.isfinite(u) & np.isfinite(v) & (zt > 0) & (u > x_lo - 1) & (v > y_lo - 1)
          & (u < x_hi) & (v < y_hi))
    u, v, zt = u[ok], v[ok], zt[ok]
    x0, y0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    pixel, value = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
            pixel.append(yi[inside] * w + xi[inside])
            value.append(zt[inside])
    out = np.full(h * w, np.inf)
    if pixel:
        idx, val = np.concatenate(pixel), np.concatenate(value)
        order = np.lexsort((val, idx))  # by pixel, nearest first: the first of each pixel wins
        first = np.unique(idx[order], return_index=True)[1]
        out[idx[order][first]] = val[order][first]
    return out.reshape(h, w)


# ----------------------------------------------------------------------------------- motion models


class _Motion:
    """Maps target pixels of frame f to source coordinates in frame g (and says which are valid)."""

    method = "static"

    def prepare(self, f: int, g: int, todo: np.ndarray) -> None:
        """Per (target, source) pair, before :meth:`map`; ``todo``: the target pixels wanted."""
        return None

    def map(self, f: int, g: int, ys: np.ndarray, xs: np.ndarray) -> Coords:
        return xs.astype(np.float64), ys.astype(np.float64), np.ones(len(ys), bool)

    def target_depth(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray | None:
        """Background depth of the target pixels last mapped (reprojection only)."""
        return None


class _Translation(_Motion):
    method = "translation"

    def __init__(self, shifts: np.ndarray) -> None:
        self.shifts = shifts  # (F, 2) (dy, dx): frame f at p shows what frame 0 shows at p + s_f

    def map(self, f: int, g: int, ys: np.ndarray, xs: np.ndarray) -> Coords:
        d = self.shifts[f] - self.shifts[g]
        return xs + d[1], ys + d[0], np.ones(len(ys), bool)


class _Reprojection(_Motion):
    def __init__(self, K: np.ndarray, R: np.ndarray, t: np.ndarray, depth: np.ndarray | None,
                 removed: np.ndarray) -> None:
        self.K, self.R, self.t = K, R, t
        self.depth = depth  # given depth (F, H, W), or None: the ground/infinity proxy
        self.removed = removed
        self.method = "reprojection-depth" if depth is not None else "reprojection-ground"
        self._ground: dict[int, np.ndarray] = {}
        self._target: np.ndarray | None = None

    def _proxy(self, f: int) -> np.ndarray:
        if f not in self._ground:
            h, w = self.removed.shape[1:]
            self._ground[f] = ground_depth(self.K[f], self.R[f], self.t[f], h, w)
        return self._ground[f]

    def prepare(self, f: int, g: int, todo: np.ndarray) -> None:
        if self.depth is None:
            self._target = self._proxy(f)
        else:  # the background behind f's removed pixels, as g's unremoved pixels see it
            # (sky, +inf, splats at FAR: the z-buffer keeps anything nearer over it)
            rows, cols = np.nonzero(todo.any(1))[0], np.nonzero(todo.any(0))[0]
            window = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            self._target = _splat_depth(self.K[g], self.R[g], self.t[g], self.depth[g], ~self.removed[g],
                                        self.K[f], self.R[f], self.t[f], window)

    def map(self, f: int, g: int, ys: np.ndarray, xs: np.ndarray) -> Coords:
        assert self._target is not None
        z = self._target[ys, xs]
        # Proxy: +inf is a direction (above the horizon), always mappable. Given depth: +inf is a
        # pixel no point of g landed on (g does not show it).
        valid = np.ones(len(z), bool) if self.depth is None else np.isfinite(z)
        zz = np.minimum(z, FAR)
        u, v, zg = _reproject(self.K[f], self.R[f], self.t[f], self.K[g], self.R[g], self.t[g],
                              ys.astype(np.float64), xs.astype(np.float64), zz)
        valid &= zg > 0
        if self.depth is not None:
            # Visible in g when its depth lies within the depths g shows at the four pixels the
            # sample reads (give or take DEPTH_TOLERANCE): behind them it is hidden in g. An
            # interval, not one pixel's depth: on a floor seen at a grazing angle the depth changes
            # by several % per pixel.
            h, w = self.removed.shape[1:]
            lo, hi = np.zeros(len(u)), np.zeros(len(u))
            idx = np.nonzero(valid & _inside(u, v, h, w))[0]
            if len(idx):
                lo[idx], hi[idx] = _depth_range(self.depth[g], u[idx], v[idx])
            lo, hi = np.minimum(lo, FAR), np.minimum(hi, FAR)  # the sky: at FAR, as splatted
            zg = np.minimum(zg, FAR)
            valid &= (zg >= lo * (1 - DEPTH_TOLERANCE)) & (zg <= hi * (1 + DEPTH_TOLERANCE))
        return u, v, valid

    def target_depth(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray | None:
        if self._target is None:
            return None
        z = self._target[ys, xs]
        return np.where(z >= FAR, np.inf, z)


def _depth_range(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the source depth over the 2x2 pixels a bilinear sample at (u, v) reads."""
    h, w = depth.shape
    x0 = np.clip(np.floor(u).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(v).astype(np.int64), 0, h - 1)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    four = np.stack([depth[y0, x0], depth[y0, x1], depth[y1, x0], depth[y1, x1]])
    return four.min(0), four.max(0)


def global_shifts(frames: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(F, 2) (dy, dx) per frame relative to frame 0 by masked phase correlation of the grey
    frames, the removed (people) pixels masked out: frame f at p shows what frame 0 shows at
    p + shift[f]. Integer pixels (the masked estimator's resolution)."""
    from skimage.registration import phase_cross_correlation

    grey = frames.astype(np.float32).mean(-1)
    out = np.zeros((len(frames), 2))
    for f in range(1, len(frames)):
        shift = phase_cross_correlation(grey[0], grey[f], reference_mask=~removed[0],
                                        moving_mask=~removed[f])
        # skimage's shift registers the moving image onto the reference (ndimage.shift(moving,
        # shift) ~ reference): moving(q) = reference(q + shift), which is our convention as is
        # (checked: a window sliding right by 4 px per frame gives shift = (0, 4 f)).
        out[f] = np.asarray(shift[0] if isinstance(shift, tuple) else shift, np.float64)
    return out


# ----------------------------------------------------------------------------------- propagation


def _source_order(f: int, n: int, limit: int) -> list[int]:
    order = sorted((g for g in range(n) if g != f), key=lambda g: (abs(g - f), g))
    return order[:limit]


def propagate(frames: np.ndarray, removed: np.ndarray, motion: _Motion, *,
              depth: np.ndarray | None = None, max_sources: int = MAX_SOURCES,
              progress: Progress | None = None,
              cancelled: Cancelled | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Fill removed pixels from other frames: returns (uint8 frames (F,H,W,3), propagated mask,
    background depth of the propagated pixels (with ``depth``; else None): the reprojected depth,
    or for image-space motions the source's depth where the colour came from)."""
    n = len(frames)
    out = frames.copy()  # uint8: a float copy of a long shot would be 8x its size
    done = np.zeros_like(removed)
    bg_depth = np.full(removed.shape, np.inf, np.float32) if depth is not None else None
    h, w = removed.shape[1:]
    for f in range(n):
        if cancelled is not None:
            cancelled()
        todo = removed[f].copy()
        for g in _source_order(f, n, max_sources):
            if not todo.any():
                break
            if removed[g].all():
                continue
            motion.prepare(f, g, todo)
            ys, xs = np.nonzero(todo)
            u, v, valid = motion.map(f, g, ys, xs)
            valid &= _inside(u, v, h, w)
            ok = np.nonzero(valid)[0]
            if len(ok):
                ok = ok[~_blocked(removed[g], u[ok], v[ok])]
            if not len(ok):
                continue
            out[f, ys[ok], xs[ok]] = _to_uint8(_bilinear(frames[g], u[ok], v[ok]))
            if bg_depth is not None and depth is not None:
                z = motion.target_depth(ys[ok], xs[ok])
                if z is None:  # image-space motion: the depth the source shows there
                    xi = np.clip(np.rint(u[ok]).astype(np.int64), 0, w - 1)
                    yi = np.clip(np.rint(v[ok]).astype(np.int64), 0, h - 1)
                    z = depth[g, yi, xi]
                bg_depth[f, ys[ok], xs[ok]] = z
            todo[ys[ok], xs[ok]] = False
            done[f, ys[ok], xs[ok]] = True
        if progress is not None:
            progress((f + 1) / n, f"frame {f + 1}/{n}: {int(done[f].sum())}/{int(removed[f].sum())} "
                     "removed pixels found in other frames")
    return out, done, bg_depth


def spatial_fill(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) float in [0, 255] with ``holes`` filled by biharmonic inpainting
    (scikit-image), each hole's region solved alone."""
    from skimage.restoration import inpaint_biharmonic

    if not holes.any():
        return image
    if holes.all():  # nothing to continue from: mid grey
        return np.full_like(image, 127.5)
    filled = inpaint_biharmonic(image / 255.0, holes, channel_axis=-1, split_into_regions=True)
    return np.clip(filled, 0.0, 1.0) * 255.0


def fill_depth(depth: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Each hole pixel takes the depth of the nearest pixel outside the holes (one frame)."""
    from scipy import ndimage

    if not holes.any() or holes.all():
        return depth
    _, (iy, ix) = ndimage.distance_transform_edt(holes, return_indices=True)
    return np.where(holes, depth[iy, ix], depth)


def choose_motion(frames: np.ndarray, removed: np.ndarray, K: np.ndarray | None, R: np.ndarray | None,
                  t: np.ndarray | None, depth: np.ndarray | None) -> _Motion:
    """The motion model for what is known (module docstring)."""
    static_camera = K is not None and bool(
        np.allclose(R, R[:1]) and np.allclose(t, t[:1]) and np.allclose(K, K[:1]))
    if K is not None and R is not None and t is not None and not static_camera:
        return _Reprojection(K, R, t, depth, removed)
    if K is None and len(frames) > 1:
        shifts = global_shifts(frames, removed)
        if np.abs(shifts).max() > 0:
            return _Translation(shifts)
    return _Motion()


def recover_background(frames: np.ndarray, person: np.ndarray, *, K: np.ndarray | None = None,
                       R: np.ndarray | None = None, t: np.ndarray | None = None,
                       depth: np.ndarray | None = None, radius: int | None = None,
                       fill: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
                       max_sources: int = MAX_SOURCES, progress: Progress | None = None,
                       cancelled: Cancelled | None = None) -> Fill:
    """The shot ``frames`` (F, H, W, 3) uint8 with the people ``person`` (F, H, W) in [0, 1]
    removed: propagated from other frames along the camera motion (K, R, t per frame; ``depth``
    (F, H, W) metres, +inf = nothing), then filled spatially (biharmonic, or ``fill(frame_index,
    image float [0,255], holes) -> image`` for the ``inpainting`` model)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InpaintError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if person.shape != frames.shape[:3]:
        raise InpaintError(f"person masks are {person.shape}, the frames {frames.shape[:3]}")
    if depth is not None and depth.shape != frames.shape[:3]:
        raise InpaintError(f"depth is {depth.shape}, the frames {frames.shape[:3]}")
    if (K is None) != (R is None) or (K is None) != (t is None):
        raise InpaintError("the camera needs K, R and t together")
    if K is not None:
        K, R, t = (np.asarray(a, np.float64) for a in (K, R, t))
        if not len(K) == len(R) == len(t) or len(K) not in (1, len(frames)):
            raise InpaintError(f"the camera has {len(K)}/{len(R)}/{len(t)} frames (K/R/t), the shot "
                               f"{len(frames)} (one = a static camera)")
        if len(K) == 1:
            K, R, t = (np.repeat(a, len(frames), 0) for a in (K, R, t))
    removed = removal_mask(person, radius)
    if not removed.any():
        return Fill(frames.copy(), None if depth is None else depth.astype(np.float32), removed,
                    np.zeros_like(removed), "none")
    motion = choose_motion(frames, removed, K, R, t, depth)

    def stage(lo: float, hi: float) -> Progress | None:
        return None if progress is None else (lambda x, m: progress(lo + (hi - lo) * x, m))

    out, done, bg_depth = propagate(frames, removed, motion, depth=depth, max_sources=max_sources,
                                    progress=stage(0.0, 0.8), cancelled=cancelled)
    holes = removed & ~done
    n = len(frames)
    for f in range(n):
        if cancelled is not None:
            cancelled()
        if holes[f].any():
            image = out[f].astype(np.float64)
            image = fill(f, image, holes[f]) if fill is not None else spatial_fill(image, holes[f])
            out[f][holes[f]] = _to_uint8(image[holes[f]])
        if progress is not None:
            progress(0.8 + 0.2 * (f + 1) / n, f"frame {f + 1}/{n}: {int(holes[f].sum())} pixels filled "
                     "spatially")
    scene = out
    scene_depth = None
    if depth is not None:
        scene_depth = depth.astype(np.float32, copy=True)
        if bg_depth is not None:
            known = removed & done  # +inf there is the sky seen behind the person
            scene_depth[known] = bg_depth[known]
            unknown = removed & ~known
        else:
            unknown = removed
        for f in range(n):
            scene_depth[f] = fill_depth(scene_depth[f], unknown[f])
    return Fill(scene, scene_depth, removed, done, motion.method)
