"""``avatar.from_views`` results -> a textured, rigged avatar: the body importer's mesh + armature +
weights, plus per-vertex UVs, the texture as a packed image and a material that uses it.

The result's arrays (backend/avatar/pipeline.py ``result_arrays``): ``vertices``, ``faces``,
``uvs`` (per vertex: seams are split vertices; OBJ/Blender convention, v up, texture row 0 at the
top), ``normals``, ``texture`` (H, W, 3|4) uint8, ``weights``, ``parents``, ``joints_rest``,
``part_labels``. The same arrays may come as the file ``avatar_arrays.npz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .. import axes
from .arrays import ResultFormatError, check_shape, pick
from .body_mesh import import_body_mesh


def _arrays_from(arrays: Mapping[str, Any], files: Mapping[str, Path]) -> dict[str, np.ndarray]:
    found = dict(arrays)
    if "vertices" not in found and "avatar_arrays.npz" in files:
        with np.load(files["avatar_arrays.npz"], allow_pickle=False) as npz:
            found.update({key: npz[key] for key in npz.files})
    return found


def texture_image(texture: np.ndarray, name: str) -> bpy.types.Image:
    """A packed Blender image from an (H, W, 3|4) uint8 array whose row 0 is the top."""
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] not in (3, 4):
        raise ResultFormatError(f"texture must be (H, W, 3|4), got {texture.shape}")
    height, width = texture.shape[:2]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    scale = 255.0 if texture.dtype == np.uint8 else 1.0
    rgba[..., : texture.shape[2]] = texture.astype(np.float32) / scale
    image = bpy.data.images.new(name, width, height, alpha=True)
    image.pixels.foreach_set(rgba[::-1].ravel())  # Blender's pixel rows start at the bottom
    image.pack()  # saved inside the .blend: no dangling path to a download folder
    return image


def textured_material(image: bpy.types.Image, name: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if hasattr(material, "use_nodes"):  # always node-based from Blender 5.0
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    shader = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None) or nodes.new(
        "ShaderNodeBsdfPrincipled"
    )
    output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new(
        "ShaderNodeOutputMaterial"
    )
    if not shader.outputs["BSDF"].links:
        links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = (shader.location.x - 400, shader.location.y)
    links.new(tex.outputs["Color"], shader.inputs["Base Color"])
    return material


def import_avatar(
    arrays: Mapping[str, Any],
    data: Mapping[str, Any],
    files: Mapping[str, Path],
    *,
    name: str = "Avatar",
    collection: bpy.types.Collection | None = None,
) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Create the avatar; returns ``(armature_object, mesh_object)``."""
    found = _arrays_from(arrays, files)
    vertices = check_shape(pick(found, "vertices").astype(np.float64), (None, 3), "vertices")
    uvs = check_shape(pick(found, "uvs").astype(np.float64), (len(vertices), 2), "per-vertex uvs")
    arm_obj, mesh_obj = import_body_mesh(found, data, name=name, collection=collection, place_on_ground=True)
    mesh = mesh_obj.data
    loop_vertices = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    layer = mesh.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", uvs[loop_vertices].astype(np.float32).ravel())
    normals = pick(found, "normals", required=False)
    if normals is not None and normals.shape == vertices.shape:
        # Seams are split vertices: the backend's normals keep the shading smooth across them.
        mesh.normals_split_custom_set_from_vertices(axes.to_blender(normals).astype(np.float32).tolist())
    texture = pick(found, "texture", required=False)
    mesh.materials.clear()
    if texture is not None:
        mesh.materials.append(
            textured_material(texture_image(texture, f"{name} Texture"), f"{name} Material")
        )
    return arm_obj, mesh_obj
