"""Per-pixel shading of a clip frame and its optical flow: numba kernels over the rasterizer's output.

The rasterizer gives, per pixel, the covering triangle and its perspective-correct barycentrics;
everything here starts from those. :func:`shade_frame` computes the albedo (vertex colours, or a
bilinear texture lookup through the face's UVs for avatar people), lights it with the clip's SH
environment and key light (shadowed by a PCF-filtered shadow map), intersects the other pixels'
rays with the ground plane y = 0 (its texture, the key light's shadows and a contact darkening from
spheres at the people's feet and knees) and puts the background behind the rest. :func:`flow_frame`
moves each visible surface point (the same barycentrics over the next frame's vertices) into the
next frame's camera. Both run per frame, without the GIL (the clip writer runs them in its encoder
threads, beside the next frames' rasterisation).
"""

from __future__ import annotations

import math

import numba
import numpy as np

PCF_RADIUS = 1.5  # texels: the penumbra width of the key light's shadows
TEXTURE_DETAIL = 8.0  # texels: the ground texture's finest feature, for its distance blur
CONTACT_REACH = 8.0  # a contact sphere darkens the ground within this many radii
SHADOW_BLOCK = 8  # texels per side of a shadow_blocks cell


@numba.njit(cache=True, nogil=True)
def shadow_blocks(shadow: np.ndarray) -> np.ndarray:
    """The nearest depth in each SHADOW_BLOCK x SHADOW_BLOCK cell of a shadow map (inf: empty)."""
    size_y, size_x = shadow.shape
    ny = (size_y + SHADOW_BLOCK - 1) // SHADOW_BLOCK
    nx = (size_x + SHADOW_BLOCK - 1) // SHADOW_BLOCK
    out = np.full((max(ny, 1), max(nx, 1)), np.inf, dtype=np.float32)
    for y in range(size_y):
        for x in range(size_x):
            d = shadow[y, x]
            if d < out[y // SHADOW_BLOCK, x // SHADOW_BLOCK]:
                out[y // SHADOW_BLOCK, x // SHADOW_BLOCK] = d
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _sh_eval(sh: np.ndarray, x: float, y: float, z: float, c: int) -> float:
    return (sh[0, c] * 0.282095 + sh[1, c] * 0.488603 * y + sh[2, c] * 0.488603 * z + sh[3, c] * 0.488603 * x
            + sh[4, c] * 1.092548 * x * y + sh[5, c] * 1.092548 * y * z
            + sh[6, c] * 0.315392 * (3.0 * z * z - 1.0) + sh[7, c] * 1.092548 * x * z
            + sh[8, c] * 0.546274 * (x * x - y * y))


@numba.njit(cache=True, nogil=True, inline="always")
def light_uvz(px: float, py: float, pz: float, LR: np.ndarray, Lt: np.ndarray, focal: float,
              centre: float) -> tuple[float, float, float]:
    """Shadow-map texel coordinates (u, v; texel centres at integers) and light depth of a world point."""
    lx = LR[0, 0] * px + LR[0, 1] * py + LR[0, 2] * pz + Lt[0]
    ly = LR[1, 0] * px + LR[1, 1] * py + LR[1, 2] * pz + Lt[1]
    lz = LR[2, 0] * px + LR[2, 1] * py + LR[2, 2] * pz + Lt[2]
    if lz <= 0.0:
        return -1e9, -1e9, lz
    return focal * lx / lz + centre - 0.5, focal * ly / lz + centre - 0.5, lz


@numba.njit(cache=True, nogil=True, inline="always")
def pcf(u: float, v: float, ref: float, shadow: np.ndarray, blocks: np.ndarray) -> float:
    """Fraction of the key light reaching a point at texel (u, v) and light depth ``ref`` (1 lit,
    0 shadowed): four bilinear depth comparisons on a rotated grid of radius PCF_RADIUS texels
    (percentage-closer filtering). Outside the map is lit. ``blocks`` (:func:`shadow_blocks`)
    answers most points without reading the map: nothing in front of them near their texel."""
    size = shadow.shape[0]
    reach = PCF_RADIUS + 1.0
    if u < -reach or v < -reach or u > size + reach or v > size + reach:
        return 1.0
    bx0 = max(math.floor((u - reach) / SHADOW_BLOCK), 0)
    bx1 = min(math.floor((u + reach) / SHADOW_BLOCK), blocks.shape[1] - 1)
    by0 = max(math.floor((v - reach) / SHADOW_BLOCK), 0)
    by1 = min(math.floor((v + reach) / SHADOW_BLOCK), blocks.shape[0] - 1)
    nearest = np.inf
    for by in range(by0, by1 + 1):
        for bx in range(bx0, bx1 + 1):
            nearest = min(nearest, blocks[by, bx])
    if ref <= nearest:
        return 1.0  # every comparison below would say lit
    lit = 0.0
    r, q = PCF_RADIUS, PCF_RADIUS / 3.0
    for k in range(4):
        du = -r if k == 0 else (q if k == 1 else (r if k == 2 else -q))
        dv = -q if k == 0 else (-r if k == 1 else (q if k == 2 else r))
        su = u + du
        sv = v + dv
        x0 = math.floor(su)
        y0 = math.floor(sv)
        fx = su - x0
        fy = sv - y0
        for j in range(2):
            yy = y0 + j
            wy = fy if j == 1 else 1.0 - fy
            for i in range(2):
                xx = x0 + i
                wx = fx if i == 1 else 1.0 - fx
                if 0 <= xx < size and 0 <= yy < size and ref > shadow[yy, xx]:
                    continue
                lit += wx * wy
    return lit * 0.25


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear(tex: np.ndarray, offset: int, w: int, h: int, x: float, y: float, wrap: bool,
              out: np.ndarray) -> None:
    """Bilinear lookup at texel coordinates (x, y) (pixel centres at integers) of a (h*w, 3)
    texture stored flat from ``offset``; clamped at the border, or wrapped (``wrap``)."""
    x0 = math.floor(x)
    y0 = math.floor(y)
    fx = x - x0
    fy = y - y0
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    for j in range(2):
        yy = y0 + j
        yy = yy % h if wrap else min(max(yy, 0), h - 1)
        wy = fy if j == 1 else 1.0 - fy
        for i in range(2):
            xx = x0 + i
            xx = xx % w if wrap else min(max(xx, 0), w - 1)
            wgt = wy * (fx if i == 1 else 1.0 - fx)
            base = offset + yy * w + xx
            out[0] += wgt * tex[base, 0]
            out[1] += wgt * tex[base, 1]
            out[2] += wgt * tex[base, 2]


@numba.njit(cache=True, nogil=True)
def ground_base(Kinv: np.ndarray, R: np.ndarray, C: np.ndarray, focal: float, sh: np.ndarray,
                key_dir: np.ndarray, key_rgb: np.ndarray, ground_on: bool, gtex: np.ndarray,
                gmean: np.ndarray, g_rot: np.ndarray, g_off: np.ndarray, g_tile: float, fade_lo: float,
                fade_hi: float, far: float, LR: np.ndarray, Lt: np.ndarray, l_focal: float, l_centre: float,
                normal_offset: float, background: np.ndarray, amb: np.ndarray, key: np.ndarray,
                bg: np.ndarray, depth: np.ndarray, xz: np.ndarray, luv: np.ndarray) -> None:
    """What one camera sees of the ground and background without the people, as the terms the
    per-frame shading combines (computed once per camera pose: a fixed camera reuses them):
    ``bg`` the background (times the distance fade on the ground), ``amb`` and ``key`` the ground's
    ambient and key-light colours (times 1 - fade; the frame multiplies them by the contact
    darkening and the shadow), ``depth`` the ground's camera z (0: no ground), ``xz`` its point and
    ``luv`` where it falls in the key light's shadow map (texel u, v and light depth; the light is
    fixed for the clip, so these are per camera pose too)."""
    H, W = background.shape[0], background.shape[1]
    gsize_w = gtex.shape[1]
    gsize_h = gtex.shape[0]
    gflat = gtex.reshape(gsize_h * gsize_w, 3)
    alb = np.empty(3)
    up_amb = np.empty(3)
    for c in range(3):
        up_amb[c] = max(_sh_eval(sh, 0.0, 1.0, 0.0, c), 0.0)
    key_up = max(key_dir[1], 0.0)
    for y in range(H):
        for x in range(W):
            for c in range(3):
                bg[y, x, c] = background[y, x, c]
                amb[y, x, c] = 0.0
                key[y, x, c] = 0.0
            depth[y, x] = 0.0
            if not (ground_on and C[1] > 0.0):
                continue
            cx = Kinv[0, 0] * (x + 0.5) + Kinv[0, 1] * (y + 0.5) + Kinv[0, 2]
            cy = Kinv[1, 0] * (x + 0.5) + Kinv[1, 1] * (y + 0.5) + Kinv[1, 2]
            cz = Kinv[2, 0] * (x + 0.5) + Kinv[2, 1] * (y + 0.5) + Kinv[2, 2]
            dy = R[0, 1] * cx + R[1, 1] * cy + R[2, 1] * cz
            if dy >= 0.0:
                continue
            s = -C[1] / dy  # camera z of the ground point (the ray has z = 1 in the camera)
            if s >= far:
                continue
            dx = R[0, 0] * cx + R[1, 0] * cy + R[2, 0] * cz
            dz = R[0, 2] * cx + R[1, 2] * cy + R[2, 2] * cz
            gx = C[0] + s * dx
            gz = C[2] + s * dz
            depth[y, x] = s
            xz[y, x, 0] = gx
            xz[y, x, 1] = gz
            lu, lv, lz = light_uvz(gx, normal_offset, gz, LR, Lt, l_focal, l_centre)
            luv[y, x, 0] = lu
            luv[y, x, 1] = lv
            luv[y, x, 2] = lz
            tu = (g_rot[0, 0] * gx + g_rot[0, 1] * gz + g_off[0]) / g_tile
            tv = (g_rot[1, 0] * gx + g_rot[1, 1] * gz + g_off[1]) / g_tile
            _bilinear(gflat, 0, gsize_w, gsize_h, tu * gsize_w - 0.5, tv * gsize_h - 0.5, True, alb)
            # Far away a pixel covers many texels: blend towards the mean (no moire). Textures are
            # taken as detailed to ~TEXTURE_DETAIL texels; the footprint grows as 1/sqrt(cos) of
            # the incidence (between the two axes' growth).
            ray = math.sqrt(dx * dx + dy * dy + dz * dz)
            texels = s * ray / focal / math.sqrt(max(-dy / ray, 0.01)) * gsize_w / g_tile
            blur = min(max((texels / TEXTURE_DETAIL - 0.5) / 1.5, 0.0), 1.0)
            fade = min(max((s - fade_lo) / (fade_hi - fade_lo), 0.0), 1.0)
            for c in range(3):
                a = alb[c] + (gmean[c] - alb[c]) * blur
                amb[y, x, c] = a * up_amb[c] * (1.0 - fade)
                key[y, x, c] = a * key_rgb[c] * key_up * (1.0 - fade)
                bg[y, x, c] = background[y, x, c] * fade


@numba.njit(cache=True, nogil=True)
def shade_frame(tri: np.ndarray, bary: np.ndarray, depth: np.ndarray, ncam: np.ndarray, R: np.ndarray,
                faces: np.ndarray, face_person: np.ndarray, person_tex: np.ndarray, colors: np.ndarray,
                uvs: np.ndarray, tex: np.ndarray, tex_off: np.ndarray, tex_w: np.ndarray, tex_h: np.ndarray,
                sh: np.ndarray, key_dir: np.ndarray, key_rgb: np.ndarray,
                shadow: np.ndarray, LR: np.ndarray, Lt: np.ndarray, l_focal: float, l_centre: float,
                bias: float, normal_offset: float, spheres: np.ndarray, contact: float, box: np.ndarray,
                Kinv: np.ndarray, C: np.ndarray, g_amb: np.ndarray, g_key: np.ndarray, g_bg: np.ndarray,
                g_depth: np.ndarray, g_xz: np.ndarray, g_luv: np.ndarray, dynamic: np.ndarray,
                rgb_out: np.ndarray, scene_depth: np.ndarray) -> None:
    """One frame's RGB (uint8, into ``rgb_out`` (H,W,3) unless it is empty) and scene depth (people
    and ground, 0 elsewhere; into ``scene_depth`` (H,W) unless empty), from the raster and the
    camera's :func:`ground_base` terms. ``shadow`` (S,S) is the key light's depth map (empty: no
    shadows); ``spheres`` (M,4) the contact occluders (x, y, z, r), ``box`` their reach on the ground.

    ``rgb_out`` comes in holding the ground and background lit without shadows or contact (the
    camera's static image): only the people and the ground pixels inside ``dynamic`` (x0, x1, y0,
    y1: the image box of the ground the people can shadow or darken) are shaded here."""
    H, W = tri.shape
    do_rgb = rgb_out.shape[0] > 0
    do_depth = scene_depth.shape[0] > 0
    has_shadow = shadow.shape[0] > 0
    blocks = shadow_blocks(shadow)
    # The texels with an occluder, widened by the filter's reach: ground outside is lit.
    occupied = np.array([np.inf, -np.inf, np.inf, -np.inf])
    for by in range(blocks.shape[0]):
        for bx in range(blocks.shape[1]):
            if blocks[by, bx] < np.inf:
                occupied[0] = min(occupied[0], bx * SHADOW_BLOCK - PCF_RADIUS - 1.0)
                occupied[1] = max(occupied[1], (bx + 1) * SHADOW_BLOCK + PCF_RADIUS + 1.0)
                occupied[2] = min(occupied[2], by * SHADOW_BLOCK - PCF_RADIUS - 1.0)
                occupied[3] = max(occupied[3], (by + 1) * SHADOW_BLOCK + PCF_RADIUS + 1.0)
    alb = np.empty(3)
    for y in range(H):
        for x in range(W):
            f = tri[y, x]
            if f < 0:
                sd = g_depth[y, x]
                if do_depth:
                    scene_depth[y, x] = sd
                if not do_rgb or not (dynamic[0] <= x <= dynamic[1] and dynamic[2] <= y <= dynamic[3]):
                    continue
                r = g_bg[y, x, 0]
                g = g_bg[y, x, 1]
                b = g_bg[y, x, 2]
                if sd > 0.0:
                    gx = g_xz[y, x, 0]
                    gz = g_xz[y, x, 1]
                    ao = 1.0
                    if contact > 0.0 and box[0] <= gx <= box[1] and box[2] <= gz <= box[3]:
                        for k in range(spheres.shape[0]):
                            vx = spheres[k, 0] - gx
                            vy = spheres[k, 1]
                            vz = spheres[k, 2] - gz
                            rad = spheres[k, 3]
                            d2 = vx * vx + vy * vy + vz * vz
                            if d2 > (CONTACT_REACH * rad) ** 2 or vy <= 0.0:
                                continue
                            occ = vy / math.sqrt(d2) * rad * rad / d2
                            ao *= 1.0 - contact * min(occ, 1.0)
                    direct = 1.0
                    if has_shadow and g_key[y, x, 0] + g_key[y, x, 1] + g_key[y, x, 2] > 0.0:
                        lu = g_luv[y, x, 0]
                        lv = g_luv[y, x, 1]
                        if occupied[0] <= lu <= occupied[1] and occupied[2] <= lv <= occupied[3]:
                            direct = pcf(lu, lv, g_luv[y, x, 2] - bias, shadow, blocks)
                    r += g_amb[y, x, 0] * ao + g_key[y, x, 0] * direct
                    g += g_amb[y, x, 1] * ao + g_key[y, x, 1] * direct
                    b += g_amb[y, x, 2] * ao + g_key[y, x, 2] * direct
            else:
                d = depth[y, x]
                if do_depth:
                    scene_depth[y, x] = d
                if not do_rgb:
                    continue
                b1 = bary[y, x, 0]
                b2 = bary[y, x, 1]
                b0 = 1.0 - b1 - b2
                i0 = faces[f, 0]
                i1 = faces[f, 1]
                i2 = faces[f, 2]
                t = person_tex[face_person[f]]
                if t < 0:
                    for c in range(3):
                        alb[c] = b0 * colors[i0, c] + b1 * colors[i1, c] + b2 * colors[i2, c]
                else:
                    u = b0 * uvs[i0, 0] + b1 * uvs[i1, 0] + b2 * uvs[i2, 0]
                    v = b0 * uvs[i0, 1] + b1 * uvs[i1, 1] + b2 * uvs[i2, 1]
                    tw = tex_w[t]
                    th = tex_h[t]
                    _bilinear(tex, tex_off[t], tw, th, u * tw - 0.5, (1.0 - v) * th - 0.5, False, alb)
                nx = R[0, 0] * ncam[y, x, 0] + R[1, 0] * ncam[y, x, 1] + R[2, 0] * ncam[y, x, 2]
                ny = R[0, 1] * ncam[y, x, 0] + R[1, 1] * ncam[y, x, 1] + R[2, 1] * ncam[y, x, 2]
                nz = R[0, 2] * ncam[y, x, 0] + R[1, 2] * ncam[y, x, 1] + R[2, 2] * ncam[y, x, 2]
                ndl = nx * key_dir[0] + ny * key_dir[1] + nz * key_dir[2]
                direct = 0.0
                if ndl > 0.0:
                    direct = ndl
                    if has_shadow:
                        # The surface point: the pixel's ray (z = 1 in the camera) at depth d.
                        cx = Kinv[0, 0] * (x + 0.5) + Kinv[0, 1] * (y + 0.5) + Kinv[0, 2]
                        cy = Kinv[1, 0] * (x + 0.5) + Kinv[1, 1] * (y + 0.5) + Kinv[1, 2]
                        cz = Kinv[2, 0] * (x + 0.5) + Kinv[2, 1] * (y + 0.5) + Kinv[2, 2]
                        px = C[0] + d * (R[0, 0] * cx + R[1, 0] * cy + R[2, 0] * cz) + nx * normal_offset
                        py = C[1] + d * (R[0, 1] * cx + R[1, 1] * cy + R[2, 1] * cz) + ny * normal_offset
                        pz = C[2] + d * (R[0, 2] * cx + R[1, 2] * cy + R[2, 2] * cz) + nz * normal_offset
                        lu, lv, lz = light_uvz(px, py, pz, LR, Lt, l_focal, l_centre)
                        direct *= pcf(lu, lv, lz - bias, shadow, blocks)
                r = alb[0] * (max(_sh_eval(sh, nx, ny, nz, 0), 0.0) + key_rgb[0] * direct)
                g = alb[1] * (max(_sh_eval(sh, nx, ny, nz, 1), 0.0) + key_rgb[1] * direct)
                b = alb[2] * (max(_sh_eval(sh, nx, ny, nz, 2), 0.0) + key_rgb[2] * direct)
            rgb_out[y, x, 0] = np.uint8(min(max(r * 255.0 + 0.5, 0.0), 255.0))
            rgb_out[y, x, 1] = np.uint8(min(max(g * 255.0 + 0.5, 0.0), 255.0))
            rgb_out[y, x, 2] = np.uint8(min(max(b * 255.0 + 0.5, 0.0), 255.0))


@numba.njit(cache=True, nogil=True, inline="always")
def _project(K: np.ndarray, R: np.ndarray, t: np.ndarray, px: float, py: float, pz: float) -> tuple:
    x = R[0, 0] * px + R[0, 1] * py + R[0, 2] * pz + t[0]
    y = R[1, 0] * px + R[1, 1] * py + R[1, 2] * pz + t[1]
    z = R[2, 0] * px + R[2, 1] * py + R[2, 2] * pz + t[2]
    return (K[0, 0] * x + K[0, 1] * y + K[0, 2] * z) / z, (K[1, 0] * x + K[1, 1] * y + K[1, 2] * z) / z


@numba.njit(cache=True, nogil=True)
def flow_frame(tri: np.ndarray, bary: np.ndarray, faces: np.ndarray, v0: np.ndarray, v1: np.ndarray,
               K0: np.ndarray, R0: np.ndarray, t0: np.ndarray, K1: np.ndarray, R1: np.ndarray, t1: np.ndarray,
               ground_on: bool, far: float, out: np.ndarray) -> None:
    """Forward flow (H,W,2) from frame 0 to frame 1: for a person pixel, the surface point under it
    (its barycentrics over the frame-0 vertices ``v0``) and the same point on the frame-1 mesh
    (``v1``), each projected by its frame's camera; for a ground pixel (``ground_on``) the static
    ground point projected by both cameras; 0 elsewhere."""
    H, W = tri.shape
    Kinv = np.linalg.inv(K0)
    for y in range(H):
        for x in range(W):
            f = tri[y, x]
            out[y, x, 0] = 0.0
            out[y, x, 1] = 0.0
            if f >= 0:
                b1 = np.float64(bary[y, x, 0])
                b2 = np.float64(bary[y, x, 1])
                b0 = 1.0 - b1 - b2
                i0 = faces[f, 0]
                i1 = faces[f, 1]
                i2 = faces[f, 2]
                ax = b0 * v0[i0, 0] + b1 * v0[i1, 0] + b2 * v0[i2, 0]
                ay = b0 * v0[i0, 1] + b1 * v0[i1, 1] + b2 * v0[i2, 1]
                az = b0 * v0[i0, 2] + b1 * v0[i1, 2] + b2 * v0[i2, 2]
                bx = b0 * v1[i0, 0] + b1 * v1[i1, 0] + b2 * v1[i2, 0]
                by = b0 * v1[i0, 1] + b1 * v1[i1, 1] + b2 * v1[i2, 1]
                bz = b0 * v1[i0, 2] + b1 * v1[i1, 2] + b2 * v1[i2, 2]
            elif ground_on:
                cx = Kinv[0, 0] * (x + 0.5) + Kinv[0, 1] * (y + 0.5) + Kinv[0, 2]
                cy = Kinv[1, 0] * (x + 0.5) + Kinv[1, 1] * (y + 0.5) + Kinv[1, 2]
                cz = Kinv[2, 0] * (x + 0.5) + Kinv[2, 1] * (y + 0.5) + Kinv[2, 2]
                # Camera centre and ray in the world: C = -R^T t, d = R^T c.
                Cx = -(R0[0, 0] * t0[0] + R0[1, 0] * t0[1] + R0[2, 0] * t0[2])
                Cy = -(R0[0, 1] * t0[0] + R0[1, 1] * t0[1] + R0[2, 1] * t0[2])
                Cz = -(R0[0, 2] * t0[0] + R0[1, 2] * t0[1] + R0[2, 2] * t0[2])
                dy = R0[0, 1] * cx + R0[1, 1] * cy + R0[2, 1] * cz
                if not (Cy > 0.0 and dy < 0.0):
                    continue
                s = -Cy / dy
                if s >= far:
                    continue
                ax = Cx + s * (R0[0, 0] * cx + R0[1, 0] * cy + R0[2, 0] * cz)
                ay = 0.0
                az = Cz + s * (R0[0, 2] * cx + R0[1, 2] * cy + R0[2, 2] * cz)
                bx, by, bz = ax, ay, az
            else:
                continue
            u0, w0 = _project(K0, R0, t0, ax, ay, az)
            u1, w1 = _project(K1, R1, t1, bx, by, bz)
            out[y, x, 0] = u1 - u0
            out[y, x, 1] = w1 - w0


@numba.njit(cache=True, nogil=True)
def instance_from_face_person(face_id: np.ndarray, face_person: np.ndarray, out: np.ndarray) -> None:
    """Person id + 1 (0 background) of each pixel from the rendered face ids and each face's person."""
    flat_in, flat_out = face_id.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        f = flat_in[i]
        flat_out[i] = 0 if f < 0 else face_person[f] + 1
