"""Rasterizer interface: the :class:`Raster` result and the backend registry.

The split follows nvdiffrast: a backend only decides *visibility* (which triangle covers each pixel
centre), which is discrete and not differentiable. Barycentrics and depth are then recomputed in
plain torch from the winning triangle ids (:mod:`backend.render.barycentric`), so every backend gives
the same gradients w.r.t. the clip-space positions, and everything downstream (interpolation,
texturing, shading) is ordinary autograd.

Conventions (see ``docs/rendering.md``): image row 0 is the top of the image; pixel (x, y) is sampled
at its centre; clip space is OpenGL-like (x right, y *up*, w = camera depth), produced by
:func:`backend.render.camera.opencv_to_clip`.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class Raster:
    """Per-pixel visibility of one rasterisation (B images).

    ``tri_id`` (B,H,W) int64, -1 where no triangle covers the pixel centre.
    ``bary``   (B,H,W,2) float32: perspective-correct barycentrics (b1, b2) of the covering triangle
               at the pixel centre (b0 = 1 - b1 - b2); 0 on background. Differentiable w.r.t. the
               clip-space positions when those require grad.
    ``depth``  (B,H,W) float32: camera-space depth (clip w; metres for our cameras), +inf background.
    ``mask``   (B,H,W) bool: ``tri_id >= 0``.
    """

    tri_id: Tensor
    bary: Tensor
    depth: Tensor
    mask: Tensor = None  # type: ignore[assignment]  # computed from tri_id when not given
    _flat_index: Tensor | None = field(default=None, init=False, repr=False)
    _corners: tuple[Tensor, int, Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mask is None:
            self.mask = self.tri_id >= 0

    @property
    def batch(self) -> int:
        return int(self.tri_id.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.tri_id.shape[1]), int(self.tri_id.shape[2])

    def covered_pixels(self) -> Tensor:
        """Flat indices (into B*H*W) of covered pixels, computed once and cached.

        Every op only touches covered pixels (a body covers ~20-40% of a frame), so this gather list
        is shared by interpolation, texturing and the passes.
        """
        if self._flat_index is None:
            self._flat_index = torch.nonzero(self.tri_id.reshape(-1) >= 0).squeeze(1)
        return self._flat_index

    def pixel_corners(self, faces: Tensor) -> Tensor:
        """(N,3) int64 corner indices ``faces[tri_id]`` of the covered pixels, cached per faces tensor
        (interpolating several attributes and the part labels reuse one gather)."""
        # Keyed on the tensor object itself (held, so its memory cannot be reused by another tensor)
        # and its in-place version counter.
        cached = self._corners
        if cached is None or cached[0] is not faces or cached[1] != faces._version:
            corners = faces.to(torch.int64)[self.tri_id.reshape(-1)[self.covered_pixels()]]
            self._corners = cached = (faces, faces._version, corners)
        return cached[2]


class Rasterizer(Protocol):
    """A visibility backend. ``rasterize`` accepts (B,V,4) or (V,4) clip positions and (F,3) faces."""

    name: str

    def rasterize(self, verts_clip: Tensor, faces: Tensor, resolution: tuple[int, int]) -> Raster: ...


def normalize_inputs(verts_clip: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and bring inputs to (B,V,4) float and (F,3) int64 on the positions' device."""
    if verts_clip.dim() == 2:
        verts_clip = verts_clip.unsqueeze(0)
    if verts_clip.dim() != 3 or verts_clip.shape[-1] != 4:
        raise ValueError(f"verts_clip must be (B,V,4) or (V,4), got {tuple(verts_clip.shape)}")
    if not verts_clip.is_floating_point():
        raise TypeError("verts_clip must be a floating point tensor")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F,3), got {tuple(faces.shape)}")
    if faces.is_floating_point():
        raise TypeError("faces must be an integer tensor")
    faces = faces.to(device=verts_clip.device, dtype=torch.int64)
    if faces.numel():
        # numpy on CPU: a torch reduction over this many elements would wake torch's thread pool,
        # which costs more than the check on a busy machine (see docs/benchmarks.md, Render).
        lo, hi = ((int(faces.min()), int(faces.max())) if faces.device.type != "cpu"
                  else (int(faces.numpy().min()), int(faces.numpy().max())))
        if lo < 0 or hi >= verts_clip.shape[1]:
            raise ValueError("faces index outside the vertex array")
    return verts_clip, faces


def check_resolution(resolution: tuple[int, int]) -> tuple[int, int]:
    height, width = (int(v) for v in resolution)
    if height <= 0 or width <= 0:
        raise ValueError(f"resolution must be positive (H, W), got {resolution}")
    return height, width


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend, whether it can run here, and whether ``auto`` may pick it.

    ``gpu`` backends are ``auto``'s candidates, tried in registration order, each only after
    :func:`backend.render.selfcheck.self_check` agreed with the CPU reference on a small scene.
    """

    factory: Callable[[], Rasterizer]
    available: Callable[[], bool]
    gpu: bool = False


def _cuda_package(module: str) -> Callable[[], bool]:
    return lambda: torch.cuda.is_available() and importlib.util.find_spec(module) is not None


def _build_cpu() -> Rasterizer:
    # Imported lazily: the numba kernel compiles on first use and the GPU packages are optional.
    from backend.render.cpu_numba import NumbaRasterizer

    return NumbaRasterizer()


def _build_torch_ref() -> Rasterizer:
    from backend.render.torch_ref import TorchRefRasterizer

    return TorchRefRasterizer()


def _build_nvdiffrast() -> Rasterizer:
    from backend.render.nvdiffrast_backend import NvdiffrastRasterizer

    return NvdiffrastRasterizer()


def _build_pytorch3d() -> Rasterizer:
    from backend.render.pytorch3d_backend import Pytorch3dRasterizer

    return Pytorch3dRasterizer()


_REGISTRY: dict[str, BackendSpec] = {
    "cpu": BackendSpec(_build_cpu, lambda: True),
    "torch_ref": BackendSpec(_build_torch_ref, lambda: True),
    "nvdiffrast": BackendSpec(_build_nvdiffrast, _cuda_package("nvdiffrast"), gpu=True),
    "pytorch3d": BackendSpec(_build_pytorch3d, _cuda_package("pytorch3d"), gpu=True),
}
BACKENDS = tuple(_REGISTRY)  # the built-in backends
FALLBACK = "cpu"  # what ``auto`` runs when no GPU backend passed its self-check


class RasterizerFallbackWarning(RuntimeWarning):
    """``auto`` found a GPU rasterizer but did not use it (its self-check failed); CPU runs instead."""


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` resolved to in this process, and why each GPU candidate was or was not taken."""

    name: str
    reasons: dict[str, str]  # GPU candidate -> "passed the self-check" or why it was not chosen


def register_backend(name: str, factory: Callable[[], Rasterizer], available: Callable[[], bool],
                     gpu: bool = False) -> None:
    """Add (or replace) a backend. ``gpu=True`` makes it an ``auto`` candidate (after the built-in
    ones), subject to the self-check. Clears the cached instances and ``auto``'s choice."""
    _REGISTRY[name] = BackendSpec(factory, available, gpu)
    clear_cache()


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend` (built-ins cannot be removed)."""
    if name in BACKENDS:
        raise ValueError(f"{name!r} is a built-in backend")
    _REGISTRY.pop(name, None)
    clear_cache()


def backend_available(name: str) -> bool:
    """Whether a backend can run here (the GPU ones need CUDA and their package)."""
    spec = _REGISTRY.get(name)
    return spec is not None and bool(spec.available())


def available_backends() -> list[str]:
    return [name for name in _REGISTRY if backend_available(name)]


_CACHE: dict[str, Rasterizer] = {}
_AUTO: AutoChoice | None = None
_AUTO_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget the built backends and ``auto``'s choice (the next ``auto`` runs the self-checks again)."""
    global _AUTO
    with _AUTO_LOCK:
        _CACHE.clear()
        _AUTO = None


def auto_choice() -> AutoChoice:
    """Resolve ``auto`` once per process: the first available GPU backend whose self-check against
    the CPU reference passes, else :data:`FALLBACK` with a :class:`RasterizerFallbackWarning` that
    says why each available GPU backend was refused."""
    global _AUTO
    with _AUTO_LOCK:
        if _AUTO is not None:
            return _AUTO
        from backend.render.selfcheck import self_check

        reasons: dict[str, str] = {}
        chosen = FALLBACK
        for name, spec in _REGISTRY.items():
            if not spec.gpu:
                continue
            if not spec.available():
                reasons[name] = "not available (needs CUDA and its package)"
                continue
            try:
                rasterizer = _instance(name)
            except Exception as exc:  # a backend that cannot even start is refused, not fatal
                reasons[name] = f"could not start: {type(exc).__name__}: {exc}"
                continue
            failure = self_check(rasterizer)
            if failure is None:
                reasons[name] = "passed the self-check"
                chosen = name
                break
            reasons[name] = f"failed the self-check: {failure}"
        refused = {n: r for n, r in reasons.items() if r.startswith(("failed", "could not"))}
        if refused:
            detail = "; ".join(f"{n} {r}" for n, r in refused.items())
            how = f"using {chosen!r}" if chosen != FALLBACK else f"rendering on the CPU ({FALLBACK!r})"
            warnings.warn(f"rasterizer 'auto': {detail}; {how}", RasterizerFallbackWarning, stacklevel=3)
        _AUTO = AutoChoice(chosen, reasons)
        return _AUTO


def get_rasterizer(name: str = "auto") -> Rasterizer:
    """Return a rasterizer backend by name; ``auto`` = a GPU backend that passed its start-up
    self-check (:func:`auto_choice`), else the numba CPU one."""
    if name == "auto":
        name = auto_choice().name
    if name not in _REGISTRY:
        raise ValueError(f"unknown rasterizer {name!r}; known: auto, {', '.join(_REGISTRY)}")
    if not backend_available(name):
        raise RuntimeError(f"rasterizer {name!r} needs CUDA and the {name} package, not available here")
    return _instance(name)


def _instance(name: str) -> Rasterizer:
    if name not in _CACHE:
        _CACHE[name] = _REGISTRY[name].factory()
    return _CACHE[name]
