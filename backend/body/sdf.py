"""Signed-distance primitives and their smooth union, evaluated on a voxel grid.

The stand-in body is an implicit surface: a smooth union of rounded cones, ellipsoids and rounded
boxes, each tied to the skeleton joint whose bone it fleshes out. Distances are the usual cheap
approximations (exact for spheres and capsules, close elsewhere) which is all marching cubes needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Primitive:
    """Base: ``bone`` is the joint index whose skinning the primitive's surface gets, ``blend`` the
    smooth-union radius with what was added before it; ``subtract`` carves instead of adding."""

    bone: int
    blend: float
    subtract: bool = field(default=False, kw_only=True)

    def distance(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class RoundCone(Primitive):
    """A capsule whose radius goes linearly from ``ra`` at ``a`` to ``rb`` at ``b``."""

    a: tuple[float, float, float] = (0.0, 0.0, 0.0)
    b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ra: float = 0.0
    rb: float = 0.0

    def distance(self, p: np.ndarray) -> np.ndarray:
        a, b = np.asarray(self.a), np.asarray(self.b)
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        closest = a + t[:, None] * ab
        return np.linalg.norm(p - closest, axis=1) - (self.ra + (self.rb - self.ra) * t)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        a, b = np.asarray(self.a), np.asarray(self.b)
        r = max(self.ra, self.rb)
        return np.minimum(a, b) - r, np.maximum(a, b) + r


@dataclass(frozen=True)
class Ellipsoid(Primitive):
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radii: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def distance(self, p: np.ndarray) -> np.ndarray:
        r = np.asarray(self.radii)
        q = p - np.asarray(self.center)
        k0 = np.linalg.norm(q / r, axis=1)
        k1 = np.linalg.norm(q / (r * r), axis=1)
        # First-order distance estimate k0 (k0 - 1) / k1: good near the surface, never NaN.
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c, r = np.asarray(self.center), np.asarray(self.radii)
        return c - r, c + r


@dataclass(frozen=True)
class RoundBox(Primitive):
    """Axis-aligned box of half sizes ``half`` with edges rounded by ``rounding``."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    half: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rounding: float = 0.0

    def distance(self, p: np.ndarray) -> np.ndarray:
        q = np.abs(p - np.asarray(self.center)) - (np.asarray(self.half) - self.rounding)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside - self.rounding

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c, h = np.asarray(self.center), np.asarray(self.half)
        return c - h, c + h


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: equals min(a, b) where they differ by more than ``k``."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: ``origin`` is the centre of voxel (0, 0, 0)."""

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]

    @staticmethod
    def around(lo: np.ndarray, hi: np.ndarray, spacing: float, margin: float) -> Grid:
        lo = np.asarray(lo, dtype=np.float64) - margin
        hi = np.asarray(hi, dtype=np.float64) + margin
        shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing).astype(int) + 1)
        return Grid(origin=lo, spacing=spacing, shape=shape)  # type: ignore[arg-type]

    def index_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
        i0 = np.clip(np.floor((lo - self.origin) / self.spacing).astype(int), 0, np.array(self.shape))
        i1 = np.clip(np.ceil((hi - self.origin) / self.spacing).astype(int) + 1, 0, np.array(self.shape))
        return tuple(slice(int(a), int(b)) for a, b in zip(i0, i1, strict=True))  # type: ignore[return-value]


def evaluate_union(primitives: list[Primitive], grid: Grid, far: float = 1.0) -> np.ndarray:
    """Smooth union (and smooth carving) of ``primitives`` sampled on ``grid``, float32.

    Each primitive is evaluated only inside its bounding box grown by its blend radius, which keeps
    the cost proportional to the body's volume rather than the grid's.
    """
    field_ = np.full(grid.shape, far, dtype=np.float32)
    for prim in primitives:
        lo, hi = prim.bounds()
        pad = prim.blend + 2 * grid.spacing
        sl = grid.index_range(lo - pad, hi + pad)
        if any(s.stop <= s.start for s in sl):
            continue
        axes = [grid.origin[i] + grid.spacing * np.arange(sl[i].start, sl[i].stop) for i in range(3)]
        pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        d = prim.distance(pts).reshape(field_[sl].shape)
        current = field_[sl].astype(np.float64)
        if prim.subtract:
            # smooth max(current, -d) carves the primitive out with a rounded edge
            field_[sl] = -smooth_min(-current, d, prim.blend)
        else:
            field_[sl] = smooth_min(current, d, prim.blend)
    return field_


def nearest_primitive(primitives: list[Primitive], points: np.ndarray) -> np.ndarray:
    """Index of the additive primitive closest to each point (the surface's owner)."""
    dists = np.stack(
        [p.distance(points) if not p.subtract else np.full(len(points), np.inf) for p in primitives],
        axis=1,
    )
    return dists.argmin(axis=1)
