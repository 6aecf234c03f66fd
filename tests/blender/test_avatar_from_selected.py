"""Avatar from Selected on real bpy against a real backend subprocess: a clothed character modelled in
the scene (the stand-in body's A-pose copied into a plain mesh, plus a flared skirt; vertex colours,
no armature, no SMPL-X anywhere) -> K Workbench views with masks and normals written into the
backend's ``<data-dir>/inputs`` -> ``avatar.from_views`` fits the body itself -> an armature-skinned,
textured avatar standing on the character, measured by Chamfer distance."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from test_addon_e2e import body_objects, connect, last_job  # noqa: E402
from test_addon_rig import evaluated_vertices  # noqa: E402

from blender_addon import job_params  # noqa: E402
from blender_addon.operators import from_selected  # noqa: E402

pytestmark = pytest.mark.timeout(900)

POSE = job_params.POSE
SKIN, SKIRT = (0.85, 0.65, 0.5, 1.0), (0.7, 0.1, 0.15, 1.0)


def a_pose(degrees: float = 45.0) -> dict[str, np.ndarray]:
    body_pose = np.zeros((1, 63), dtype=np.float32)
    body_pose[0, 15 * 3 + 2] = -math.radians(degrees)  # left shoulder (joint 16)
    body_pose[0, 16 * 3 + 2] = math.radians(degrees)  # right shoulder (joint 17)
    return {POSE.global_orient: np.zeros((1, 3), np.float32), POSE.body_pose: body_pose}


def skirt(verts: np.ndarray, rings: int = 10, segments: int = 48) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A flared open cone from the hips to above the knees (Blender world, Z up)."""
    z_lo, z_hi = verts[:, 2].min(), verts[:, 2].max()
    height = z_hi - z_lo
    top, bottom = z_lo + 0.53 * height, z_lo + 0.36 * height
    mid_x = np.median(verts[:, 0])
    # The torso at hip height (the A-posed hands hang beside it: keep them out).
    hips = verts[(np.abs(verts[:, 2] - top) < 0.02) & (np.abs(verts[:, 0] - mid_x) < 0.17)]
    centre = hips[:, :2].mean(axis=0)
    r_top = np.linalg.norm(hips[:, :2] - centre, axis=1).max() + 0.01
    points = []
    for i in range(rings + 1):
        f = i / rings
        z, r = top + f * (bottom - top), r_top + f * 0.06
        for j in range(segments):
            a = 2 * math.pi * j / segments
            points.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a), z))
    faces = [
        (i * segments + j, i * segments + (j + 1) % segments, (i + 1) * segments + (j + 1) % segments,
         (i + 1) * segments + j)
        for i in range(rings) for j in range(segments)
    ]
    return np.array(points), faces


def modelled_character(scene: bpy.types.Scene, body_mesh: bpy.types.Object) -> bpy.types.Object:
    """One plain mesh object: the posed body's evaluated surface plus a skirt, vertex coloured."""
    body = evaluated_vertices(body_mesh)
    faces = [tuple(p.vertices) for p in body_mesh.data.polygons]
    skirt_v, skirt_f = skirt(body)
    offset = len(body)
    mesh = bpy.data.meshes.new("Character")
    mesh.from_pydata(np.vstack([body, skirt_v]).tolist(), [],
                     faces + [tuple(i + offset for i in f) for f in skirt_f])
    mesh.validate()
    colours = np.array([SKIN] * offset + [SKIRT] * len(skirt_v), dtype=np.float32)
    attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", colours.ravel())
    mesh.color_attributes.active_color = attr
    obj = bpy.data.objects.new("Character", mesh)
    scene.collection.objects.link(obj)
    for solid in mesh.polygons:
        solid.use_smooth = True
    return obj


def chamfer_cm(a: np.ndarray, b: np.ndarray) -> float:
    """Mean symmetric Chamfer distance between point sets (cm): (mean a->b + mean b->a) / 2."""

    def one_way(p: np.ndarray, q: np.ndarray) -> float:
        best = [np.sqrt(((p[i:i + 2048, None] - q[None]) ** 2).sum(-1).min(axis=1))
                for i in range(0, len(p), 2048)]
        return float(np.concatenate(best).mean())

    return 50.0 * (one_way(a, b) + one_way(b, a))


def test_avatar_from_selected(clean_scene, backend_server, tmp_path: Path) -> None:
    scene = clean_scene
    the_bridge, pumper = connect(tmp_path, backend_server.connection_file)

    # The character: the stand-in body in an A-pose, copied into a plain mesh with a skirt; the
    # backend's body and its armature are then deleted, so nothing of SMPL-X is left in the scene.
    shape = job_params.default_shape("neutral")
    the_bridge.submit(scene, "body.mesh", job_params.body_mesh_params(shape, a_pose()),
                      meta={**shape, "name": "Source", "import_motion": True})
    pumper.until(lambda: last_job(scene).imported or last_job(scene).state == "failed", 300, "body.mesh")
    assert last_job(scene).state == "succeeded", last_job(scene).error
    scene.frame_set(1)
    arm_obj, body_mesh = body_objects(scene, "Source")
    character = modelled_character(scene, body_mesh)
    bpy.data.objects.remove(body_mesh)
    bpy.data.objects.remove(arm_obj)
    target = evaluated_vertices(character)

    for obj in scene.objects:
        obj.select_set(False)
    character.select_set(True)
    bpy.context.view_layer.objects.active = character
    jobs_before = len(scene.avatar_studio.jobs)
    started = time.monotonic()
    assert bpy.ops.avatar_studio.avatar_from_selected(
        name="Fitted", views_per_ring=4, resolution=256, grid=72, iterations=120, texture_size=256,
    ) == {"FINISHED"}
    # Rendering happens one view per pump (timers do not run in bpy-as-a-module: pump by hand).
    renders = 0
    while from_selected.pending():
        from_selected.pump_renders()
        renders += 1
    assert renders == 8  # 4 views per ring, 2 rings
    assert len(scene.avatar_studio.jobs) == jobs_before + 1
    item = last_job(scene)
    assert item.kind == "avatar.from_views"

    # The views: in the backend's inputs, no SMPL-X, normals present, cameras round-trip.
    folder = backend_server.data_dir / "inputs"
    (views_dir,) = [p for p in folder.iterdir() if p.name.startswith("from-selected-")]
    manifest = json.loads((views_dir / "views.json").read_text())
    assert "smplx" not in manifest and len(manifest["views"]) == 8
    for view in manifest["views"]:
        assert (views_dir / view["normal"]).is_file() and (views_dir / view["image"]).is_file()
    assert "Character (normals)" not in bpy.data.objects and "AVS views camera" not in bpy.data.objects

    pumper.until(lambda: item.imported or item.state in ("failed", "cancelled"), 600, "avatar.from_views")
    assert item.state == "succeeded", item.error
    elapsed = time.monotonic() - started

    arm = scene.objects["Fitted"]
    mesh_obj = next(c for c in arm.children if c.type == "MESH")
    assert arm.type == "ARMATURE" and len(arm.data.bones) == 55
    assert any(m.type == "ARMATURE" and m.object == arm for m in mesh_obj.modifiers)
    assert len(mesh_obj.vertex_groups) > 0
    image = next(n for n in mesh_obj.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE").image
    pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rgb = pixels.reshape(-1, 4)[:, :3]
    got = evaluated_vertices(mesh_obj)
    distance = chamfer_cm(got, target)
    # Away from the skirt (whose open hem and the thighs under it no view sees: a watertight avatar
    # closes the hem, so those parts count centimetres against any reconstruction).
    z_lo, height = target[:, 2].min(), np.ptp(target[:, 2])

    def off_skirt(p: np.ndarray) -> np.ndarray:
        return p[(p[:, 2] < z_lo + 0.3 * height) | (p[:, 2] > z_lo + 0.56 * height)]

    visible = chamfer_cm(off_skirt(got), off_skirt(target))
    red = rgb[:, 0] - rgb[:, 1]
    print(f"Avatar from Selected: Chamfer {distance:.2f} cm ({visible:.2f} cm off the skirt), "
          f"{elapsed:.0f} s (render, fit, sculpt, import); "
          f"texture r-g quantiles {np.quantile(red, [0.05, 0.25, 0.5, 0.75, 0.95]).round(2)}")
    # Textured from the views (sRGB-encoded texels): the skirt's red (r - g ~ 0.5) and the skin
    # (r - g ~ 0.1) are both on it.
    assert (red > 0.35).mean() > 0.02 and ((red < 0.2) & (rgb[:, 0] > 0.6)).mean() > 0.2
    # Measured at these settings: 1.58 cm whole, 1.06 cm off the skirt (docs/addon.md); the issue's
    # 1 cm is not reached at test-sized settings (grid 72, 120 iterations, 8 views of 256 px).
    assert distance <= 1.75 and visible <= 1.25
