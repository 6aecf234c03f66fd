"""The avatar glb re-imports in Blender's own glTF importer: same vertices, a 55-joint skin, up to
8 influences per vertex (both glTF weight sets, JOINTS_0/1 and WEIGHTS_0/1, become vertex groups),
and posing a joint moves exactly the vertices it should.

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
    top = np.argsort(-w, axis=1)[:, :8]  # what the glb carries (8 influences per vertex)
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


def _group_weights(mesh, vertex: int) -> dict[str, float]:
    names = [vg.name for vg in mesh.vertex_groups]
    return {names[ge.group]: ge.weight for ge in mesh.data.vertices[vertex].groups}


def _expected_groups(row: np.ndarray, names: list[str], k: int = 8) -> dict[str, float]:
    """The k largest non-zero weights of a full-weight row, renormalised: what the glb carries."""
    top = [int(j) for j in np.argsort(-row)[:k] if row[j] > 0]
    kept = row[top] / row[top].sum()
    return {names[j]: float(x) for j, x in zip(top, kept, strict=True)}


def test_second_weight_set_becomes_vertex_groups(avatar_glb):
    """Blender reads JOINTS_1/WEIGHTS_1: a vertex with 6 influences gets 6 vertex groups (the first
    set alone would give 4), one with more than 8 gets its 8 largest, renormalised."""
    path, facts, arrays = avatar_glb
    _, mesh = _import(path)
    w, names = arrays["weights"], facts["joint_names"]
    count = (w > 0).sum(1)
    for wanted, vertices in ((6, np.nonzero(count == 6)[0]), (8, np.nonzero(count > 8)[0])):
        assert len(vertices) > 20, wanted  # the body avatar has plenty of both
        for v in vertices[:: max(1, len(vertices) // 50)]:
            got, expected = _group_weights(mesh, int(v)), _expected_groups(w[v], names)
            assert len(got) == wanted and got.keys() == expected.keys(), v
            for name, weight in expected.items():
                assert abs(got[name] - weight) < 1e-3, (v, name)
