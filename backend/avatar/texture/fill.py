"""Fill texels no view saw, following the *surface* rather than the atlas.

Push-pull in texture space alone would paint an unseen hand with whatever chart happens to lie next
to it in the atlas. Instead: vertex colours are read from the seen texels, diffused over the mesh
(welded across UV seams) to the vertices no view saw, and rasterised back into the unseen texels of
their faces. The gutter between charts is then filled by push-pull, which only ever matters for
bilinear/mip sampling at chart borders.
"""

from __future__ import annotations

import numpy as np

from backend.avatar.texture.uv_raster import rasterize_uv
from backend.mesh.adjacency import vertex_adjacency


def weld(vertices: np.ndarray) -> np.ndarray:
    """Index of a representative for each vertex among exact-position duplicates."""
    _, first, inverse = np.unique(np.round(vertices, 7), axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def diffuse_vertex_colours(
    colours: np.ndarray, known: np.ndarray, faces: np.ndarray, iterations: int = 200
) -> np.ndarray:
    """Unknown vertices take the mean of their filled neighbours, repeated until all are filled."""
    adj = vertex_adjacency(faces, len(colours))
    col = np.where(known[:, None], colours, 0.0)
    filled = known.copy()
    for _ in range(iterations):
        if filled.all():
            break
        s = adj @ (col * filled[:, None])
        c = adj @ filled.astype(float)
        new = (~filled) & (c > 0)
        col[new] = s[new] / c[new, None]
        filled = filled | new
    if not filled.all():  # isolated pieces no view saw at all: the mean seen colour
        col[~filled] = colours[known].mean(0) if known.any() else 0.5
    return col


def texel_barycentrics(uv: np.ndarray, tri_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, bary (n,3)) of every covered texel centre in its face."""
    size = tri_id.shape[0]
    rows, cols = np.nonzero(tri_id >= 0)
    f = tri_id[rows, cols]
    p = np.stack([(cols + 0.5) / size, 1 - (rows + 0.5) / size], 1)
    a, b, c = uv[f, 0], uv[f, 1], uv[f, 2]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) < 1e-20, 1e-20, den)
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    return rows, cols, np.clip(np.stack([1 - w1 - w2, w1, w2], 1), 0, 1)


def fill_unseen(
    texture: np.ndarray, seen: np.ndarray, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray
) -> np.ndarray:
    """Texture with unseen texels inside faces filled from surface-diffused vertex colours."""
    from backend.avatar.texture.optimise import push_pull

    size = texture.shape[0]
    # Vertex colour = the texel under it when that texel was seen.
    px = np.clip((uvs[:, 0] * size).astype(int), 0, size - 1)
    py = np.clip(((1 - uvs[:, 1]) * size).astype(int), 0, size - 1)
    known = seen[py, px]
    rep = weld(vertices)
    # Merge split copies of a vertex: any seen copy makes the welded vertex known.
    col = np.zeros((len(vertices), texture.shape[2]))
    cnt = np.zeros(len(vertices))
    np.add.at(col, rep[known], texture[py[known], px[known]])
    np.add.at(cnt, rep[known], 1)
    welded_known = cnt > 0
    col[welded_known] /= cnt[welded_known, None]
    filled = diffuse_vertex_colours(col, welded_known, rep[faces])
    vcol = filled[rep]
    corner_uv = uvs[faces]
    tri_id = rasterize_uv(corner_uv, size)
    rows, cols, bary = texel_barycentrics(corner_uv, tri_id)
    interp = (bary[:, :, None] * vcol[faces[tri_id[rows, cols]]]).sum(1)
    out = texture.copy()
    unseen = ~seen[rows, cols]
    out[rows[unseen], cols[unseen]] = interp[unseen]
    inside = tri_id >= 0
    return push_pull(out, inside | seen)
