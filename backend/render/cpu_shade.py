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
    # v up (row 0 is v = 1), coordinates clamped to the border texels. The four weights are formed
    # once in float32 (a third faster than two lerps in float64; same values to ~1e-7).
    height, width, channels = tex.shape
    x = min(max(u * width - 0.5, 0.0), width - 1.0)
    y = min(max((1.0 - v) * height - 0.5, 0.0), height - 1.0)
    x0 = int(x)  # x, y >= 0 here: truncation is floor
    y0 = int(y)
    x1 = min(x0 + 1, width - 1)
    y1 = min(y0 + 1, height - 1)
    fx = np.float32(x - x0)
    fy = np.float32(y - y0)
    one = np.float32(1.0)
    w00 = (one - fx) * (one - fy)
    w01 = fx * (one - fy)
    w10 = (one - fx) * fy
    w11 = fx * fy
    for c in range(channels):
        out[c] = tex[y0, x0, c] * w00 + tex[y0, x1, c] * w01 + tex[y1, x0, c] * w10 + tex[y1, x1, c] * w11


@numba.njit(cache=True, nogil=True)
def vertex_normals_into(verts: np.ndarray, faces: np.ndarray, out: np.ndarray) -> None:
    """Area-weighted unit vertex normals (B,V,3) of ``verts`` written into ``out``, as
    ``backend.mesh.normals.vertex_normals`` computes them (no autograd)."""
    batch, n_verts = verts.shape[0], verts.shape[1]
    out[:] = 0.0
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


@numba.njit(cache=True, nogil=True)
def shade_rows(b: int, row_lo: int, row_hi: int, tri: np.ndarray, bary: np.ndarray, faces: np.ndarray,
               normals: np.ndarray, rotations: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
               texture: np.ndarray, colors: np.ndarray, labels: np.ndarray, base_color: np.ndarray,
               light: np.ndarray, ambient: float, background: np.ndarray, mode: int, lambert: bool,
               rgb: np.ndarray, alpha: np.ndarray, normal_cam: np.ndarray, normal_world: np.ndarray,
               uv_out: np.ndarray, part: np.ndarray) -> None:
    """Write every pixel of rows [row_lo, row_hi) of image ``b`` of each requested pass.
    ``mode``: 0 base colour, 1 vertex colours, 2 texture.

    Arrays: tri (B,H,W), bary (B,H,W,2), normals (B,V,3) unit vertex normals, rotations (B,3,3),
    uv (Vt,2) with uv_faces (F,3), labels (V,) (empty = none), light (3,) unit. Outputs are
    (B,H,W[,C]), need no initialisation (background: rgb = background, alpha/normals/uv 0,
    part -1). An output with zero size is a pass that was not asked for and is skipped, together
    with whatever only it needs.
    """
    width = tri.shape[2]
    channels = background.shape[0]
    want_rgb = rgb.size > 0
    want_alpha = alpha.size > 0
    want_ncam = normal_cam.size > 0
    want_nworld = normal_world.size > 0
    want_uv = uv_out.size > 0
    want_part = part.size > 0
    need_normals = want_ncam or want_nworld or (want_rgb and lambert)
    need_uv = want_uv or (want_rgb and mode == 2)
    has_uv = uv.shape[0] > 0
    has_labels = labels.shape[0] > 0
    albedo = np.empty(channels, dtype=np.float32)
    # Background first, as slice fills (memset speed), then the covered pixels over it.
    if want_rgb:
        for c in range(channels):
            rgb[b, row_lo:row_hi, :, c] = background[c]
    if want_alpha:
        alpha[b, row_lo:row_hi] = 0.0
    if want_ncam:
        normal_cam[b, row_lo:row_hi] = 0.0
    if want_nworld:
        normal_world[b, row_lo:row_hi] = 0.0
    if want_uv:
        uv_out[b, row_lo:row_hi] = 0.0
    if want_part:
        part[b, row_lo:row_hi] = -1
    for y in range(row_lo, row_hi):
        for x in range(width):
            f = tri[b, y, x]
            if f < 0:
                continue
            if want_alpha:
                alpha[b, y, x] = 1.0
            l1 = bary[b, y, x, 0]
            l2 = bary[b, y, x, 1]
            l0 = np.float32(1.0) - l1 - l2  # float32 like the torch path (ties in part labels)
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            cx = cy = cz = 0.0
            if need_normals:
                nx = l0 * normals[b, i0, 0] + l1 * normals[b, i1, 0] + l2 * normals[b, i2, 0]
                ny = l0 * normals[b, i0, 1] + l1 * normals[b, i1, 1] + l2 * normals[b, i2, 1]
                nz = l0 * normals[b, i0, 2] + l1 * normals[b, i1, 2] + l2 * normals[b, i2, 2]
                norm = max(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
                nx, ny, nz = nx / norm, ny / norm, nz / norm
                cx = rotations[b, 0, 0] * nx + rotations[b, 0, 1] * ny + rotations[b, 0, 2] * nz
                cy = rotations[b, 1, 0] * nx + rotations[b, 1, 1] * ny + rotations[b, 1, 2] * nz
                cz = rotations[b, 2, 0] * nx + rotations[b, 2, 1] * ny + rotations[b, 2, 2] * nz
                if want_nworld:
                    normal_world[b, y, x, 0] = nx
                    normal_world[b, y, x, 1] = ny
                    normal_world[b, y, x, 2] = nz
                if want_ncam:
                    normal_cam[b, y, x, 0] = cx
                    normal_cam[b, y, x, 1] = cy
                    normal_cam[b, y, x, 2] = cz
            tu = tv = 0.0
            if need_uv and has_uv:
                t0, t1, t2 = uv_faces[f, 0], uv_faces[f, 1], uv_faces[f, 2]
                tu = uv[t0, 0] + l1 * (uv[t1, 0] - uv[t0, 0]) + l2 * (uv[t2, 0] - uv[t0, 0])
                tv = uv[t0, 1] + l1 * (uv[t1, 1] - uv[t0, 1]) + l2 * (uv[t2, 1] - uv[t0, 1])
            if want_uv:
                uv_out[b, y, x, 0] = tu
                uv_out[b, y, x, 1] = tv
            if want_rgb:
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
            if want_part:
                if has_labels:
                    corner = i0
                    if l1 > l0 and l1 >= l2:
                        corner = i1
                    elif l2 > l0:
                        corner = i2
                    part[b, y, x] = labels[corner]
                else:
                    part[b, y, x] = -1


@numba.njit(cache=True, nogil=True)
def project_joints_into(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, depth: np.ndarray,
                        near: float, tolerance: float, xy: np.ndarray, z: np.ndarray,
                        visible: np.ndarray) -> None:
    """Pixel positions, camera depth and depth-tested visibility of (B or 1, J, 3) world points in
    B cameras (see ``passes.project_joints``): one loop instead of ~25 small numpy calls."""
    batch, height, width = depth.shape
    for b in range(batch):
        pb = b if points.shape[0] > 1 else 0
        for j in range(points.shape[1]):
            px, py, pz = points[pb, j, 0], points[pb, j, 1], points[pb, j, 2]
            cx = R[b, 0, 0] * px + R[b, 0, 1] * py + R[b, 0, 2] * pz + t[b, 0]
            cy = R[b, 1, 0] * px + R[b, 1, 1] * py + R[b, 1, 2] * pz + t[b, 1]
            cz = R[b, 2, 0] * px + R[b, 2, 1] * py + R[b, 2, 2] * pz + t[b, 2]
            hx = K[b, 0, 0] * cx + K[b, 0, 1] * cy + K[b, 0, 2] * cz
            hy = K[b, 1, 0] * cx + K[b, 1, 1] * cy + K[b, 1, 2] * cz
            hz = max(K[b, 2, 0] * cx + K[b, 2, 1] * cy + K[b, 2, 2] * cz, 1e-9)
            u = hx / hz
            v = hy / hz
            xy[b, j, 0] = u
            xy[b, j, 1] = v
            z[b, j] = cz
            col = int(np.floor(u))
            row = int(np.floor(v))
            inside = cz > near and 0 <= col < width and 0 <= row < height
            visible[b, j] = inside and cz <= depth[b, row, col] + tolerance
