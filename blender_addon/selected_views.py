"""Render the selected meshes into a views folder (docs/avatar.md) for ``avatar.from_views``.

"Avatar from Selected" turns any character in the scene into an avatar: the selected mesh objects
are rendered from K cameras on rings around their bounding box, each view as an RGBA image (alpha
is the object mask: only the selection is visible, the film is transparent) and a world-space
normal map, and the cameras are converted by ``protocol.cameras`` (the one Blender <-> protocol
conversion). The views carry no ``smplx`` entry: the backend fits the body itself.

Rendering is done one view per :meth:`SelectedViews.step` so the UI never blocks for more than
one small render: the operator steps it from a timer (``bpy.app.timers``), tests call ``step``.
The normal pass is always Workbench: a copy of the selection whose per-corner colour attribute
holds the encoded world normal, shaded flat with the Standard view transform (the colour is
linearised first so the written 8-bit PNG holds exactly ``(n + 1) / 2``), re-oriented for each
view so that every visible face's normal faces the camera (cloth modelled single-sided with its
normals pointing in is common). Each camera stands as close as its view of the selection's box
allows. The colour pass uses the
chosen engine (Workbench flat colours, or Cycles with few samples).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from .wire import cameras_module

cameras = cameras_module()

NORMAL_ATTRIBUTE = "avs_world_normal"
VIEWS_FORMAT = "avatar-studio.views"  # backend/avatar/io/views.py FORMAT_NAME
# Fields of the views file format (backend/avatar/io/views.py), not job params: two of them share a
# name with params, so they are spelled once here (the add-on's param-literal scan stays strict).
VIEWS_LIST, VIEW_IMAGE = "views", "image"


@dataclass
class ViewSettings:
    views_per_ring: int = 6
    elevations_deg: tuple[float, ...] = (0.0, 30.0)
    resolution: int = 384
    engine: str = "WORKBENCH"  # or "CYCLES"
    cycles_samples: int = 16
    margin: float = 1.08  # framing: the bounding sphere fills 1/margin of the view


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def world_bounds(objects: list[bpy.types.Object]) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the objects' evaluated bounding-box corners in Blender world coordinates."""
    corners = [np.array(o.matrix_world) @ np.append(np.array(c), 1.0) for o in objects for c in o.bound_box]
    pts = np.array(corners)[:, :3]
    return pts.min(axis=0), pts.max(axis=0)


def ring_poses(lo: np.ndarray, hi: np.ndarray, settings: ViewSettings, fov: float) -> list[np.ndarray]:
    """4x4 Blender camera world matrices on rings around the box, all looking at its centre, each
    as close as its view of the box allows (square image): the box's corners fill the frame up to
    ``1 / margin``. A distance fitted per view, not the bounding sphere's, gives the character
    ~25 % more pixels across (an A-pose is wide and shallow; its sphere is far larger than any view of it)."""
    centre = (lo + hi) / 2
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    corners = corners - centre
    tan_half = math.tan(fov / 2) / settings.margin
    poses = []
    for elevation in settings.elevations_deg:
        el = math.radians(elevation)
        for i in range(settings.views_per_ring):
            az = 2 * math.pi * i / settings.views_per_ring
            # Blender: -Y is the front of a character; azimuth 0 looks at the front.
            back = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
            rot = np.array(Vector((-back).tolist()).to_track_quat("-Z", "Y").to_matrix())
            right, up, forward = rot[:, 0], rot[:, 1], -rot[:, 2]
            # A corner at depth d - c.f must have |c.r| and |c.u| <= tan_half * (d - c.f).
            depth = corners @ forward
            lateral = np.maximum(np.abs(corners @ right), np.abs(corners @ up))
            distance = float((depth + lateral / tan_half).max())
            m = np.eye(4)
            m[:3, :3] = rot
            m[:3, 3] = centre + distance * back
            poses.append(m)
    return poses


@dataclass
class NormalCopy:
    """A world-space copy of a selected object whose corner colours encode its normals, re-oriented
    per view (all arrays per corner, Blender world frame)."""

    obj: bpy.types.Object
    normals: np.ndarray  # (corners, 3)
    face_centres: np.ndarray  # (corners, 3): the centre of each corner's face
    face_normals: np.ndarray  # (corners, 3): the normal of each corner's face

    def orient_towards(self, eye: np.ndarray) -> None:
        """Encode the normals seen from ``eye``: a face seen from behind shows its back, whose
        normal is the opposite one. Single-sided cloth (a skirt, a cape) is often modelled with its
        normals pointing in; its front would otherwise tell the backend the surface faces away
        from the camera, and the sculpt carves the garment away."""
        away = ((self.face_centres - eye) * self.face_normals).sum(axis=1) > 0
        normals = np.where(away[:, None], -self.normals, self.normals)
        normals = cameras.blender_to_protocol_points(normals)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)
        rgba = np.ones((len(normals), 4))
        rgba[:, :3] = _srgb_to_linear(normals * 0.5 + 0.5)
        attr = self.obj.data.color_attributes[NORMAL_ATTRIBUTE]
        attr.data.foreach_set("color", rgba.astype(np.float32).ravel())
        self.obj.data.update()


def _normal_copy(obj: bpy.types.Object, depsgraph: Any, collection: bpy.types.Collection) -> NormalCopy:
    """A world-space copy of ``obj``'s evaluated mesh with a corner colour attribute for its normals
    in the protocol frame (Y up), set per view by :meth:`NormalCopy.orient_towards`."""
    mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
    mesh.transform(obj.matrix_world)
    if hasattr(mesh, "corner_normals"):  # Blender 4.1+
        normals = np.empty(len(mesh.loops) * 3, dtype=np.float32)
        mesh.corner_normals.foreach_get("vector", normals)
    else:  # pragma: no cover - older Blender
        mesh.calc_normals_split()
        normals = np.empty(len(mesh.loops) * 3, dtype=np.float32)
        mesh.loops.foreach_get("normal", normals)
    count = np.empty(len(mesh.polygons), dtype=np.int64)
    mesh.polygons.foreach_get("loop_total", count)
    start = np.empty(len(mesh.polygons), dtype=np.int64)
    mesh.polygons.foreach_get("loop_start", start)
    centres = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
    mesh.polygons.foreach_get("center", centres)
    face_n = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
    mesh.polygons.foreach_get("normal", face_n)
    corner_face = np.zeros(len(mesh.loops), dtype=np.int64)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    corner_face[np.repeat(start, count) + within] = np.repeat(np.arange(len(mesh.polygons)), count)
    attr = mesh.color_attributes.new(NORMAL_ATTRIBUTE, "FLOAT_COLOR", "CORNER")
    mesh.color_attributes.active_color = attr
    copy = bpy.data.objects.new(f"{obj.name} (normals)", mesh)
    collection.objects.link(copy)
    return NormalCopy(copy, normals.reshape(-1, 3).astype(np.float64),
                      centres.reshape(-1, 3).astype(np.float64)[corner_face],
                      face_n.reshape(-1, 3).astype(np.float64)[corner_face])


@dataclass
class SelectedViews:
    """K views of ``objects`` rendered into ``folder``, one per :meth:`step`."""

    objects: list[bpy.types.Object]
    folder: Path
    settings: ViewSettings = field(default_factory=ViewSettings)
    scene: bpy.types.Scene | None = None
    done: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("select at least one mesh object")
        self.scene = self.scene or bpy.context.scene
        self.folder = Path(self.folder)
        for sub in ("rgba", "normal"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        cam_data = bpy.data.cameras.new("AVS views camera")
        cam_data.lens, cam_data.sensor_width, cam_data.sensor_fit = 50.0, 36.0, "HORIZONTAL"
        self.camera = bpy.data.objects.new("AVS views camera", cam_data)
        self.scene.collection.objects.link(self.camera)
        fov = 2 * math.atan(cam_data.sensor_width / 2 / cam_data.lens)
        lo, hi = world_bounds(self.objects)
        self.poses = ring_poses(lo, hi, self.settings, fov)
        radius = float(np.linalg.norm(hi - lo)) / 2
        distances = [float(np.linalg.norm(m[:3, 3] - (lo + hi) / 2)) for m in self.poses]
        cam_data.clip_start = max(1e-3, min(distances) - 2 * radius)
        cam_data.clip_end = max(distances) + 2 * radius
        depsgraph = bpy.context.evaluated_depsgraph_get()
        self.normal_copies = [_normal_copy(o, depsgraph, self.scene.collection) for o in self.objects]
        self.normal_objects = [c.obj for c in self.normal_copies]

    @property
    def total(self) -> int:
        return len(self.poses)

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def _render(self, visible: list[bpy.types.Object], path: Path, normals: bool) -> None:
        scene = self.scene
        r, shading, vs = scene.render, scene.display.shading, scene.view_settings
        keep = {o.name: o.hide_render for o in scene.objects}
        saved = (scene.camera, r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage,
                 r.pixel_aspect_x, r.pixel_aspect_y, r.film_transparent, r.use_sequencer, r.filepath,
                 r.image_settings.file_format, r.image_settings.color_mode, shading.light, shading.color_type,
                 vs.view_transform, vs.look, vs.exposure, vs.gamma)
        try:
            shown = {o.name for o in visible} | {self.camera.name}
            for o in scene.objects:
                o.hide_render = o.name not in shown
            scene.camera = self.camera
            r.resolution_x = r.resolution_y = self.settings.resolution
            r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y = 100, 1.0, 1.0
            r.film_transparent, r.use_sequencer, r.filepath = True, False, str(path)
            r.image_settings.file_format = "PNG"
            r.image_settings.color_mode = "RGB" if normals else "RGBA"
            vs.view_transform, vs.look, vs.exposure, vs.gamma = "Standard", "None", 0.0, 1.0
            if normals or self.settings.engine == "WORKBENCH":
                r.engine = "BLENDER_WORKBENCH"
                shading.light = "FLAT"
                shading.color_type = "VERTEX" if normals else "MATERIAL"
                if not normals and any(len(o.data.color_attributes) for o in visible if o.type == "MESH") \
                        and not any(o.data.materials for o in visible if o.type == "MESH"):
                    shading.color_type = "VERTEX"
            else:
                r.engine = "CYCLES"
                scene.cycles.samples = self.settings.cycles_samples
            bpy.ops.render.render(write_still=True)
        finally:
            for name, hidden in keep.items():
                if name in scene.objects:
                    scene.objects[name].hide_render = hidden
            (scene.camera, r.engine, r.resolution_x, r.resolution_y, r.resolution_percentage,
             r.pixel_aspect_x, r.pixel_aspect_y, r.film_transparent, r.use_sequencer, r.filepath,
             r.image_settings.file_format, r.image_settings.color_mode, shading.light, shading.color_type,
             vs.view_transform, vs.look, vs.exposure, vs.gamma) = saved

    def step(self) -> bool:
        """Render the next view (colour + normals); True once all are written (then :meth:`finish`)."""
        if self.finished:
            return True
        i = self.done
        name = f"view{i:03d}"
        self.camera.matrix_world = Matrix(self.poses[i].tolist())
        bpy.context.view_layer.update()
        self._render(self.objects, self.folder / "rgba" / f"{name}.png", normals=False)
        for copy in self.normal_copies:
            copy.orient_towards(self.poses[i][:3, 3])
        self._render(self.normal_objects, self.folder / "normal" / f"{name}.png", normals=True)
        cd = self.camera.data
        bcam = cameras.BlenderCamera(
            lens=cd.lens, sensor_width=cd.sensor_width, sensor_height=cd.sensor_height,
            sensor_fit=cd.sensor_fit,
            shift_x=cd.shift_x, shift_y=cd.shift_y, clip_start=cd.clip_start, clip_end=cd.clip_end,
            resolution_x=self.settings.resolution, resolution_y=self.settings.resolution,
            matrix_world=np.array(self.poses[i]),
        )
        frame = cameras.camera_path_from_blender([bcam]).to_payload()
        self.entries.append({
            "name": name, "K": frame["K"][0].tolist(), "R": frame["R"][0].tolist(),
            "t": frame["t"][0].tolist(),
            "width": frame["width"], "height": frame["height"], "near": frame["near"], "far": frame["far"],
            VIEW_IMAGE: f"rgba/{name}.png", "normal": f"normal/{name}.png", "split": "train",
        })
        self.done += 1
        if self.finished:
            self.finish()
        return self.finished

    def finish(self) -> Path:
        """Write views.json (no smplx entry: the backend fits the body) and remove the helpers."""
        manifest = {"format": VIEWS_FORMAT, "version": 1, "normal_space": "world", VIEWS_LIST: self.entries,
                    "extra": {"source": "blender.selected", "objects": [o.name for o in self.objects]}}
        path = self.folder / "views.json"
        path.write_text(json.dumps(manifest, indent=1))
        self.cleanup()
        return path

    def cleanup(self) -> None:
        for obj in [*self.normal_objects, self.camera]:
            data = obj.data
            bpy.data.objects.remove(obj)
            if isinstance(data, bpy.types.Mesh):
                bpy.data.meshes.remove(data)
            elif isinstance(data, bpy.types.Camera):
                bpy.data.cameras.remove(data)
        self.normal_objects, self.normal_copies, self.camera = [], [], None
