"""The payloads several job kinds share (an SMPL-X pose, an AMASS motion, a camera path, a motion
spec, sizes and shape vectors): declared once here, used by the contracts in :mod:`protocol.kinds`
and :mod:`protocol.kinds_footage`."""

from __future__ import annotations

from .kind_types import (
    MAX_FRAMES,
    REQUIRED,
    Array,
    Enum,
    Float,
    Int,
    List,
    OneOf,
    Param,
    PathParam,
    Size,
    Str,
    Struct,
)

GENDER = Enum(("neutral", "male", "female"))
PROCEDURAL_MOTIONS = ("a-pose", "t-pose", "walk", "turn", "wave")
_F = "F"

SMPLX_POSE = Struct(
    "SMPL-X parameters",
    (
        Param("global_orient", Array("float32", (_F, 3)), help="root rotation, axis-angle"),
        Param("body_pose", Array("float32", (_F, 63)), help="21 body joints, axis-angle"),
        Param("left_hand_pose", Array("float32", (_F, 45)), help="15 joints, full axis-angle (no PCA)"),
        Param("right_hand_pose", Array("float32", (_F, 45))),
        Param("jaw_pose", Array("float32", (_F, 3))),
        Param("leye_pose", Array("float32", (_F, 3))),
        Param("reye_pose", Array("float32", (_F, 3))),
        Param("transl", Array("float32", (_F, 3)), help="metres, protocol world (Y up)"),
        Param("betas", Array("float32", ("B",), (("B", 300),))),
        Param("expression", Array("float32", ("E",), (("E", 100),))),
        Param("gender", GENDER),
        Param("fps", Float(0.0, 1000.0, lo_open=True)),
        Param("frame_start", Int(-1_000_000, 1_000_000)),
    ),
    required_any=("global_orient",),
)

AMASS_MOTION = Struct(
    "AMASS motion",
    (
        Param("poses", Array("float32", (_F, None)), REQUIRED, "(F,165) SMPL-X or (F,156) SMPL+H axis-angle"),
        Param("trans", Array("float32", (_F, 3)), REQUIRED, "metres, AMASS world (Z up)"),
        Param("mocap_frame_rate", Float(0.0, 1000.0, lo_open=True)),
        Param("mocap_framerate", Float(0.0, 1000.0, lo_open=True)),
        Param("betas", Array("float32", ("B",), (("B", 300),))),
        Param("expression", Array("float32", ("E",), (("E", 100),))),
        Param("gender", GENDER),
        Param("surface_model_type", Enum(("smplx", "smplh"))),
    ),
    required_any=("poses",),
)

CAMERA_PATH = Struct(
    "CameraPath",
    (
        Param("K", Array("float64", (_F, 3, 3)), REQUIRED, "intrinsics, pixels (OpenCV)"),
        Param("R", Array("float64", (_F, 3, 3)), REQUIRED, "world-to-camera rotation"),
        Param("t", Array("float64", (_F, 3)), REQUIRED, "world-to-camera translation, metres"),
        Param("width", Int(1, 4096), REQUIRED),
        Param("height", Int(1, 4096), REQUIRED),
        Param("near", Float(0.0, 1e6, lo_open=True)),
        Param("far", Float(0.0, 1e6, lo_open=True)),
        Param("frame_start", Int(-1_000_000, 1_000_000)),
        Param("fps", Float(0.0, 1000.0, lo_open=True)),
        Param("names", List(Str(128), 0, MAX_FRAMES)),
    ),
    required_any=("K",),
)

MOTION = OneOf(
    (
        Enum(PROCEDURAL_MOTIONS),
        PathParam("file", (".npz", ".bvh")),
        AMASS_MOTION,
        SMPLX_POSE,
    )
)
ORBIT = Str(16, r"orbit:([1-9][0-9]{0,2})", 'camera spec "orbit:N", N in 1-999')
SIZE = Size()
BETAS = Array("float32", ("B",), (("B", 300),))
EXPRESSION = Array("float32", ("E",), (("E", 100),))
PREVIEW_PASSES = ("rgb", "mask", "depth", "normal", "pose")

MOTION_FILE = PathParam("file", (".npz", ".bvh"))
PHOTO_FILE = PathParam("file", (".png", ".jpg", ".jpeg", ".webp"))
