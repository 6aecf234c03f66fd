"""The avatar importer on real bpy, from a synthetic ``avatar.from_views``-like result (no backend):
UVs per loop from per-vertex UVs, the texture packed with the right row order, a material using it,
and the rig of the body importer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_addon_rig import C, synthetic_body  # noqa: E402

from blender_addon.importers.avatar import import_avatar  # noqa: E402


def synthetic_avatar() -> dict[str, np.ndarray]:
    body = synthetic_body(seed=11)
    rng = np.random.default_rng(12)
    vertices = body.pop("rest_vertices")
    texture = np.zeros((4, 6, 3), dtype=np.uint8)
    texture[0] = (255, 0, 0)  # top row red
    texture[-1] = (0, 0, 255)  # bottom row blue
    normals = rng.normal(size=vertices.shape)
    return {
        **body,
        "vertices": vertices.astype(np.float32),
        "joints_rest": body.pop("joints_rest").astype(np.float32),
        "uvs": rng.uniform(size=(len(vertices), 2)).astype(np.float32),
        "normals": (normals / np.linalg.norm(normals, axis=1, keepdims=True)).astype(np.float32),
        "texture": texture,
        "part_labels": np.zeros(len(vertices), dtype=np.int32),
    }


@pytest.mark.parametrize("as_file", [False, True])
def test_avatar_import(clean_scene, tmp_path: Path, as_file: bool) -> None:
    result = synthetic_avatar()
    if as_file:
        np.savez(tmp_path / "avatar_arrays.npz", **result)
        arrays, files = {}, {"avatar_arrays.npz": tmp_path / "avatar_arrays.npz"}
    else:
        arrays, files = result, {}
    arm_obj, mesh_obj = import_avatar(arrays, {}, files, name="Av")
    mesh = mesh_obj.data
    assert len(mesh.vertices) == len(result["vertices"]) and len(arm_obj.data.bones) == 55
    # Per-loop UVs are the per-vertex UVs of each loop's vertex.
    loop_vertices = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    uv = np.empty(len(mesh.loops) * 2, dtype=np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), result["uvs"][loop_vertices], atol=1e-6)
    # The material samples the packed texture; Blender's last pixel row is the array's first row.
    material = mesh.materials[0]
    image = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE").image
    assert image.packed_file is not None and tuple(image.size) == (6, 4)
    pixels = np.empty(6 * 4 * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(4, 6, 4)
    np.testing.assert_allclose(pixels[-1, 0, :3], (1, 0, 0), atol=1e-3)  # top row red
    np.testing.assert_allclose(pixels[0, 0, :3], (0, 0, 1), atol=1e-3)  # bottom row blue
    shader = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert shader.inputs["Base Color"].links[0].from_node.type == "TEX_IMAGE"
    # Custom normals from the backend, in Blender axes (Blender stores them quantised: ~1e-2).
    if hasattr(mesh, "corner_normals"):  # Blender 4.1+
        normals = np.empty(len(mesh.loops) * 3, dtype=np.float32)
        mesh.corner_normals.foreach_get("vector", normals)
        np.testing.assert_allclose(
            normals.reshape(-1, 3), (result["normals"] @ C.T)[loop_vertices], atol=2e-2
        )
