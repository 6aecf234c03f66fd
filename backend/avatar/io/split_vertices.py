"""Turn a mesh with per-corner UVs into a split-vertex mesh (one vertex per distinct position+UV).

glTF, OBJ loaders and the add-on's importer all want one UV per vertex. Vertices on UV seams are
duplicated; ``source`` maps each split vertex back to the original vertex, so per-vertex data
(skin weights, part labels) follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SplitMesh:
    vertices: np.ndarray  # (N,3)
    uvs: np.ndarray  # (N,2), v = 0 at the bottom of the texture
    faces: np.ndarray  # (F,3) into the split vertices
    source: np.ndarray  # (N,) original vertex index


def split_by_uv(vertices: np.ndarray, faces: np.ndarray, corner_uv: np.ndarray) -> SplitMesh:
    # Quantise UVs to 1e-7 so corners of the same chart vertex (bit-identical in practice) merge.
    q = np.round(corner_uv.reshape(-1, 2) * 1e7).astype(np.int64)
    keys = np.concatenate([faces.reshape(-1, 1).astype(np.int64), q], 1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    source = uniq[:, 0]
    uvs = corner_uv.reshape(-1, 2)[first]
    return SplitMesh(
        vertices=np.asarray(vertices)[source], uvs=uvs, faces=inverse.reshape(-1, 3), source=source
    )
