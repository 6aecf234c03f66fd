"""The avatar pipeline: views -> sculpted mesh -> semantic UVs -> texture -> rig -> files.

``build_avatar`` chains the stages with one typed config per stage and reports progress per stage
and iteration through a callback that may raise to cancel (the job passes one that raises
``JobCancelled``). ``write_outputs`` writes the glb, the OBJ+MTL+PNG and a JSON summary.

Mesh layout of the result: *split vertices* (a vertex per distinct position+UV, duplicated along UV
seams), so ``uvs``, ``weights`` and ``part_labels`` are per vertex, ready for the add-on and glTF.

Two poses: the mesh is sculpted, textured and measured *as posed in the views* (``vertices``,
``normals``, ``mesh_vertices``: what the views show), then rigged and un-posed to SMPL-X's zero
pose (``rest_vertices``, ``rest_normals``, ``joints_rest`` = the body's rest joints at the fitted
betas; see ``rig.canonical_pose``). The files and the job's arrays are in that canonical bind pose,
so a SMPL-X/AMASS pose vector drives the exported armature as it drives the body.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from backend.avatar.body_mesh import BodyMesh
from backend.avatar.fitted_body import views_body
from backend.avatar.geometry.align_views import AlignConfig, align_views
from backend.avatar.geometry.body_gauge import BodyGaugeConfig, body_frame_offset
from backend.avatar.geometry.hands import HandConfig, replace_body_hands
from backend.avatar.geometry.refine import RefineConfig, refine_surface
from backend.avatar.geometry.sculpt import SculptConfig, sculpt
from backend.avatar.io.split_vertices import split_by_uv
from backend.avatar.io.views import ViewSet
from backend.avatar.progress import ProgressFn, no_progress
from backend.avatar.rig.part_labels import closest_body_points, transfer_part_labels
from backend.avatar.rig.skinning import RigConfig, canonical_pose, rig_mesh
from backend.avatar.texture.atlas import Atlas
from backend.avatar.texture.optimise import TextureConfig, auto_texture_size, optimise_texture
from backend.avatar.texture.uv_layout import UVConfig, make_uv_layout
from backend.fitting import FitConfig
from backend.mesh.normals import vertex_normals

# Share of the whole run each stage gets in the overall progress fraction.
STAGE_SPANS: dict[str, tuple[float, float]] = {
    "body": (0.0, 0.02),
    "sculpt.init": (0.02, 0.15),
    "sculpt.refine": (0.15, 0.6),
    "sculpt.surface": (0.6, 0.65),
    "parts": (0.65, 0.67),
    "uv": (0.67, 0.72),
    "texture": (0.72, 0.95),
    "rig": (0.95, 1.0),
    "export": (1.0, 1.0),  # files are written after build_avatar returns
}


@dataclass
class AvatarConfig:
    sculpt: SculptConfig = field(default_factory=SculptConfig)
    uv: UVConfig = field(default_factory=UVConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)
    rig: RigConfig = field(default_factory=RigConfig)
    fit: FitConfig = field(default_factory=FitConfig)  # the body fit, for views without SMPL-X
    hands: HandConfig = field(default_factory=HandConfig)  # the body's hands where cells are too coarse
    # Per-vertex offsets against the full-size masks after the sculpt (geometry/refine.py).
    surface: RefineConfig = field(default_factory=RefineConfig)
    # Each view's camera moved onto the sculpt's silhouette before the surface stage and the texture.
    align: AlignConfig = field(default_factory=AlignConfig)
    # The sculpt moved onto the body's world frame first (the offset no silhouette can see).
    gauge: BodyGaugeConfig = field(default_factory=BodyGaugeConfig)

    def __post_init__(self) -> None:
        self.uv.atlas.texture_size = self.texture.texture_size


@dataclass
class AvatarResult:
    vertices: np.ndarray  # (N,3) split vertices as posed in the views, world, metres
    faces: np.ndarray  # (F,3)
    uvs: np.ndarray  # (N,2), v = 0 at the texture's bottom row
    normals: np.ndarray  # (N,3) as posed in the views
    texture: np.ndarray  # (S,S,3) uint8, row 0 = top
    weights: np.ndarray  # (N,55), rows sum to 1
    parents: np.ndarray  # (55,)
    joints_rest: np.ndarray  # (55,3) bind-pose joints: the body's rest joints (zero pose)
    joint_names: list[str]
    part_labels: np.ndarray  # (N,) index into part_names
    part_names: list[str]
    source_vertex: np.ndarray  # (N,) index of the watertight mesh vertex each split vertex copies
    mesh_vertices: np.ndarray  # watertight sculpted mesh (unsplit)
    mesh_faces: np.ndarray
    atlas: Atlas
    timings: dict[str, float]
    info: dict[str, Any]
    init_mesh: tuple[np.ndarray, np.ndarray] | None = None  # GS mesh before refinement (diagnostics)
    presurface_mesh: tuple[np.ndarray, np.ndarray] | None = None  # before the surface stage (diagnostics)
    # The canonical bind pose (SMPL-X zero pose, body's rest frame: no transl), what is exported.
    # Optional only so that hand-made results keep working; build_avatar always fills them.
    rest_vertices: np.ndarray | None = None  # (N,3) split vertices
    rest_normals: np.ndarray | None = None  # (N,3)
    mesh_rest_vertices: np.ndarray | None = None  # watertight mesh (unsplit) in the zero pose
    joints_posed: np.ndarray | None = None  # (55,3) joints in the views' pose
    pose_transforms: np.ndarray | None = None  # (55,4,4) rest -> views' pose skinning transforms
    pose_offsets: np.ndarray | None = None  # (N,3) pose correctives removed when un-posing

    def bind_vertices(self) -> np.ndarray:
        """The vertices in the bind pose of the exported rig (falls back to the posed ones)."""
        return self.vertices if self.rest_vertices is None else self.rest_vertices

    def bind_normals(self) -> np.ndarray:
        return self.normals if self.rest_normals is None else self.rest_normals


def overall_progress(report: ProgressFn) -> ProgressFn:
    """Wrap a per-stage callback so ``fraction`` becomes the fraction of the whole run."""

    def inner(stage: str, fraction: float, message: str) -> None:
        lo, hi = STAGE_SPANS.get(stage, (0.0, 1.0))
        report(stage, lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)

    return inner


def build_avatar(
    views: ViewSet, config: AvatarConfig, progress: ProgressFn = no_progress, body: BodyMesh | None = None,
    init_mesh: tuple[np.ndarray, np.ndarray] | None = None,
) -> AvatarResult:
    """``init_mesh`` (vertices, faces in the views' frame): the sculpting's starting shape instead of
    the body (e.g. a 3DGM density's mesh); the rig still comes from the body."""
    report = overall_progress(progress)
    timings: dict[str, float] = {}
    train = views.split("train")
    if not train:
        raise ValueError("the views set has no training views (split 'train')")
    t = time.perf_counter()
    fit = None
    if body is None:  # the smplx role's body (else the stand-in), posed or fitted to the views
        body, fit = views_body(views, report, config.fit)
    timings["body"] = time.perf_counter() - t

    cpu = time.process_time()
    start_v, start_f = init_mesh if init_mesh is not None else (body.vertices, body.faces)
    gs = sculpt(train, start_v, start_f, config.sculpt, report)
    timings["sculpt_cpu"] = time.process_time() - cpu
    timings["sculpt_init"], timings["sculpt_refine"] = gs.init_seconds, gs.refine_seconds
    timings["sculpt"] = gs.init_seconds + gs.refine_seconds
    v, f = gs.vertices, gs.faces
    gauge_shift, gauge_points = body_frame_offset(v, body, config.gauge)
    v = v + gauge_shift
    # The body's hand meshes instead of the sculpt's mittens where the grid is too coarse (hands.py):
    # from here on the mesh may be a union of components, open at the wrists.
    swap = replace_body_hands(v, f, body, gs.grid.cell_size, config.hands)
    v, f, hands_moved, hand_weight = swap.vertices, swap.faces, swap.moved, swap.weight
    # The cameras as the sculpt corrected them (views a few pixels off, sculpt.py), for the
    # surface refinement and the texture.
    tex_views = train if gs.cameras is None else [
        replace(view, camera=cam) for view, cam in zip(train, gs.cameras, strict=True)]
    tex_views, shifts = align_views(v, f, tex_views, config.align)
    surface_info: dict[str, Any] = {"iterations": config.surface.iterations,
                                    "view_shifts_px": np.round(shifts, 3).tolist(),
                                    "body_frame_shift_mm": np.round(gauge_shift * 1000, 3).tolist(),
                                    "body_frame_points": gauge_points}
    presurface = (v, f)
    geometry_weights = gs.view_weights  # the views' silhouette confidences, for the texture
    timings["surface_refine"] = timings["surface_refine_cpu"] = 0.0
    if config.surface.iterations > 0:
        cpu = time.process_time()
        # Outlines to the full-size masks; the body's hands (where the grid was too coarse) stay.
        ref = refine_surface(v, f, tex_views, config.surface, gs.view_weights, 1.0 - hand_weight, report)
        v, f = ref.vertices, ref.faces
        geometry_weights = ref.view_weights
        timings["surface_refine"] = ref.seconds
        timings["surface_refine_cpu"] = time.process_time() - cpu  # CPU seconds, all threads
        surface_info.update(
            outline_px_before=round(float(ref.disagreement_before.mean()), 4),
            outline_px_after=round(float(ref.disagreement_after.mean()), 4),
            max_offset_m=round(float(np.abs(ref.offsets).max(initial=0.0)), 5),
        )

    t = time.perf_counter()
    cpu = time.process_time()
    report("parts", 0.0, "transferring body-part labels")
    cp = closest_body_points(body, v)
    labels = transfer_part_labels(body, cp)
    timings["parts"] = time.perf_counter() - t

    t = time.perf_counter()
    report("uv", 0.0, f"unwrapping ({config.uv.unwrap.method})")
    size = config.texture.texture_size or auto_texture_size(v, f, train, config.texture.texels_per_pixel)
    uv_cfg = replace(config.uv, atlas=replace(config.uv.atlas, texture_size=size))
    tex_cfg = replace(config.texture, texture_size=size)
    atlas = make_uv_layout(v, f, labels, body, uv_cfg)
    split = split_by_uv(v, f, atlas.uv)
    timings["uv"] = time.perf_counter() - t

    t = time.perf_counter()
    tex = optimise_texture(split.vertices, split.faces, split.uvs, tex_views, tex_cfg, report,
                           geometry_weights)
    timings["texture"] = time.perf_counter() - t
    timings["et_cpu"] = time.process_time() - cpu  # parts + UVs + texture, CPU seconds (all threads)

    t = time.perf_counter()
    report("rig", 0.0, "transferring skinning weights")
    rig = rig_mesh(body, f, cp, labels, config.rig)
    report("rig", 0.5, "un-posing to the SMPL-X zero pose")
    canon = canonical_pose(body, v, rig.weights, cp)
    timings["rig"] = time.perf_counter() - t
    report("rig", 1.0, "rigged")

    normals = vertex_normals(v, f)[split.source]
    rest_normals = vertex_normals(canon.vertices, f)[split.source]
    return AvatarResult(
        vertices=split.vertices,
        faces=split.faces,
        uvs=split.uvs,
        normals=normals,
        texture=np.clip(np.round(tex.texture * 255), 0, 255).astype(np.uint8),
        weights=rig.weights[split.source],
        parents=rig.parents,
        joints_rest=canon.joints,
        joint_names=rig.joint_names,
        part_labels=labels[split.source],
        part_names=list(body.part_names),
        source_vertex=split.source,
        mesh_vertices=v,
        mesh_faces=f,
        atlas=atlas,
        timings=timings,
        info={
            "normal_source": gs.normal_source,
            "grid_shape": list(gs.grid.shape),
            "grid_cell_m": gs.grid.cell_size,
            "charts": len(atlas.chart_names),
            "atlas_utilisation": atlas.utilisation,
            "texels_seen": float(tex.seen.mean()),
            "body_standin": bool(body.extra.get("standin", True)),
            "unwrap": config.uv.unwrap.method,
            "bind_pose": "smplx_zero",
            "pose_corrective_max_m": float(np.linalg.norm(canon.pose_offsets, axis=1).max(initial=0.0)),
            "texture_size": int(tex.texture.shape[0]),
            "hands_from_body": hands_moved,
            "hands_body_faces": swap.body_faces,
            "surface_refine": surface_info,
            "sculpt_init_iters_run": gs.init_iters_run,
            "sculpt_step_backs": gs.step_backs,
            "robust": _robust_info(train, gs, tex),
            **({"body_fit": fit} if fit is not None else {}),
        },
        init_mesh=None if gs.init_vertices is None else (gs.init_vertices, gs.init_faces),
        presurface_mesh=presurface,
        rest_vertices=canon.vertices[split.source],
        rest_normals=rest_normals,
        mesh_rest_vertices=canon.vertices,
        joints_posed=rig.joints,
        pose_transforms=canon.transforms,
        pose_offsets=canon.pose_offsets[split.source],
    )


def _robust_info(train: list, gs: Any, tex: Any) -> dict[str, Any]:
    """Per training view: the sculpt's confidence, the camera correction (px at the view's focal
    length), the texture's view weight and colour correction (docs/avatar.md, "Robust")."""
    rows = []
    for k, view in enumerate(train):
        row: dict[str, Any] = {"name": view.name}
        if gs.view_weights is not None:
            row["sculpt_weight"] = round(float(gs.view_weights[k]), 4)
        if gs.camera_corrections is not None:
            row["camera_correction_px"] = round(
                float(np.linalg.norm(gs.camera_corrections[k][:2]) * view.camera.K[0, 0]), 3)
        if tex.view_weight is not None:
            row["texture_weight"] = round(float(tex.view_weight[k]), 4)
            row["colour_gain"] = [round(float(x), 4) for x in tex.view_gain[k]]
            row["colour_offset"] = [round(float(x), 4) for x in tex.view_offset[k]]
        rows.append(row)
    return {"views": rows}


def write_outputs(
    result: AvatarResult, out_dir: str | Path, config: AvatarConfig | None = None
) -> dict[str, Path]:
    """avatar.glb, avatar.obj/.mtl/.png, avatar_arrays.npz and avatar.json in ``out_dir``.

    The glb and the OBJ hold the canonical bind pose (SMPL-X zero pose); the as-in-the-views
    geometry travels in the arrays (``vertices_posed``).
    """
    from backend.avatar.io.gltf import SkinnedMesh, write_glb
    from backend.avatar.io.obj import write_obj

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "avatar.glb": write_glb(
            out / "avatar.glb",
            SkinnedMesh(
                vertices=result.bind_vertices(),
                faces=result.faces,
                uvs=result.uvs,
                normals=result.bind_normals(),
                weights=result.weights,
                joints=result.joints_rest,
                parents=result.parents,
                joint_names=result.joint_names,
                texture=result.texture,
            ),
        )
    }
    obj = write_obj(
        out / "avatar.obj",
        result.bind_vertices(),
        result.faces,
        result.uvs,
        result.texture,
        result.bind_normals(),
    )
    files.update({"avatar.obj": obj["obj"], "avatar.mtl": obj["mtl"], "avatar.png": obj["png"]})
    arrays = out / "avatar_arrays.npz"
    np.savez_compressed(arrays, **result_arrays(result))
    files["avatar_arrays.npz"] = arrays
    summary = out / "avatar.json"
    payload = {
        "vertices": len(result.vertices),
        "faces": len(result.faces),
        "timings_s": result.timings,
        **result.info,
        "joint_names": result.joint_names,
        "part_names": result.part_names,
    }
    if config is not None:
        payload["config"] = asdict(config)
    summary.write_text(json.dumps(payload, indent=1, default=str))
    files["avatar.json"] = summary
    if "body_fit" in result.info:  # the fitted body, reusable as a views manifest's smplx entry
        files["body_fit.json"] = out / "body_fit.json"
        files["body_fit.json"].write_text(json.dumps(result.info["body_fit"], indent=1))
    return files


def result_arrays(result: AvatarResult) -> dict[str, np.ndarray]:
    """The protocol arrays the add-on's importer reads (see docs/avatar.md).

    ``vertices``/``normals``/``joints_rest`` are the canonical bind pose (what the importer rigs);
    ``*_posed`` and ``pose_transforms`` give the views' pose back (``vertices_posed`` = LBS of
    ``vertices`` + ``pose_offsets`` with ``pose_transforms``).
    """
    arrays = {
        "vertices": result.bind_vertices().astype(np.float32),
        "faces": result.faces.astype(np.int32),
        "uvs": result.uvs.astype(np.float32),
        "normals": result.bind_normals().astype(np.float32),
        "texture": result.texture,
        "weights": result.weights.astype(np.float32),
        "parents": result.parents.astype(np.int32),
        "joints_rest": result.joints_rest.astype(np.float32),
        "part_labels": result.part_labels.astype(np.int32),
        "vertices_posed": result.vertices.astype(np.float32),
        "normals_posed": result.normals.astype(np.float32),
    }
    optional = {
        "joints_posed": result.joints_posed,
        "pose_transforms": result.pose_transforms,
        "pose_offsets": result.pose_offsets,
    }
    arrays.update({k: v.astype(np.float32) for k, v in optional.items() if v is not None})
    return arrays


def config_from_options(
    grid: int | None = None,
    init_iters: int | None = None,
    refine_iters: int | None = None,
    texture_size: int | None = None,
    texture_iters: int | None = None,
    unwrap: str | None = None,
    normals: str | None = None,
    render_scale: float | None = None,
    surface_iters: int | None = None,
) -> AvatarConfig:
    """An :class:`AvatarConfig` from the few knobs the CLI and the job expose (None = default)."""
    cfg = AvatarConfig()
    if grid is not None:
        if not 8 <= grid <= 512:
            raise ValueError(f"grid must be in [8, 512], got {grid}")
        cfg.sculpt.grid_resolution = grid
    if init_iters is not None:
        cfg.sculpt.init_iters = int(init_iters)
    if refine_iters is not None:
        cfg.sculpt.refine_iters = int(refine_iters)
    if render_scale is not None:
        cfg.sculpt.render_scale = float(render_scale)
    if surface_iters is not None:
        if surface_iters < 0:
            raise ValueError(f"surface iterations must be >= 0, got {surface_iters}")
        cfg.surface.iterations = int(surface_iters)
    if texture_size is not None:
        if not 16 <= texture_size <= 2048:
            raise ValueError(f"texture size must be in [16, 2048], got {texture_size}")
        cfg.texture.texture_size = int(texture_size)
        cfg.uv.atlas.texture_size = int(texture_size)
    if texture_iters is not None:
        cfg.texture.iterations = int(texture_iters)
    if unwrap is not None:
        if unwrap not in ("cylinder", "xatlas"):
            raise ValueError(f"unwrap must be 'cylinder' or 'xatlas', got {unwrap!r}")
        cfg.uv.unwrap.method = unwrap
    if normals is not None:
        if normals not in ("auto", "views", "estimator", "none"):
            raise ValueError(f"normals must be auto|views|estimator|none, got {normals!r}")
        cfg.sculpt.normal_source = normals
    return cfg
