"""Rasterisation core: visibility backends + differentiable per-pixel ops + camera helpers.

    from backend.render import get_rasterizer, interpolate, texture, antialias, world_to_clip
    rast = get_rasterizer("auto")   # a GPU backend that passed its self-check, else the numba CPU one
    r = rast.rasterize(verts_clip, faces, resolution=(H, W))
    rgb = texture(tex, interpolate(uv, r, faces))

Conventions and the backend comparison live in ``docs/rendering.md``.
"""

from backend.render.api import (
    BACKENDS,
    AutoChoice,
    Raster,
    Rasterizer,
    RasterizerFallbackWarning,
    auto_choice,
    available_backends,
    backend_available,
    get_rasterizer,
    register_backend,
)
from backend.render.camera import opencv_to_clip, project_points, world_to_camera, world_to_clip
from backend.render.ops import antialias, interpolate, texture

__all__ = [
    "BACKENDS",
    "AutoChoice",
    "Raster",
    "Rasterizer",
    "RasterizerFallbackWarning",
    "antialias",
    "auto_choice",
    "available_backends",
    "backend_available",
    "get_rasterizer",
    "interpolate",
    "opencv_to_clip",
    "project_points",
    "register_backend",
    "texture",
    "world_to_camera",
    "world_to_clip",
]
