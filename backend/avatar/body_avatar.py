"""An avatar from the posed body mesh alone (no views, no optimisation): UVs, rig and export.

A quick way to get a rigged, UV-mapped SMPL-X-shaped glb in seconds; the Blender re-import test
uses it (``python -m backend.avatar.body_avatar OUT_DIR``), and it exercises the same UV, rig and
export code as the full pipeline, un-posing included: the glb is bound in SMPL-X's zero pose (the
A-posed body comes back to its T-pose rest). The texture colours each body part.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from backend.avatar.body_mesh import BodyMesh, body_from_params
from backend.avatar.io.gltf import SkinnedMesh, write_glb
from backend.avatar.io.split_vertices import split_by_uv
from backend.avatar.rig.part_labels import closest_body_points, transfer_part_labels
from backend.avatar.rig.skinning import RigConfig, canonical_pose, rig_mesh
from backend.avatar.texture.uv_layout import UVConfig, make_uv_layout
from backend.avatar.texture.uv_raster import rasterize_uv
from backend.mesh.normals import vertex_normals


def body_avatar(body: BodyMesh, out_dir: str | Path, texture_size: int = 256) -> dict[str, object]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    v, f = body.vertices, body.faces
    cp = closest_body_points(body, v)
    labels = transfer_part_labels(body, cp)
    uv_cfg = UVConfig()
    uv_cfg.atlas.texture_size = texture_size
    atlas = make_uv_layout(v, f, labels, body, uv_cfg)
    split = split_by_uv(v, f, atlas.uv)
    rig = rig_mesh(body, f, cp, labels, RigConfig())
    canon = canonical_pose(body, v, rig.weights, cp)
    palette = (np.random.default_rng(0).random((len(body.part_names), 3)) * 200 + 40).astype(np.uint8)
    tri = rasterize_uv(atlas.uv, texture_size)
    face_part = labels[f[:, 0]]
    tex = np.full((texture_size, texture_size, 3), 128, np.uint8)
    tex[tri >= 0] = palette[face_part[tri[tri >= 0]]]
    weights = rig.weights[split.source]
    write_glb(
        out / "avatar.glb",
        SkinnedMesh(
            vertices=canon.vertices[split.source],
            faces=split.faces,
            uvs=split.uvs,
            normals=vertex_normals(canon.vertices, f)[split.source],
            weights=weights,
            joints=canon.joints,
            parents=rig.parents,
            joint_names=rig.joint_names,
            texture=tex,
        ),
    )
    np.savez(
        out / "avatar_arrays.npz",
        vertices=canon.vertices[split.source],
        vertices_posed=split.vertices,
        weights=weights,
        source=split.source,
        joints_rest=canon.joints,
    )
    facts = {
        "glb_vertices": len(split.vertices),
        "unique_positions": len(np.unique(np.round(canon.vertices, 5), axis=0)),
        "joints": len(rig.joint_names),
        "joint_names": rig.joint_names,
        "parents": rig.parents.tolist(),
    }
    (out / "avatar_facts.json").write_text(json.dumps(facts))
    return facts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m backend.avatar.body_avatar OUT_DIR", file=sys.stderr)
        return 2
    from backend.avatar.eval.synthetic import SHAPE_PRESETS, a_pose_params

    facts = body_avatar(body_from_params(a_pose_params(SHAPE_PRESETS["average"], 45.0)), args[0])
    print(json.dumps({k: facts[k] for k in ("glb_vertices", "unique_positions", "joints")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
