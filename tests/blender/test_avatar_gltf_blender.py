"""The avatar glb re-imports in Blender's own glTF importer: same vertices, a 55-joint skin, and
posing a joint moves exactly the vertices it should.

The glb is made by the backend's Python (torch lives there, not in Blender) with
``python -m backend.avatar.body_avatar`` (the stand-in body through the same UV/rig/export code as
the full pipeline), then imported here with ``bpy.ops.import_scene.gltf``.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from conftest import REPO_ROOT, backend_python

bpy = pytest.importorskip("bpy")

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def avatar_glb(tmp_path_factory):
    out = tmp_path_factory.mktemp("avatar_glb")
    proc = subprocess.run([backend_python(), "-m", "backend.avatar.body_avatar", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads((out / "avatar_facts.json").read_text())
    arrays = np.load(out / "avatar_arrays.npz")
    return out / "avatar.glb", facts, arrays


def _import(path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh = next(o for o in bpy.data.objects if o.type == "MESH" and o.parent == arm)
    return arm, mesh


def _world_coords(obj) -> np.ndarray:
    deps = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(deps)
    m = ev.to_mesh()
    co = np.array([tuple(ev.matrix_world @ v.co) for v in m.vertices])
    ev.to_mesh_clear()
    return co


def test_reimport_counts(avatar_glb):
    path, facts, _ = avatar_glb
    arm, mesh = _import(path)
    assert len(arm.data.bones) == 55
    assert {b.name for b in arm.data.bones} == set(facts["joint_names"])
    # The importer keeps the glb's split vertices; welding them gives back the sculpted mesh's.
    assert len(mesh.data.vertices) == facts["glb_vertices"]
    co = np.array([tuple(v.co) for v in mesh.data.vertices])
    assert len(np.unique(np.round(co, 5), axis=0)) == facts["unique_positions"]
    assert len(mesh.vertex_groups) == 55
    assert mesh.data.uv_layers and mesh.active_material is not None


def test_posing_a_joint_moves_only_its_vertices(avatar_glb):
    path, facts, arrays = avatar_glb
    arm, mesh = _import(path)
    rest = _world_coords(mesh)
    names, parents = facts["joint_names"], facts["parents"]
    joint = names.index("left_elbow")
    subtree = {joint}
    for j in range(len(names)):  # parents come before children in the SMPL-X order
        if parents[j] in subtree:
            subtree.add(j)
    w = arrays["weights"]
    top = np.argsort(-w, axis=1)[:, :4]  # what the glb carries (4 influences per vertex)
    top_w = np.take_along_axis(w, top, 1)
    influenced = (np.isin(top, sorted(subtree)) & (top_w > 1e-4)).any(1)

    pb = arm.pose.bones["left_elbow"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, 0.0, math.radians(60))
    bpy.context.view_layer.update()
    posed = _world_coords(mesh)
    moved = np.linalg.norm(posed - rest, axis=1) > 1e-4
    # Blender keeps the glb's vertex order, so the flags compare vertex by vertex.
    assert moved.sum() > 100
    assert not (moved & ~influenced).any()  # nothing outside the elbow's subtree moved
    strong = (np.isin(top, sorted(subtree)) & (top_w > 0.05)).any(1)
    assert moved[strong].mean() > 0.99  # and what hangs on it did move
