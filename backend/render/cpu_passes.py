"""The no-gradient CPU render: rasterisation and every requested pass in one threaded dispatch.

:func:`backend.render.passes.render_passes` calls this when nothing needs a gradient and the
tensors are on the CPU (previews, dataset rendering, benchmarks). Inputs become numpy views, the
image passes are computed by the numba kernel :func:`backend.render.cpu_shade.shade_rows`, and
with the numba rasterizer each band of rows is shaded by the thread that rasterised it, right
after, while its rows are in cache; vertex normals are computed beside the triangle setup. Other
rasterizers (``torch_ref``; CUDA backends never get here) rasterise first and are shaded in bands
after. ``tests/render/test_passes.py`` checks the result against the torch path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from backend.render.api import Raster, Rasterizer
from backend.render.bands import band_rows, default_threads, run_bands
from backend.render.camera import CameraBatch
from backend.render.cpu_numba import NumbaRasterizer, raster_band
from backend.render.cpu_shade import shade_rows, vertex_normals_into

if TYPE_CHECKING:
    from backend.render.passes import Mesh


@dataclass
class Shading:
    """How to colour the mesh: the render_passes arguments, resolved to numpy."""

    mode: int  # 0 base colour, 1 vertex colours, 2 texture
    texture: np.ndarray  # (Ht,Wt,C) float32
    colors: np.ndarray  # (V,3) or (0,3)
    uv: np.ndarray  # (Vt,2) or (0,2)
    uv_faces: np.ndarray  # (F,3) int64
    labels: np.ndarray  # (V,) or (0,) int64
    base_color: np.ndarray  # (3,)
    background: np.ndarray  # (C,)
    light: np.ndarray  # (3,) unit, camera axes, towards the light
    ambient: float
    lambert: bool


def resolve_shading(mesh: Mesh, faces: Tensor, shading: str, base_color: tuple[float, float, float],
                    background: tuple[float, float, float], light_dir_cam: tuple[float, float, float],
                    ambient: float) -> Shading:
    """numpy views of a :class:`~backend.render.passes.Mesh`'s appearance (no copies of the texture)."""
    texture_t, uv_t, uv_faces_t = mesh.texture, mesh.uv, mesh.uv_faces
    colors_t, labels_t = mesh.vertex_colors, mesh.part_labels
    if texture_t is not None and uv_t is not None:
        texture = texture_t.detach().float().reshape(texture_t.shape[-3:]).numpy()
        mode = 2
    else:
        texture = np.zeros((1, 1, 3), dtype=np.float32)
        mode = 1 if colors_t is not None else 0
    channels = texture.shape[-1] if mode == 2 else 3
    light = np.asarray(light_dir_cam, dtype=np.float32)
    light = light / max(float(np.sqrt(light @ light)), 1e-12)
    bg = np.zeros(channels, dtype=np.float32)
    bg[: min(3, channels)] = np.asarray(background, dtype=np.float32)[: min(3, channels)]
    return Shading(
        mode=mode,
        texture=np.ascontiguousarray(texture),
        colors=(np.ascontiguousarray(colors_t.detach().float().numpy()) if colors_t is not None
                else np.zeros((0, 3), dtype=np.float32)),
        uv=(np.ascontiguousarray(uv_t.detach().float().numpy()) if uv_t is not None
            else np.zeros((0, 2), dtype=np.float32)),
        uv_faces=np.ascontiguousarray((faces if uv_faces_t is None else uv_faces_t).to(torch.int64).numpy()),
        labels=(np.ascontiguousarray(labels_t.to(torch.int64).numpy()) if labels_t is not None
                else np.zeros(0, dtype=np.int64)),
        base_color=np.asarray(base_color, dtype=np.float32),
        background=bg,
        light=light,
        ambient=float(ambient),
        lambert=shading == "lambert",
    )


def render_images(verts: Tensor, faces: Tensor, clip: Tensor, cameras: CameraBatch, rasterizer: Rasterizer,
                  wanted: set[str], look: Shading, threads: int | None = None
                  ) -> tuple[Raster, dict[str, Tensor]]:
    """Rasterise and compute the requested image passes. Returns the raster and {pass: tensor}."""
    threads = threads or default_threads()
    batch, height, width = len(cameras), cameras.height, cameras.width
    rows = batch * height
    channels = look.background.shape[0]

    def image(name: str, *tail: int, dtype: type = np.float32) -> np.ndarray:
        # Unrequested passes get an empty array of the same rank: the kernel skips them.
        shape = (batch, height, width, *tail) if name in wanted else (0,) * (3 + len(tail))
        return np.empty(shape, dtype=dtype)

    images = {"rgb": image("rgb", channels), "alpha": image("alpha"), "normal_cam": image("normal_cam", 3),
              "normal_world": image("normal_world", 3), "uv": image("uv", 2),
              "part": image("part", dtype=np.int64)}
    need_normals = bool({"normal_cam", "normal_world"} & wanted) or ("rgb" in wanted and look.lambert)
    verts_np = np.ascontiguousarray(verts.detach().float().numpy())
    faces_np = np.ascontiguousarray(faces.numpy())
    normals = np.empty((batch, verts_np.shape[1] if need_normals else 0, 3), dtype=np.float32)
    rotations = np.ascontiguousarray(cameras.R.detach().numpy())

    def compute_normals() -> None:
        if need_normals:
            vertex_normals_into(verts_np, faces_np, normals)

    def shading_args(tri: np.ndarray, bary: np.ndarray) -> tuple:
        return (tri, bary, faces_np, normals, rotations, look.uv, look.uv_faces, look.texture, look.colors,
                look.labels, look.base_color, look.light, look.ambient, look.background, look.mode,
                look.lambert, images["rgb"], images["alpha"], images["normal_cam"], images["normal_world"],
                images["uv"], images["part"])

    if isinstance(rasterizer, NumbaRasterizer):
        plan, clip_t, faces_t = rasterizer.plan(clip, faces, cameras.resolution, threads)
        tail = shading_args(plan.tri, plan.bary)[2:]

        def band(job: int) -> None:
            # Shaded right after it is rasterised, by the same thread. Two numba calls, not one
            # kernel calling both: the combined kernel measured ~12 % slower (LLVM optimises the
            # inlined pair worse) than the extra GIL hand-over costs.
            b, bin_lo, bin_hi = plan.band(job)
            raster_band(*plan.raster_args(b, bin_lo, bin_hi))
            shade_rows(b, *plan.rows(bin_lo, bin_hi), plan.tri, plan.bary, *tail)

        run_bands(band, plan.n_band_jobs, plan.threads, prologue=[*plan.setup_jobs(), compute_normals])
        r = plan.raster(clip_t, faces_t)
    else:
        r = rasterizer.rasterize(clip, faces, cameras.resolution)
        compute_normals()
        args = shading_args(np.ascontiguousarray(r.tri_id.numpy()),
                            np.ascontiguousarray(r.bary.detach().float().numpy()))
        # Shading cost follows the covered pixels, uneven over the rows: a few bands per thread.
        n_bands = min(rows, 4 * threads) if threads > 1 else 1

        def shade_band(band: int) -> None:
            lo, hi = band_rows(rows, n_bands, band)
            for b in range(lo // height, (hi - 1) // height + 1):  # a band may span images
                shade_rows(b, max(lo - b * height, 0), min(hi - b * height, height), *args)

        run_bands(shade_band, n_bands, threads)
    return r, {name: torch.from_numpy(array) for name, array in images.items() if name in wanted}

