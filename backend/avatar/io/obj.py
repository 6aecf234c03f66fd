"""Wavefront OBJ + MTL + PNG export (static mesh, UVs, normals, texture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_obj(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    texture: np.ndarray,
    normals: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``NAME.obj``, ``NAME.mtl`` and ``NAME.png`` side by side; returns the three paths.

    ``vertices``/``uvs``/``normals`` are per split vertex (one UV per vertex, v = 0 bottom, as OBJ).
    """
    obj = Path(path)
    obj.parent.mkdir(parents=True, exist_ok=True)
    mtl, png = obj.with_suffix(".mtl"), obj.with_suffix(".png")
    Image.fromarray(texture).save(png)
    mtl.write_text(f"newmtl avatar\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd {png.name}\n")
    lines = [f"mtllib {mtl.name}", "o avatar"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uvs]
    if normals is not None:
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in normals]
    lines.append("usemtl avatar")
    f1 = faces + 1
    if normals is not None:
        lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in f1]
    else:
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f1]
    obj.write_text("\n".join(lines) + "\n")
    return {"obj": obj, "mtl": mtl, "png": png}
