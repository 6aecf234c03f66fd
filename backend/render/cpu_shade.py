"""Fused CPU shading of all passes for the no-gradient case (numba).

``render_passes`` computes passes with torch ops at the covered pixels; that path is the one that
autograd needs. When nothing requires a gradient (previews, dataset rendering) the same arithmetic
runs here in one compiled loop per pixel, without the dozens of intermediate tensors, which
measured several times faster on a shared 2-core CPU. ``tests/render/test_passes.py`` checks that
both paths give the same images.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear(tex: np.ndarray, u: float, v: float, out: np.ndarray) -> None:
    # grid_sample(align_corners=False, padding_mode="border"): texel centres at (i + 0.5) / size,
    # v up (row 0 is v = 1), coordinates clamped to the border texels.
    height, width, channels = tex.shape
    x = min(max(u * width - 0.5, 0.0), width - 1.0)
    y = min(max((1.0 - v) * height - 0.5, 0.0), height - 1.0)
    x0 = int(np.floor(x))
    y0 = int(np.floor(y))
    x1 = min(x0 + 1, width - 1)
    y1 = min(y0 + 1, height - 1)
    fx = x - x0
    fy = y - y0
    for c in range(channels):
        top = tex[y0, x0, c] * (1.0 - fx) + tex[y0, x1, c] * fx
        bottom = tex[y1, x0, c] * (1.0 - fx) + tex[y1, x1, c] * fx
        out[c] = top * (1.0 - fy) + bottom * fy


@numba.njit(cache=True, nogil=True)
def vertex_normals_np(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (B,V,3), as ``passes.vertex_normals`` (no autograd)."""
    batch, n_verts = verts.shape[0], verts.shape[1]
    out = np.zeros((batch, n_verts, 3), dtype=np.float32)
    for b in range(batch):
        for f in range(faces.shape[0]):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            ax = verts[b, i1, 0] - verts[b, i0, 0]
            ay = verts[b, i1, 1] - verts[b, i0, 1]
            az = verts[b, i1, 2] - verts[b, i0, 2]
            bx = verts[b, i2, 0] - verts[b, i0, 0]
            by = verts[b, i2, 1] - verts[b, i0, 1]
            bz = verts[b, i2, 2] - verts[b, i0, 2]
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            for i in (i0, i1, i2):
                out[b, i, 0] += nx
                out[b, i, 1] += ny
                out[b, i, 2] += nz
        for v in range(n_verts):
            norm = max(np.sqrt(out[b, v, 0] ** 2 + out[b, v, 1] ** 2 + out[b, v, 2] ** 2), 1e-12)
            out[b, v, 0] /= norm
            out[b, v, 1] /= norm
            out[b, v, 2] /= norm
    return out


def _shade_passes_py(tri: np.ndarray, bary: np.ndarray, faces: np.ndarray, normals: np.ndarray,
                 rotations: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray, texture: np.ndarray,
                 colors: np.ndarray, labels: np.ndarray, base_color: np.ndarray, light: np.ndarray,
                 ambient: float, background: np.ndarray, mode: int, lambert: bool,
                 rgb: np.ndarray, normal_cam: np.ndarray, normal_world: np.ndarray, uv_out: np.ndarray,
                 part: np.ndarray) -> None:
    """Fill the pass images at covered pixels. ``mode``: 0 base colour, 1 vertex colours, 2 texture.


    Arrays: tri (B,H,W), bary (B,H,W,2), normals (B,V,3) unit vertex normals, rotations (B,3,3),
    uv (Vt,2) with uv_faces (F,3), labels (V,) (empty = none), light (3,) unit, outputs (B,H,W,...)
    already holding the background (rgb = background, normals/uv 0, part -1).
    """
    batch, height, width = tri.shape
    channels = rgb.shape[3]
    for row in numba.prange(batch * height):
        b = row // height
        y = row % height
        albedo = np.empty(channels, dtype=np.float32)
        for x in range(width):
            f = tri[b, y, x]
            if f < 0:  # outputs arrive pre-filled with the background values
                continue
            l1 = bary[b, y, x, 0]
            l2 = bary[b, y, x, 1]
            l0 = np.float32(1.0) - l1 - l2  # float32 like the torch path (ties in part labels)
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            nx = l0 * normals[b, i0, 0] + l1 * normals[b, i1, 0] + l2 * normals[b, i2, 0]
            ny = l0 * normals[b, i0, 1] + l1 * normals[b, i1, 1] + l2 * normals[b, i2, 1]
            nz = l0 * normals[b, i0, 2] + l1 * normals[b, i1, 2] + l2 * normals[b, i2, 2]
            norm = max(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
            nx, ny, nz = nx / norm, ny / norm, nz / norm
            normal_world[b, y, x, 0] = nx
            normal_world[b, y, x, 1] = ny
            normal_world[b, y, x, 2] = nz
            cx = rotations[b, 0, 0] * nx + rotations[b, 0, 1] * ny + rotations[b, 0, 2] * nz
            cy = rotations[b, 1, 0] * nx + rotations[b, 1, 1] * ny + rotations[b, 1, 2] * nz
            cz = rotations[b, 2, 0] * nx + rotations[b, 2, 1] * ny + rotations[b, 2, 2] * nz
            normal_cam[b, y, x, 0] = cx
            normal_cam[b, y, x, 1] = cy
            normal_cam[b, y, x, 2] = cz
            if uv.shape[0] > 0:
                t0, t1, t2 = uv_faces[f, 0], uv_faces[f, 1], uv_faces[f, 2]
                tu = uv[t0, 0] + l1 * (uv[t1, 0] - uv[t0, 0]) + l2 * (uv[t2, 0] - uv[t0, 0])
                tv = uv[t0, 1] + l1 * (uv[t1, 1] - uv[t0, 1]) + l2 * (uv[t2, 1] - uv[t0, 1])
                uv_out[b, y, x, 0] = tu
                uv_out[b, y, x, 1] = tv
            else:
                tu = 0.0
                tv = 0.0
                uv_out[b, y, x, 0] = 0.0
                uv_out[b, y, x, 1] = 0.0
            if mode == 2:
                _bilinear(texture, tu, tv, albedo)
            elif mode == 1:
                for c in range(channels):
                    albedo[c] = l0 * colors[i0, c] + l1 * colors[i1, c] + l2 * colors[i2, c]
            else:
                for c in range(channels):
                    albedo[c] = base_color[c]
            shade = 1.0
            if lambert:
                d = max(cx * light[0] + cy * light[1] + cz * light[2], 0.0)
                shade = ambient + (1.0 - ambient) * d
            for c in range(channels):
                rgb[b, y, x, c] = albedo[c] * shade
            if labels.shape[0] > 0:
                corner = i0
                if l1 > l0 and l1 >= l2:
                    corner = i1
                elif l2 > l0:
                    corner = i2
                part[b, y, x] = labels[corner]
            else:
                part[b, y, x] = -1


# Serial by default, like the rasterizer (see backend.render.cpu_numba for the measurement).
shade_passes = numba.njit(cache=True, nogil=True)(_shade_passes_py)
shade_passes_parallel = numba.njit(cache=True, nogil=True, parallel=True)(_shade_passes_py)
