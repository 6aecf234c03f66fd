"""glTF 2.0 binary (.glb) export of a skinned, textured avatar (through pygltflib).

Layout: node 0 is the mesh (with the skin), nodes 1..J are the joints, parented as the SMPL-X tree
with rest translations relative to the parent and no rotation, so the bind pose is the rest pose and
each inverse bind matrix is a pure translation by minus the joint's world position. That is SMPL-X's
own convention, so when the vertices and joints are in SMPL-X's zero pose (what the pipeline
exports, see ``rig.canonical_pose``) a SMPL-X/AMASS joint rotation applies to a node unchanged. The texture is
embedded as PNG; glTF's UV origin is the *top-left* of the image, so ``t = 1 - v``.

Vertex weights keep the ``max_influences`` (8 by default, or 4) largest influences per vertex,
largest first, renormalised to sum to 1. glTF stores them in sets of four (JOINTS_0/WEIGHTS_0, then
JOINTS_1/WEIGHTS_1); the second set is written only when some vertex has a 5th non-zero influence.
SMPL-X-derived weights often have 5-8 non-negligible influences at the shoulders, hands and neck,
where 4 visibly changes the deformation. Importers MAY read only the first set (glTF 2.0, "Skinned
Mesh Attributes"); Blender's reads all of them. ``max_influences=4`` gives the one-set file every
importer reads in full. The full weights travel in the job's arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as g
from PIL import Image


@dataclass
class SkinnedMesh:
    vertices: np.ndarray  # (N,3) float, split at UV seams
    faces: np.ndarray  # (F,3)
    uvs: np.ndarray  # (N,2), v = 0 bottom
    normals: np.ndarray | None  # (N,3)
    weights: np.ndarray | None  # (N,J), rows sum to 1
    joints: np.ndarray | None  # (J,3) rest (bind) positions, world; same pose as ``vertices``
    parents: np.ndarray | None  # (J,), -1 root
    joint_names: list[str] | None
    texture: np.ndarray  # (H,W,3|4) uint8


# glTF's JOINTS_n/WEIGHTS_n accessors are VEC4: influences are stored four per attribute set.
INFLUENCES_PER_SET = 4
# Whole sets only (a partial set is padded with zeros anyway). Two sets are what Blender's importer
# reads; on the body avatar the weights past the 8th are < 0.7 % of any vertex's total.
ALLOWED_MAX_INFLUENCES = (4, 8)


def top_k_weights(weights: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Joint indices (N,k) and renormalised float32 values (N,k) of the k largest weights per row,
    largest first.

    Rows with fewer than k non-zero weights (or fewer than k joints) are padded with zero-weight
    slots naming joint 0, as glTF asks of unused joint values. Values are renormalised in float64
    and tested for zero after the cast, so a weight too small for float32 is an unused slot too.
    """
    n, n_joints = weights.shape
    if n_joints < k:
        weights = np.concatenate([weights, np.zeros((n, k - n_joints), weights.dtype)], 1)
    idx = np.argsort(-weights, axis=1, kind="stable")[:, :k]
    val = np.take_along_axis(weights, idx, 1).astype(np.float64)
    val = (val / np.maximum(val.sum(1, keepdims=True), 1e-12)).astype(np.float32)
    return np.where(val > 0, idx, 0), val


def check_max_influences(max_influences: int) -> None:
    """Raise ValueError unless ``max_influences`` is a whole number of glTF sets we write (4 or 8)."""
    if max_influences not in ALLOWED_MAX_INFLUENCES:
        raise ValueError(
            f"max_influences must be one of {ALLOWED_MAX_INFLUENCES} (glTF stores joints in sets of "
            f"{INFLUENCES_PER_SET}), got {max_influences!r}"
        )


def influence_sets(weights: np.ndarray, max_influences: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """The glTF (JOINTS_n (N,4), WEIGHTS_n (N,4)) sets for the ``max_influences`` largest weights.

    Only as many sets as the most-influenced vertex fills, so a mesh with at most 4 non-zero
    influences per vertex keeps a single set (a smaller file, read in full by every importer).
    """
    check_max_influences(max_influences)
    idx, val = top_k_weights(weights, max_influences)
    used = int((val > 0).sum(1).max(initial=1))
    n_sets = max(1, -(-used // INFLUENCES_PER_SET))
    cols = [slice(s * INFLUENCES_PER_SET, (s + 1) * INFLUENCES_PER_SET) for s in range(n_sets)]
    return [(idx[:, c], val[:, c]) for c in cols]


def write_glb(path: str | Path, mesh: SkinnedMesh, name: str = "avatar", max_influences: int = 8) -> Path:
    """Write ``mesh`` as a .glb; a skinned mesh keeps ``max_influences`` (4 or 8) weights per vertex."""
    check_max_influences(max_influences)
    path = Path(path)
    blob = bytearray()
    gltf = g.GLTF2(asset=g.Asset(generator="avatar-studio", version="2.0"))

    def add_view(data: bytes, target: int | None = None) -> int:
        while len(blob) % 4:
            blob.append(0)
        gltf.bufferViews.append(
            g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target)
        )
        blob.extend(data)
        return len(gltf.bufferViews) - 1

    def add_accessor(
        arr: np.ndarray, ctype: int, atype: str, target: int | None, minmax: bool = False
    ) -> int:
        view = add_view(np.ascontiguousarray(arr).tobytes(), target)
        acc = g.Accessor(bufferView=view, componentType=ctype, count=int(arr.shape[0]), type=atype)
        if minmax:
            acc.min = arr.min(0).astype(float).tolist()
            acc.max = arr.max(0).astype(float).tolist()
        gltf.accessors.append(acc)
        return len(gltf.accessors) - 1

    attrs = g.Attributes(
        POSITION=add_accessor(mesh.vertices.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER, minmax=True),
        TEXCOORD_0=add_accessor(
            np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], 1).astype(np.float32),
            g.FLOAT,
            g.VEC2,
            g.ARRAY_BUFFER,
        ),
    )
    if mesh.normals is not None:
        attrs.NORMAL = add_accessor(mesh.normals.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER)
    skinned = mesh.weights is not None and mesh.joints is not None and mesh.parents is not None
    if skinned:
        assert mesh.weights is not None
        # Joint indices as the smallest unsigned type glTF allows that holds every index.
        small = mesh.weights.shape[1] <= 256
        jtype, ctype = (np.uint8, g.UNSIGNED_BYTE) if small else (np.uint16, g.UNSIGNED_SHORT)
        for s, (idx, val) in enumerate(influence_sets(mesh.weights, max_influences)):
            setattr(attrs, f"JOINTS_{s}", add_accessor(idx.astype(jtype), ctype, g.VEC4, g.ARRAY_BUFFER))
            setattr(attrs, f"WEIGHTS_{s}", add_accessor(val, g.FLOAT, g.VEC4, g.ARRAY_BUFFER))
    indices = add_accessor(
        mesh.faces.reshape(-1).astype(np.uint32), g.UNSIGNED_INT, g.SCALAR, g.ELEMENT_ARRAY_BUFFER
    )

    png = io.BytesIO()
    Image.fromarray(mesh.texture).save(png, format="PNG")
    gltf.images.append(
        g.Image(bufferView=add_view(png.getvalue()), mimeType="image/png", name=f"{name}_texture")
    )
    gltf.samplers.append(g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR))
    gltf.textures.append(g.Texture(sampler=0, source=0))
    gltf.materials.append(
        g.Material(
            name=f"{name}_material",
            pbrMetallicRoughness=g.PbrMetallicRoughness(
                baseColorTexture=g.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=1.0
            ),
        )
    )
    gltf.meshes.append(
        g.Mesh(name=name, primitives=[g.Primitive(attributes=attrs, indices=indices, material=0)])
    )
    gltf.nodes.append(g.Node(name=name, mesh=0))
    scene_nodes = [0]
    if skinned:
        assert mesh.joints is not None and mesh.parents is not None
        n_j = len(mesh.joints)
        names = mesh.joint_names or [f"joint_{i}" for i in range(n_j)]
        first = len(gltf.nodes)
        for j in range(n_j):
            p = int(mesh.parents[j])
            local = mesh.joints[j] - (mesh.joints[p] if p >= 0 else 0.0)
            gltf.nodes.append(g.Node(name=names[j], translation=[float(x) for x in local]))
        for j in range(n_j):
            p = int(mesh.parents[j])
            if p >= 0:
                gltf.nodes[first + p].children.append(first + j)
        roots = [first + j for j in range(n_j) if mesh.parents[j] < 0]
        ibm = np.tile(np.eye(4, dtype=np.float32), (n_j, 1, 1))
        ibm[:, :3, 3] = -mesh.joints
        # glTF matrices are column-major: write each matrix transposed.
        ibm_acc = add_accessor(ibm.transpose(0, 2, 1).reshape(n_j, 16), g.FLOAT, g.MAT4, None)
        gltf.skins.append(
            g.Skin(
                name=f"{name}_skin",
                joints=list(range(first, first + n_j)),
                inverseBindMatrices=ibm_acc,
                skeleton=roots[0],
            )
        )
        gltf.nodes[0].skin = 0
        scene_nodes += roots
    gltf.scenes.append(g.Scene(nodes=scene_nodes))
    gltf.scene = 0
    gltf.buffers.append(g.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(bytes(blob))
    path.parent.mkdir(parents=True, exist_ok=True)
    gltf.save_binary(str(path))
    return path


def weight_set_count(attributes: g.Attributes) -> int:
    """How many JOINTS_n/WEIGHTS_n pairs a primitive has (consecutive from 0, as glTF requires)."""
    n = 0
    while all(getattr(attributes, f"{sem}_{n}", None) is not None for sem in ("JOINTS", "WEIGHTS")):
        n += 1
    return n


def read_glb_summary(path: str | Path) -> dict[str, int]:
    """Counts from a .glb (vertices, faces, joints, images, weight sets): for tests and reports."""
    gltf = g.GLTF2().load_binary(str(path))
    prim = gltf.meshes[0].primitives[0]
    return {
        "vertices": gltf.accessors[prim.attributes.POSITION].count,
        "faces": gltf.accessors[prim.indices].count // 3,
        "joints": len(gltf.skins[0].joints) if gltf.skins else 0,
        "images": len(gltf.images),
        "weight_sets": weight_set_count(prim.attributes),
    }
