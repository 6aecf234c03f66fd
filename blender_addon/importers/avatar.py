"""``avatar.from_views`` results -> a textured, rigged avatar: the body importer's mesh + armature +
weights, plus per-vertex UVs, the texture as a packed image and a material that uses it.

The result's arrays are those of the ``avatar.from_views`` contract (``protocol/kinds.py``; per-vertex
``uvs``: seams are split vertices, v up, texture row 0 at the top). The same arrays may come as the
file ``avatar_arrays.npz`` of an ``avatar-studio avatar --out`` folder.
"""

from __future__ import annotations

import contextlib
import gc
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .. import axes
from ..wire import protocol, transfers_module
from .arrays import AVATAR_RESULT, BODY_RESULT, ResultFormatError, check_shape, pick
from .body_mesh import import_body_mesh_steps
from .steps import FRESH_PUMP, Steps, run
from .texture import texture_image_steps


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


NPZ_READ_BYTES = 1 << 20  # inflated from avatar_arrays.npz per step (~3 ms)


def _arrays_from_steps(arrays: Mapping[str, Any], files: Mapping[str, Path]) -> Steps[dict[str, np.ndarray]]:
    """The result's arrays, or those of ``avatar_arrays.npz``, inflated a megabyte per step
    (``np.load`` inflates a whole member in one call: ~12 ms for a 1024² texture)."""
    found = dict(arrays)
    if AVATAR_RESULT.vertices in found or "avatar_arrays.npz" not in files:
        return found
    array_from_npy = transfers_module().array_from_npy
    try:
        archive = zipfile.ZipFile(files["avatar_arrays.npz"])
    except zipfile.BadZipFile as exc:
        raise ResultFormatError(f"avatar_arrays.npz: {exc}") from exc
    with archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            data = bytearray()
            with archive.open(member) as stream:
                while chunk := stream.read(NPZ_READ_BYTES):
                    data += chunk
                    yield "checking arrays"
            try:
                found[member[:-4]] = array_from_npy(data)
            except protocol.ProtocolError as exc:  # not a valid .npy member
                raise ResultFormatError(f"avatar_arrays.npz: {member}: {exc}") from exc
    return found


def textured_material(image: bpy.types.Image, name: str) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender < 5.0; always node-based since (use_nodes goes in 6.0)
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


AVATAR_STAGES = (
    "checking arrays", "rig", "mesh", "vertex groups", "uv map", "normals", "texture", "material",
)


def import_avatar(arrays: Mapping[str, Any], data: Mapping[str, Any], files: Mapping[str, Path],
                  **options: Any) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Create the avatar in one go; see :func:`import_avatar_steps`."""
    return run(import_avatar_steps(arrays, data, files, **options))


def import_avatar_steps(
    arrays: Mapping[str, Any],
    data: Mapping[str, Any],
    files: Mapping[str, Path],
    *,
    name: str = "Avatar",
    collection: bpy.types.Collection | None = None,
) -> Steps[tuple[bpy.types.Object, bpy.types.Object]]:
    """Create the avatar in steps; returns ``(armature_object, mesh_object)``."""
    found = yield from _arrays_from_steps(arrays, files)
    vertices = check_shape(pick(found, AVATAR_RESULT.vertices).astype(np.float64), (None, 3), "vertices")
    uvs = check_shape(pick(found, AVATAR_RESULT.uvs).astype(np.float64), (len(vertices), 2), "per-vertex uvs")
    # The rig and mesh go through the body importer: the avatar's bind-pose vertices are its rest
    # vertices; faces, weights, parents, rest joints and part labels share the body's names.
    as_body = {**found, BODY_RESULT.rest_vertices: vertices}
    arm_obj, mesh_obj = yield from import_body_mesh_steps(
        as_body, data, name=name, collection=collection, place_on_ground=True
    )
    mesh = mesh_obj.data
    loop_vertices = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    yield "uv map"
    corner_uvs = uvs[loop_vertices].astype(np.float32).ravel()
    yield "uv map"
    layer = mesh.uv_layers.new(name="UVMap")
    yield "uv map"
    layer.data.foreach_set("uv", corner_uvs)
    yield "uv map"
    normals = pick(found, AVATAR_RESULT.normals, required=False)
    if normals is not None and normals.shape == vertices.shape:
        custom = axes.to_blender(normals).astype(np.float32)
        yield FRESH_PUMP  # one bpy call of ~6 ms for an SMPL-X-sized mesh: give it a whole budget
        # Seams are split vertices: the backend's normals keep the shading smooth across them.
        # The call wants a list of lists (a numpy array is read element by element: 4x slower).
        # Those 10k short-lived lists are made and freed with the collector paused, so they are
        # not scanned and promoted towards the oldest generation (whose collections are long).
        with _collector_paused():
            mesh.normals_split_custom_set_from_vertices(custom.tolist())
        yield "normals"
    texture = pick(found, AVATAR_RESULT.texture, required=False)
    mesh.materials.clear()
    if texture is not None:
        image = yield from texture_image_steps(texture, f"{name} Texture")
        mesh.materials.append(textured_material(image, f"{name} Material"))
        yield "material"
    return arm_obj, mesh_obj
