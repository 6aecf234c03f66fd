"""``body.mesh`` results -> an SMPL-X body in the scene: a mesh (with an armature modifier and one
vertex group per joint, weighted as the backend's skinning weights) parented to an armature of the
55 SMPL-X joints at their rest positions. Optionally the per-frame pose as an action."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import bpy
import numpy as np

from .. import axes, smplx_rig
from ..job_params import MESH
from .action import apply_joint_transforms_action_steps
from .arrays import BODY_RESULT, ResultFormatError, check_shape, pick
from .correctives import bake_from_result_steps
from .steps import Steps, run

SKIN_COLOR = (0.8, 0.62, 0.52, 1.0)
MIN_BONE_LENGTH = 0.01  # metres; Blender deletes zero-length bones
# Bones whose tail should aim at one child rather than the mean of all children.
PREFERRED_CHILD = {"pelvis": "spine1", "spine3": "neck"}


def joint_names_from(data: Mapping[str, Any], count: int) -> list[str]:
    names = data.get("joint_names")
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
        return list(names)
    if count == smplx_rig.NUM_JOINTS:
        return list(smplx_rig.JOINT_NAMES)
    return [f"joint_{i:02d}" for i in range(count)]


def bone_tails(heads: np.ndarray, parents: np.ndarray, names: list[str]) -> np.ndarray:
    """A tail per joint: towards its children (or the preferred child), else continuing the parent."""
    count = len(heads)
    tails = np.zeros_like(heads)
    children: list[list[int]] = [[] for _ in range(count)]
    for joint, parent in enumerate(parents):
        if parent >= 0:
            children[int(parent)].append(joint)
    lengths = np.zeros(count)
    for joint in range(count):  # parents come before children in SMPL-X order
        targets = children[joint]
        preferred = PREFERRED_CHILD.get(names[joint])
        if preferred in names and names.index(preferred) in targets:
            targets = [names.index(preferred)]
        direction = heads[targets].mean(axis=0) - heads[joint] if targets else np.zeros(3)
        if np.linalg.norm(direction) < MIN_BONE_LENGTH:
            parent = int(parents[joint])
            if parent >= 0 and lengths[parent] > 0:
                parent_dir = tails[parent] - heads[parent]
                direction = (
                    parent_dir / np.linalg.norm(parent_dir) * max(0.5 * lengths[parent], MIN_BONE_LENGTH)
                )
            else:
                direction = np.array([0.0, 0.0, 0.1])  # Blender up
        tails[joint] = heads[joint] + direction
        lengths[joint] = np.linalg.norm(direction)
    return tails


def _skin_material() -> bpy.types.Material:
    material = bpy.data.materials.get("AvatarStudio Skin") or bpy.data.materials.new("AvatarStudio Skin")
    material.diffuse_color = SKIN_COLOR
    return material


def _build_armature_bones(
    arm_obj: bpy.types.Object, heads: np.ndarray, tails: np.ndarray, parents: np.ndarray, names: list[str]
) -> None:
    """(Re)create the bones in edit mode. Existing bones (a shape change) move to the new joints but
    keep their rest orientation (direction and roll; only the length follows the new tail): the
    keys of an action are relative to that orientation, so the same keys still mean the same
    SMPL-X pose after a reshape."""
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = arm_obj
    previous_mode = arm_obj.mode
    if previous_mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones = arm_obj.data.edit_bones
        existing = {b.name for b in edit_bones}
        for name in names:
            bone = edit_bones.get(name) or edit_bones.new(name)
            bone.use_connect = False
            bone.use_deform = True
        for joint, name in enumerate(names):
            bone = edit_bones[name]
            if name in existing and bone.length > 0:
                direction = np.array(bone.vector) / bone.length
                roll = bone.roll
                length = max(float(np.linalg.norm(tails[joint] - heads[joint])), MIN_BONE_LENGTH)
                bone.head = heads[joint].tolist()
                bone.tail = (heads[joint] + direction * length).tolist()
                bone.roll = roll
            else:
                bone.head = heads[joint].tolist()
                bone.tail = tails[joint].tolist()
                bone.roll = 0.0
            parent = int(parents[joint])
            bone.parent = edit_bones[names[parent]] if parent >= 0 else None
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active
    for joint, name in enumerate(names):
        arm_obj.data.bones[name][smplx_rig.JOINT_PROPERTY] = joint
    for pose_bone in arm_obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"


def fill_mesh_steps(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray) -> Steps[None]:
    """Triangles into an empty mesh, one bulk call per step (each a few ms for an SMPL-X body;
    ``from_pydata`` would be one 30 ms call)."""
    mesh.clear_geometry()
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    yield "mesh (vertices)"
    mesh.loops.add(faces.size)
    yield "mesh (corners)"
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    yield "mesh (corners)"
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", (np.arange(len(faces), dtype=np.int32) * 3))
    yield "mesh (faces)"
    mesh.update(calc_edges=True)
    yield "mesh (edges)"
    mesh.validate(verbose=False)
    yield "mesh (checked)"
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))


def assign_weights_steps(
    mesh_obj: bpy.types.Object, weights: np.ndarray, names: list[str], adds_per_step: int = 150
) -> Steps[None]:
    """One vertex group per joint, holding that joint's non-zero skinning weights; a step per
    ``adds_per_step`` calls of ``VertexGroup.add`` (about 0.5 ms per joint on average, but a
    joint with many distinct weights costs several)."""
    mesh_obj.vertex_groups.clear()
    budget = adds_per_step
    for joint, name in enumerate(names):
        group = mesh_obj.vertex_groups.new(name=name)
        column = weights[:, joint]
        nonzero = np.flatnonzero(column > 0.0)
        if nonzero.size == 0:  # a joint nothing is bound to (e.g. an eye on a sculpted avatar)
            continue
        # VertexGroup.add takes one weight for many vertices (Blender has no bulk setter for
        # per-vertex weights): batch the vertices sharing a weight. One sort, then a slice per
        # distinct weight; masking the array once per weight was quadratic (0.2 s for a body).
        order = np.argsort(column[nonzero], kind="stable")
        vertices, values = nonzero[order], column[nonzero][order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        ends = np.r_[starts[1:], len(values)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            group.add(vertices[start:end].tolist(), float(values[start]), "REPLACE")
            budget -= 1
            if budget <= 0:
                budget = adds_per_step
                yield f"vertex groups ({joint + 1}/{len(names)})"
        budget -= 10  # creating a group costs about as much as a few adds
        if budget <= 0:
            budget = adds_per_step
            yield f"vertex groups ({joint + 1}/{len(names)})"


def assign_weights(mesh_obj: bpy.types.Object, weights: np.ndarray, names: list[str]) -> None:
    """One vertex group per joint, holding that joint's non-zero skinning weights."""
    run(assign_weights_steps(mesh_obj, weights, names))


BODY_STAGES = ("checking arrays", "rig", "mesh", "vertex groups", "motion", "correctives")


def import_body_mesh(arrays: Mapping[str, Any], data: Mapping[str, Any], **options: Any) -> tuple[Any, Any]:
    """Create (or reshape) a body in one go; see :func:`import_body_mesh_steps`."""
    return run(import_body_mesh_steps(arrays, data, **options))


def import_body_mesh_steps(
    arrays: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    name: str = "SMPLX",
    target: bpy.types.Object | None = None,
    collection: bpy.types.Collection | None = None,
    frame_start: int = 1,
    import_motion: bool = False,
    place_on_ground: bool = False,
) -> Steps[tuple[bpy.types.Object, bpy.types.Object]]:
    """Create (or reshape ``target``'s) body in steps; returns ``(armature_object, mesh_object)``.

    With ``import_motion`` the result's per-frame ``joint_transforms`` become an action starting at
    ``frame_start`` and its pose correctives shape keys (a rest-pose result has one frame of zero
    rotations: nothing worth keying).
    ``place_on_ground`` moves a new body's armature object so its feet touch Blender's ground
    (SMPL-X's origin is near the pelvis); the exporter folds that object offset into ``transl``.
    """
    vertices = pick(arrays, BODY_RESULT.rest_vertices).astype(np.float64)
    vertices = check_shape(vertices, (None, 3), "rest vertices")
    faces = check_shape(pick(arrays, BODY_RESULT.faces).astype(np.int64), (None, 3), "faces")
    yield "checking arrays"
    weights = pick(arrays, BODY_RESULT.weights).astype(np.float64)
    joints = check_shape(pick(arrays, BODY_RESULT.joints_rest).astype(np.float64), (None, 3), "rest joints")
    parents = pick(arrays, BODY_RESULT.parents, required=False)
    if parents is None:
        parents = np.asarray(smplx_rig.PARENTS)
    parents = parents.astype(np.int64).ravel()
    check_shape(weights, (len(vertices), len(joints)), "skinning weights")
    if len(parents) != len(joints):
        raise ResultFormatError(f"{len(parents)} parents for {len(joints)} joints")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ResultFormatError("face indices out of range")
    names = joint_names_from(data, len(joints))
    yield "checking arrays"

    heads = axes.to_blender(joints)
    tails = bone_tails(heads, parents, names)
    collection = collection or bpy.context.scene.collection
    yield "checking arrays"

    created: list[Any] = []  # new data, removed again when the import is cancelled half-way
    try:
        if target is not None and target.type == "ARMATURE":
            arm_obj = target
            mesh_obj = next((c for c in arm_obj.children if c.type == "MESH"), None)
        else:
            arm_obj = bpy.data.objects.new(name, bpy.data.armatures.new(f"{name} Rig"))
            created += [arm_obj, arm_obj.data]
            collection.objects.link(arm_obj)
            arm_obj.data.display_type = "STICK"
            arm_obj.show_in_front = True
            mesh_obj = None
        # Deform in the rest pose while bones move; the action (if any) re-applies afterwards.
        arm_obj.data.pose_position = "REST"
        _build_armature_bones(arm_obj, heads, tails, parents, names)
        arm_obj.data.pose_position = "POSE"
        yield "rig"

        mesh = bpy.data.meshes.new(f"{name} Body")
        created.append(mesh)
        yield from fill_mesh_steps(mesh, axes.to_blender(vertices), faces)
        mesh.materials.append(_skin_material())
        labels = pick(arrays, BODY_RESULT.part_labels, required=False)
        if labels is not None and labels.shape == (len(vertices),):
            attribute = mesh.attributes.new("smplx_part", "INT", "POINT")
            attribute.data.foreach_set("value", labels.astype(np.int32))
        if mesh_obj is None:
            mesh_obj = bpy.data.objects.new(f"{name} Body", mesh)
            created.insert(0, mesh_obj)
            collection.objects.link(mesh_obj)
            mesh_obj.parent = arm_obj
            modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
            modifier.object = arm_obj
        else:
            old = mesh_obj.data
            mesh_obj.data = mesh
            if old.users == 0:
                bpy.data.meshes.remove(old)
        yield "mesh"
        yield from assign_weights_steps(mesh_obj, weights, names)

        settings = arm_obj.avatar_studio_body
        settings.is_body = True
        params = data.get("params") if isinstance(data.get("params"), Mapping) else {}
        _copy_shape(settings, params)
        gender = params.get(MESH.gender)
        if isinstance(gender, str) and gender in ("neutral", "male", "female"):
            settings.gender = gender
        mesh_obj.avatar_studio_body.is_body = True
        if place_on_ground and target is None:
            arm_obj.location = (0.0, 0.0, -float(axes.to_blender(vertices)[:, 2].min()))

        transforms = pick(arrays, BODY_RESULT.joint_transforms, required=False)
        if import_motion and transforms is not None and transforms.ndim == 4 and transforms.shape[0] > 0:
            yield from apply_joint_transforms_action_steps(
                arm_obj, transforms, parents, rest_root=joints[0], frame_start=frame_start,
                name=f"{name} Motion",
            )
            # SMPL-X's pose correctives, which skinning alone lacks, as per-frame shape keys.
            yield from bake_from_result_steps(mesh_obj, dict(arrays), frame_start)
        return arm_obj, mesh_obj
    except GeneratorExit:
        remove_data(created)
        raise


def remove_data(blocks: list[Any]) -> None:
    """Remove objects and data blocks an unfinished import made (objects first)."""
    for block in blocks:
        with contextlib.suppress(ReferenceError, RuntimeError):  # already gone (file load...)
            _remove_one(block)


def _remove_one(block: Any) -> None:
    if isinstance(block, bpy.types.Object):
        bpy.data.objects.remove(block)
    elif isinstance(block, bpy.types.Mesh):
        bpy.data.meshes.remove(block)
    elif isinstance(block, bpy.types.Armature):
        bpy.data.armatures.remove(block)


def _copy_shape(settings: Any, params: Mapping[str, Any]) -> None:
    for field in (MESH.betas, MESH.expression):
        values = params.get(field)
        if isinstance(values, list | tuple | np.ndarray):
            target = getattr(settings, field)
            count = min(len(target), len(values))
            current = list(target)
            current[:count] = [float(v) for v in list(values)[:count]]
            setattr(settings, field, current)
