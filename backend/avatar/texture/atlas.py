"""Pack UV charts into one square atlas with padding (shelf packing, largest first).

Charts come in metres (same texel density everywhere); the packer places their bounding boxes in
rows, tries a few row widths and keeps the layout with the smallest square side, then scales it
uniformly into [0, 1]. Padding is given in texels of the final texture so that bilinear filtering
and mip levels do not bleed across charts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.avatar.texture.uv_unwrap import Chart


@dataclass
class AtlasConfig:
    texture_size: int = 1024
    padding_texels: int = 4
    rotate_tall: bool = True  # rotate charts that are wider than tall (fills shelves better)


@dataclass
class Atlas:
    uv: np.ndarray  # (F,3,2) per-corner UVs in [0,1] (v=0 bottom), every face of the mesh
    chart: np.ndarray  # (F,) chart index per face
    chart_names: list[str]
    utilisation: float  # fraction of the square covered by chart bounding boxes


def _shelf(sizes: np.ndarray, width: float, pad: float) -> tuple[np.ndarray, float, float]:
    """Positions (n,2) of boxes of ``sizes`` (already sorted by height), the used width and height."""
    pos = np.zeros_like(sizes)
    x = y = shelf_h = used_w = 0.0
    for i, (w, h) in enumerate(sizes):
        if x > 0 and x + w + pad > width:
            y += shelf_h + pad
            x, shelf_h = 0.0, 0.0
        pos[i] = (x + pad, y + pad)
        x += w + pad
        shelf_h = max(shelf_h, h)
        used_w = max(used_w, x + pad)
    return pos, used_w, y + shelf_h + 2 * pad


def pack_charts(charts: list[Chart], n_faces: int, config: AtlasConfig) -> Atlas:
    if not charts:
        raise ValueError("no charts to pack")
    uvs = []
    for c in charts:
        uv = c.uv - c.uv.reshape(-1, 2).min(0)
        ext = uv.reshape(-1, 2).max(0)
        if config.rotate_tall and ext[0] > ext[1]:
            uv = np.stack([ext[1] - uv[..., 1], uv[..., 0]], -1)  # 90 degrees, keeps winding
        uvs.append(uv)
    sizes = np.array([u.reshape(-1, 2).max(0) for u in uvs])
    order = np.argsort(-sizes[:, 1], kind="stable")
    total = float((sizes[:, 0] * sizes[:, 1]).sum())
    best: tuple[float, np.ndarray] | None = None
    pad = 0.0
    for _ in range(2):  # padding depends on the final scale: estimate, pack, re-estimate
        for f in np.linspace(0.8, 2.0, 13):
            width = max(np.sqrt(total) * f, float(sizes[:, 0].max()) + 2 * pad)
            pos, w, h = _shelf(sizes[order], width, pad)
            side = max(w, h)
            if best is None or side < best[0]:
                best = (side, pos)
        pad = config.padding_texels * best[0] / config.texture_size
        best = None if _ == 0 else best
    assert best is not None
    side, pos = best
    out_uv = np.zeros((n_faces, 3, 2))
    chart_of_face = np.full(n_faces, -1, dtype=np.int64)
    for k, ci in enumerate(order):
        out_uv[charts[ci].faces] = (uvs[ci] + pos[k]) / side
        chart_of_face[charts[ci].faces] = ci
    if (chart_of_face < 0).any():
        raise ValueError(f"{int((chart_of_face < 0).sum())} faces have no chart")
    return Atlas(
        uv=out_uv, chart=chart_of_face, chart_names=[c.name for c in charts], utilisation=total / side**2
    )
