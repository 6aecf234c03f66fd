"""The Footage panel's settings (per scene): which shot, which avatar and motion, the camera, depth,
route, where the avatar stands, shadow and lighting (``scene.avatar_studio.footage``).

Choices come from the footage.insert contract (``protocol/kinds_footage.py`` through
``protocol.kinds``): the routes, lighting modes and procedural motions are the contract's lists,
not copies. Paths the backend reads (an avatar folder, a motion or depth file) are paths on the
backend; for a local backend the add-on copies what lies outside its input roots into the
backend's exchange folder (``footage_export.py``).
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    PointerProperty,
    StringProperty,
)

from .wire import footage_contract_module, kinds_module

kinds = kinds_module()
footage_kinds = footage_contract_module()

SOURCE_STRIP, SOURCE_CLIP = "STRIP", "CLIP"
AVATAR_FOLDER, AVATAR_OBJECT = "FOLDER", "OBJECT"
MOTION_FILE, MOTION_ACTION = "FILE", "ACTION"
DEPTH_NONE, DEPTH_PATH, DEPTH_ESTIMATOR = "NONE", "PATH", "ESTIMATOR"


# Tooltips of the contract's choices (pairs, so a choice that shares a param's name is no key here).
ROUTE_HELP = (("3d", "Exact 3D compositing (no weights)"), ("neural", "MIMO's decoder (model weights)"))
LIGHTING_HELP = (("plate", "Spherical harmonics fitted to the plate"),
                 ("sh", "Given spherical harmonics"), ("flat", "Albedo only"))


def _help(pairs: tuple[tuple[str, str], ...], choice: str) -> str:
    return next((text for name, text in pairs if name == choice), choice)


def _is_armature_or_mesh(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type in ("ARMATURE", "MESH")


def _is_armature(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


def _is_camera(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


class AVS_FootageSettings(bpy.types.PropertyGroup):
    __slots__ = ()  # Blender 5 warns about property groups without it

    source: EnumProperty(
        name="Footage",
        items=[(SOURCE_STRIP, "Strip", "A movie or image-sequence strip of the Video Sequence Editor"),
               (SOURCE_CLIP, "Movie Clip", "A Movie Clip datablock (e.g. the one the camera was solved on)")],
        default=SOURCE_STRIP,
    )
    strip_name: StringProperty(name="Strip", description="The footage's movie or image strip")
    clip: PointerProperty(name="Clip", type=bpy.types.MovieClip)
    use_scene_range: BoolProperty(
        name="Scene Range", default=True,
        description="Use the footage frames that lie inside the scene's frame range (else the whole strip)",
    )
    avatar_source: EnumProperty(
        name="Avatar",
        items=[(AVATAR_OBJECT, "Imported", "An avatar imported from an avatar job of this scene"),
               (AVATAR_FOLDER, "Folder on Backend",
                "A folder avatar.from_views or `avatar-studio avatar` wrote, on the backend")],
        default=AVATAR_OBJECT,
    )
    avatar_object: PointerProperty(name="Avatar Object", type=bpy.types.Object, poll=_is_armature_or_mesh,
                                   description="The avatar's armature or mesh (from an avatar job)")
    avatar_dir: StringProperty(name="Avatar Folder",
                               description="Path on the backend (inside its input roots)")
    motion: EnumProperty(
        name="Motion",
        items=[*((m, m.title(), f"Procedural {m}") for m in kinds.PROCEDURAL_MOTIONS),
               (MOTION_FILE, "File on Backend", "An AMASS .npz or .bvh (inside the backend's input roots)"),
               (MOTION_ACTION, "Action", "The action of an SMPL-X armature, over the footage frames")],
        default="walk",
    )
    motion_path: StringProperty(name="Motion File", subtype="FILE_PATH",
                                description="AMASS .npz or .bvh: copied for a local backend when outside "
                                            "its input roots")
    motion_armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature,
                                     description="SMPL-X armature whose action drives the avatar "
                                                 "(empty: the avatar's own armature)")
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="The shot's camera, solved or keyed (empty: the scene camera)")
    depth_source: EnumProperty(
        name="Depth",
        items=[(DEPTH_NONE, "None", "No scene depth (occluder masks only)"),
               (DEPTH_PATH, "Files", "A .npy (F,H,W) or a folder of per-frame .npy/.exr, metres"),
               (DEPTH_ESTIMATOR, "Estimate", "The backend's depth-estimator model role")],
        default=DEPTH_NONE,
    )
    depth_path: StringProperty(name="Depth Path", subtype="FILE_PATH")
    route: EnumProperty(
        name="Route",
        items=[(r, r.upper() if r == "3d" else r.title(), _help(ROUTE_HELP, r))
               for r in footage_kinds.FOOTAGE_ROUTES],
        default=footage_kinds.FOOTAGE_ROUTES[0],
    )
    place_from_cursor: BoolProperty(name="At 3D Cursor", default=True,
                                    description="Start the motion's root at the 3D cursor")
    place: FloatVectorProperty(name="Place", size=3, subtype="TRANSLATION", unit="LENGTH",
                               description="Where the motion's root starts (Blender world)")
    heading: FloatProperty(name="Heading", default=0.0, min=-360.0, max=360.0,
                           description="Turn of the motion about the up axis, degrees")
    shadow: FloatProperty(name="Shadow", default=0.6, min=0.0, max=1.0, subtype="FACTOR")
    lighting: EnumProperty(
        name="Lighting",
        items=[(m, m.title(), _help(LIGHTING_HELP, m)) for m in footage_kinds.FOOTAGE_LIGHTING],
        default=footage_kinds.FOOTAGE_LIGHTING[0],
    )
    paths_on_backend: BoolProperty(
        name="Paths Inside Input Roots", default=False,
        description="Send the footage, motion and depth paths as they are (they are inside the "
                    "backend's --input-root); else a local backend gets copies in its exchange folder",
    )
    # The last footage job submitted from this scene (Cancel, the panel's status line).
    last_job_key: StringProperty(options={"HIDDEN", "SKIP_SAVE"})
