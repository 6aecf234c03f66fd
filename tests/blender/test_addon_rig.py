"""The add-on's rig conventions on real bpy, without a backend: a synthetic SMPL-X-like result is
imported, posed through an action, deformed by Blender's armature modifier, and compared with an
independent numpy implementation of SMPL-X's linear blend skinning in the protocol's Y-up frame.
The exporter must give back the pose it was fed (with and without an object transform), and an
AMASS (Z-up) file must land where its own formula puts it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import axes, motion_io, scene_export, smplx_rig  # noqa: E402
from blender_addon.importers.action import apply_pose_action  # noqa: E402
from blender_addon.importers.body_mesh import import_body_mesh  # noqa: E402

# protocol (x, y, z) -> Blender (x, -z, y), written out here independently of the add-on.
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def rodrigues(aa: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(aa)
    if angle < 1e-12:
        return np.eye(3)
    k = aa / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def smplx_lbs(
    verts: np.ndarray, joints: np.ndarray, weights: np.ndarray, pose: np.ndarray, transl: np.ndarray
) -> np.ndarray:
    """SMPL-X skinning without pose correctives: pose (55, 3) axis-angle, protocol frame."""
    parents = smplx_rig.PARENTS
    G = np.zeros((55, 4, 4))
    for j in range(55):
        local = np.eye(4)
        local[:3, :3] = rodrigues(pose[j])
        local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
        G[j] = local if parents[j] < 0 else G[parents[j]] @ local
    A = G.copy()
    A[:, :3, 3] -= np.einsum("jab,jb->ja", G[:, :3, :3], joints)
    T = np.einsum("vj,jab->vab", weights, A)
    homog = np.concatenate([verts, np.ones((len(verts), 1))], axis=1)
    return np.einsum("vab,vb->va", T, homog)[:, :3] + transl


def synthetic_body(seed: int = 0) -> dict[str, np.ndarray]:
    """A body.mesh-like result: 55 joints on the SMPL-X tree, 12 vertices per joint, 4 weights each."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((55, 3))
    joints[0] = (0.0, 0.9, 0.0)
    for j in range(1, 55):
        joints[j] = joints[smplx_rig.PARENTS[j]] + rng.normal(scale=0.08, size=3) + (0, 0.03, 0)
    verts = np.repeat(joints, 12, axis=0) + rng.normal(scale=0.04, size=(55 * 12, 3))
    dist = np.linalg.norm(verts[:, None] - joints[None], axis=2)
    weights = np.exp(-dist / 0.05)
    weights[weights < np.sort(weights, axis=1)[:, -4:-3]] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    faces = np.stack([np.arange(len(verts) - 2), np.arange(1, len(verts) - 1), np.arange(2, len(verts))], 1)
    return {
        "rest_vertices": verts,
        "faces": faces,
        "weights": weights.astype(np.float32),
        "joints_rest": joints,
        "parents": np.asarray(smplx_rig.PARENTS),
    }


def evaluated_vertices(mesh_obj: bpy.types.Object) -> np.ndarray:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = mesh_obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        world = np.array(mesh_obj.matrix_world)
    finally:
        evaluated.to_mesh_clear()
    co = co.reshape(-1, 3).astype(np.float64)
    return co @ world[:3, :3].T + world[:3, 3]


def random_motion(frames: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.35, size=(frames, 55, 3))
    transl = rng.normal(scale=0.3, size=(frames, 3))
    return pose, transl


def test_axes_come_from_protocol_cameras() -> None:
    np.testing.assert_array_equal(axes.BLENDER_FROM_PROTOCOL, C)
    np.testing.assert_allclose(axes.to_protocol(axes.to_blender(np.eye(3))), np.eye(3))


def test_import_builds_a_skinned_rig(clean_scene) -> None:
    body = synthetic_body()
    arm_obj, mesh_obj = import_body_mesh(body, {"joint_names": list(smplx_rig.JOINT_NAMES)}, name="Synth")
    assert len(mesh_obj.data.vertices) == len(body["rest_vertices"])
    assert len(arm_obj.data.bones) == 55
    for j, name in enumerate(smplx_rig.JOINT_NAMES):
        bone = arm_obj.data.bones[name]
        parent = smplx_rig.PARENTS[j]
        assert (bone.parent.name if bone.parent else None) == (
            smplx_rig.JOINT_NAMES[parent] if parent >= 0 else None
        )
        np.testing.assert_allclose(np.array(bone.head_local), C @ body["joints_rest"][j], atol=1e-6)
        assert bone[smplx_rig.JOINT_PROPERTY] == j
    weights = np.zeros((len(mesh_obj.data.vertices), 55))
    index = {g.index: smplx_rig.JOINT_NAMES.index(g.name) for g in mesh_obj.vertex_groups}
    for vertex in mesh_obj.data.vertices:
        for element in vertex.groups:
            weights[vertex.index, index[element.group]] = element.weight
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights, body["weights"], atol=1e-7)
    assert mesh_obj.parent == arm_obj
    assert mesh_obj.modifiers["Armature"].object == arm_obj
    # Rest pose: the evaluated mesh is the rest mesh, in Blender axes.
    np.testing.assert_allclose(evaluated_vertices(mesh_obj), body["rest_vertices"] @ C.T, atol=1e-5)


def test_pose_action_deforms_like_smplx_and_exports_back(clean_scene) -> None:
    body = synthetic_body()
    arm_obj, mesh_obj = import_body_mesh(body, {}, name="Synth")
    pose, transl = random_motion(5)
    apply_pose_action(arm_obj, pose.reshape(5, -1), transl, frame_start=3)
    scene = clean_scene
    scene.frame_start, scene.frame_end = 3, 7
    for frame in (3, 5, 7):
        scene.frame_set(frame)
        expected = smplx_lbs(
            body["rest_vertices"],
            body["joints_rest"],
            body["weights"].astype(np.float64),
            pose[frame - 3],
            transl[frame - 3],
        )
        np.testing.assert_allclose(evaluated_vertices(mesh_obj), expected @ C.T, atol=2e-5)

    scene.frame_set(4)
    motion = scene_export.export_smplx_motion(scene, arm_obj)
    assert motion["body_pose"].shape == (5, 63) and motion["left_hand_pose"].shape == (5, 45)
    assert motion["frame_start"] == 3 and scene.frame_current == 4  # frame restored
    full = np.concatenate([motion[f].reshape(5, -1, 3) for f, _, _ in smplx_rig.POSE_FIELDS], axis=1)
    for frame in range(5):
        for j in range(55):
            np.testing.assert_allclose(rodrigues(full[frame, j]), rodrigues(pose[frame, j]), atol=1e-5)
    np.testing.assert_allclose(motion["transl"], transl, atol=1e-5)


def test_reshape_keeps_the_meaning_of_existing_keys(clean_scene) -> None:
    body = synthetic_body(seed=8)
    arm_obj, mesh_obj = import_body_mesh(body, {}, name="Reshaped")
    pose, transl = random_motion(2, seed=9)
    apply_pose_action(arm_obj, pose.reshape(2, -1), transl, frame_start=1)
    rest_before = {b.name: np.array(b.matrix_local.to_3x3()) for b in arm_obj.data.bones}
    # Another shape: joints move (proportions change), the rig and its action stay.
    other = synthetic_body(seed=8)
    scale = np.array([1.1, 0.9, 1.05])
    other["joints_rest"] = other["joints_rest"] * scale
    other["rest_vertices"] = other["rest_vertices"] * scale
    arm_after, mesh_after = import_body_mesh(other, {}, name="Reshaped", target=arm_obj)
    assert arm_after == arm_obj and mesh_after == mesh_obj and len(mesh_obj.data.vertices) == 660
    for bone in arm_obj.data.bones:
        np.testing.assert_allclose(np.array(bone.matrix_local.to_3x3()), rest_before[bone.name], atol=1e-5)
        np.testing.assert_allclose(
            np.array(bone.head_local), C @ other["joints_rest"][bone[smplx_rig.JOINT_PROPERTY]], atol=1e-6
        )
    scene = clean_scene
    scene.frame_start, scene.frame_end = 1, 2
    scene.frame_set(2)
    expected = smplx_lbs(
        other["rest_vertices"], other["joints_rest"], other["weights"].astype(np.float64), pose[1], transl[1]
    )
    np.testing.assert_allclose(evaluated_vertices(mesh_obj), expected @ C.T, atol=2e-5)


def test_export_folds_the_object_transform_into_the_root(clean_scene) -> None:
    body = synthetic_body(seed=3)
    arm_obj, mesh_obj = import_body_mesh(body, {}, name="Moved")
    pose, transl = random_motion(2, seed=4)
    apply_pose_action(arm_obj, pose.reshape(2, -1), transl, frame_start=1)
    arm_obj.location = (0.5, -1.0, 0.25)
    arm_obj.rotation_euler = (0.3, -0.2, 1.1)
    scene = clean_scene
    scene.frame_start, scene.frame_end = 1, 2
    motion = scene_export.export_smplx_motion(scene, arm_obj)
    full = np.concatenate([motion[f].reshape(2, -1, 3) for f, _, _ in smplx_rig.POSE_FIELDS], axis=1)
    scene.frame_set(2)
    # The exported parameters, skinned in the protocol frame, give the world-space Blender mesh.
    expected = smplx_lbs(
        body["rest_vertices"],
        body["joints_rest"],
        body["weights"].astype(np.float64),
        full[1],
        motion["transl"][1],
    )
    np.testing.assert_allclose(evaluated_vertices(mesh_obj), expected @ C.T, atol=2e-5)


def test_amass_z_up_motion_lands_where_amass_puts_it(clean_scene, tmp_path) -> None:
    body = synthetic_body(seed=5)
    arm_obj, mesh_obj = import_body_mesh(body, {}, name="Amass")
    pose, trans = random_motion(4, seed=6)
    np.savez(
        tmp_path / "walk.npz",
        poses=pose.reshape(4, 165),
        trans=trans,
        betas=np.zeros(16),
        gender=np.array("female"),
        mocap_frame_rate=np.array(60.0),
    )
    scene = clean_scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    bpy.context.view_layer.objects.active = arm_obj
    result = bpy.ops.avatar_studio.load_amass(filepath=str(tmp_path / "walk.npz"))
    assert result == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (1, 2)  # 4 frames at 60 fps -> 2 at 30 fps
    scene.frame_set(2)
    # AMASS: smplx forward with root_orient/trans in its Z-up world, which is Blender's world.
    amass = smplx_lbs(
        body["rest_vertices"], body["joints_rest"], body["weights"].astype(np.float64), pose[2], trans[2]
    )
    np.testing.assert_allclose(evaluated_vertices(mesh_obj), amass, atol=2e-5)
    motion = motion_io.load_amass(tmp_path / "walk.npz")
    assert motion.gender == "female" and motion.fps == 60.0


def test_bad_results_and_files_are_reported(clean_scene, tmp_path) -> None:
    from blender_addon.importers.arrays import ResultFormatError

    body = synthetic_body()
    body["weights"] = body["weights"][:, :10]
    with pytest.raises(ResultFormatError, match="skinning weights"):
        import_body_mesh(body, {})
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(motion_io.MotionFileError):
        motion_io.load_amass(tmp_path / "bad.npz")


def test_camera_export_projects_like_blender(clean_scene) -> None:
    """An animated camera exported over the frame range projects world points to the pixels
    Blender's own world_to_camera_view gives, frame by frame (also at a preview width)."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    scene = clean_scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 640, 360, 50
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    cam.data.lens, cam.data.shift_x, cam.data.shift_y = 35.0, 0.1, -0.05
    cam.rotation_euler = (1.3, 0.0, 0.2)
    for frame, x in ((1, 0.0), (3, 1.0)):
        cam.location = (x, -6.0, 1.5)
        cam.keyframe_insert("location", frame=frame)
    scene.frame_start, scene.frame_end = 1, 3
    points = np.array([[0.0, 0.0, 1.0], [0.3, 0.5, 1.7], [-0.4, -0.2, 0.1]])
    for width in (None, 160):
        (path,) = scene_export.export_camera_paths(scene, [cam], width=width)
        assert len(path) == 3 and path.width == (width or 320)
        for index, frame in enumerate(range(1, 4)):
            scene.frame_set(frame)
            pixels, _depth = path.subset([index]).project(axes.to_protocol(points))
            for point, pixel in zip(points, pixels[0], strict=True):
                ndc = world_to_camera_view(scene, cam, Vector(point.tolist()))
                expected = (ndc.x * path.width, (1.0 - ndc.y) * path.height)
                np.testing.assert_allclose(pixel, expected, atol=1e-3)


def test_pose_correctives_are_baked_as_shape_keys(clean_scene) -> None:
    """A result posed with correctives (offsets added before skinning, as SMPL-X's posedirs):
    the baked shape keys make Blender's deformation equal the posed vertices at every frame."""
    from blender_addon.importers.correctives import KEY_PREFIX, corrective_offsets

    body = synthetic_body(seed=13)
    frames = 3
    pose, transl = random_motion(frames, seed=14)
    rng = np.random.default_rng(15)
    extra = rng.normal(scale=0.004, size=(frames, len(body["rest_vertices"]), 3))  # millimetre bulges
    weights = body["weights"].astype(np.float64)
    posed = np.stack(
        [
            smplx_lbs(body["rest_vertices"] + extra[f], body["joints_rest"], weights, pose[f], transl[f])
            for f in range(frames)
        ]
    )
    # World joint transforms as body.mesh sends them: accumulated rotation, posed joint position.
    transforms = np.zeros((frames, 55, 4, 4))
    for f in range(frames):
        for j in range(55):
            parent = smplx_rig.PARENTS[j]
            rot = rodrigues(pose[f, j])
            if parent < 0:
                transforms[f, j, :3, :3] = rot
                transforms[f, j, :3, 3] = body["joints_rest"][j] + transl[f]
            else:
                transforms[f, j, :3, :3] = transforms[f, parent, :3, :3] @ rot
                offset = body["joints_rest"][j] - body["joints_rest"][parent]
                transforms[f, j, :3, 3] = (
                    transforms[f, parent, :3, :3] @ offset + transforms[f, parent, :3, 3]
                )
    np.testing.assert_allclose(
        corrective_offsets(body["rest_vertices"], body["joints_rest"], weights, transforms, posed),
        extra,
        atol=1e-7,
    )
    result = {**body, "joint_transforms": transforms, "posed_vertices": posed}
    _arm_obj, mesh_obj = import_body_mesh(result, {}, name="Bulgy", import_motion=True, frame_start=5)
    keys = [k.name for k in mesh_obj.data.shape_keys.key_blocks if k.name.startswith(KEY_PREFIX)]
    assert keys == [f"{KEY_PREFIX}{f}" for f in (5, 6, 7)]
    scene = clean_scene
    for f in range(frames):
        scene.frame_set(5 + f)
        np.testing.assert_allclose(evaluated_vertices(mesh_obj), posed[f] @ C.T, atol=2e-5)


def test_export_reads_final_pose_matrices_when_bones_have_constraints(clean_scene) -> None:
    """With a constraint on any bone the exporter derives rotations from the evaluated pose
    matrices (what the constraints produced), not from the keys; an identity constraint must give
    the keyed pose back, a Limit Rotation that clamps the elbow must show in the export."""
    body = synthetic_body(seed=16)
    arm_obj, _mesh = import_body_mesh(body, {}, name="Constrained")
    pose, transl = random_motion(2, seed=17)
    apply_pose_action(arm_obj, pose.reshape(2, -1), transl, frame_start=1)
    scene = clean_scene
    scene.frame_start, scene.frame_end = 1, 2
    arm_obj.pose.bones["spine1"].constraints.new("LIMIT_ROTATION")  # nothing enabled: no effect
    motion = scene_export.export_smplx_motion(scene, arm_obj)
    full = np.concatenate([motion[f].reshape(2, -1, 3) for f, _, _ in smplx_rig.POSE_FIELDS], axis=1)
    for frame in range(2):
        for j in range(55):
            np.testing.assert_allclose(rodrigues(full[frame, j]), rodrigues(pose[frame, j]), atol=1e-5)
    np.testing.assert_allclose(motion["transl"], transl, atol=1e-5)

    elbow = smplx_rig.JOINT_NAMES.index("left_elbow")
    limit = arm_obj.pose.bones["left_elbow"].constraints.new("LIMIT_ROTATION")
    limit.use_limit_x = limit.use_limit_y = limit.use_limit_z = True  # all limits 0: locked
    limit.owner_space = "LOCAL"
    motion = scene_export.export_smplx_motion(scene, arm_obj)
    elbow_pose = motion["body_pose"].reshape(2, 21, 3)[:, elbow - 1]
    np.testing.assert_allclose(elbow_pose, 0.0, atol=1e-5)


def test_assign_weights_round_trips_every_weight() -> None:
    # Continuous weights (every value distinct) and shared ones (many vertices, one value), as
    # the importer batches vertices by weight value: what Blender holds must equal the input.
    from blender_addon.importers.body_mesh import assign_weights

    rng = np.random.default_rng(3)
    n_verts, n_joints = 500, 7
    weights = np.zeros((n_verts, n_joints), dtype=np.float32)
    for v in range(n_verts):
        joints = rng.choice(n_joints, 3, replace=False)
        weights[v, joints] = rng.random(3) if v % 2 else np.float32(0.25)
    weights[:, 4] = 0.0  # a joint with no vertices keeps an empty group
    mesh = bpy.data.meshes.new("weights_round_trip")
    mesh.vertices.add(n_verts)
    obj = bpy.data.objects.new("weights_round_trip", mesh)
    assign_weights(obj, weights, [f"joint{j}" for j in range(n_joints)])
    back = np.zeros_like(weights)
    for vertex in mesh.vertices:
        for element in vertex.groups:
            back[vertex.index, element.group] = element.weight
    assert [g.name for g in obj.vertex_groups] == [f"joint{j}" for j in range(n_joints)]
    np.testing.assert_array_equal(back, weights)
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(mesh)


def test_an_importer_error_marks_the_job_instead_of_leaving_it_downloading(
    clean_scene: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: an unexpected exception escaped the pump and the job stayed "downloading results"
    # forever (a script waiting for it hung until its timeout).
    from blender_addon import bridge as bridge_mod
    from blender_addon.importers import dispatch

    def broken(*_args: Any) -> Any:
        yield "checking arrays"
        raise IndexError("importer bug")

    monkeypatch.setitem(dispatch.IMPORTERS, "avatar.from_views", broken)
    item = clean_scene.avatar_studio.jobs.add()
    item.job_id, item.kind, item.state = "f" * 32, "avatar.from_views", "succeeded"
    the_bridge = bridge_mod.get_bridge()
    the_bridge.import_local(clean_scene, "avatar.from_views", item.job_id, {}, {}, {})
    for _ in range(5):
        the_bridge.pump()
    assert not item.imported and item.message.startswith("import failed")
    assert the_bridge.import_progress(item.job_id) is None  # the task is gone, not stuck
    assert any("IndexError: importer bug" in text for level, text in the_bridge.log if level == "ERROR")
