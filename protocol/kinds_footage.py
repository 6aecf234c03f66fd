"""Contracts of the footage job kinds (issue 13; docs/footage.md): ``footage.decompose`` lifts a
shot into MIMO's layers (people, scene with them removed, depth), ``footage.insert`` puts an
avatar into the shot (the exact 3D route, or the neural MIMO route) and returns the composite and
its layers. Both read the same footage params, declared once here; :mod:`protocol.kinds` adds
these contracts to ``KINDS``.

File layout of the results (a test keeps the jobs to it): per-frame files are numbered by the
footage frame they belong to, ``%06d`` 1-based (``composite/000012.png`` is the shot's frame 12),
so a VSE strip of a layer starts where that frame sits on the footage strip.
"""

from __future__ import annotations

from .kind_types import (
    REQUIRED,
    Array,
    Bool,
    Enum,
    Float,
    Int,
    JobContract,
    OneOf,
    Param,
    PathParam,
    Result,
    ResultArray,
)
from .payloads import CAMERA_PATH, MOTION, SMPLX_POSE

# Containers the decoder (imageio-ffmpeg) is asked to open; an image folder holds numbered
# FOOTAGE_IMAGE_SUFFIXES files, read in natural order of the number in their names.
FOOTAGE_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
FOOTAGE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOOTAGE_DEPTH_SUFFIXES = (".npy", ".exr")
FOOTAGE_ROUTES = ("3d", "neural")
FOOTAGE_LIGHTING = ("plate", "sh", "flat")
FOOTAGE_INPAINT = ("propagate", "model")
# What one footage job may read and write at most: frames, and frames x pixels (checked from the
# container's header before any frame is decoded, so a hostile file cannot make the job decode
# more). 600 frames = 20 s at 30 fps; 600 x 1920 x 1080 is ~1.2 G pixels.
FOOTAGE_MAX_FRAMES = 600
FOOTAGE_MAX_PIXELS = 1_300_000_000
FOOTAGE_MAX_SIDE = 4096
# The layers footage.insert writes, one folder of numbered PNGs each (LAYER/%06d.png).
FOOTAGE_INSERT_LAYERS = ("composite", "character", "shadow", "occlusion")
# The layers footage.decompose writes (and footage.insert under layers/): the frames used, the
# people already in the shot (mask + their RGBA), the scene with them removed.
FOOTAGE_DECOMPOSE_LAYERS = ("video", "masks", "human", "scene")

VIDEO = OneOf((PathParam("file", FOOTAGE_VIDEO_SUFFIXES), PathParam("dir")))
DEPTH = OneOf((PathParam("file", (".npy",)), PathParam("dir")))


def _footage_params(camera_required: bool) -> tuple[Param, ...]:
    return (
        Param("video", VIDEO, REQUIRED,
              f"a video file ({'/'.join(FOOTAGE_VIDEO_SUFFIXES)}) or a folder of numbered "
              f"{'/'.join(FOOTAGE_IMAGE_SUFFIXES)} images, inside the input roots"),
        Param("frame_start", Int(1, 1_000_000), 1, "first footage frame used, 1-based"),
        Param("frames", Int(1, FOOTAGE_MAX_FRAMES), None, "frames used (default: to the end)"),
        Param("fps", Float(0.0, 240.0, lo_open=True), None, "default: the video's (25 for image folders)"),
        Param("camera", CAMERA_PATH, REQUIRED if camera_required else None,
              "the shot's camera: one frame (static) or one per footage frame used, sized as the "
              "footage (Blender's solved camera through protocol.cameras)"),
        Param("depth", DEPTH, None,
              "scene depth in metres along the optical axis: one .npy (F,H,W) or a folder of "
              "per-frame .npy/.exr, one per frame used, sized as the footage"),
        Param("depth_estimator", Bool(), False,
              "without depth: estimate it with the depth-estimator role, scaled to the camera's "
              "ground plane (an error when the role is missing)"),
        Param("person_masks", PathParam("dir"), None,
              "people already in the shot: numbered PNG masks (white = person), one per frame used"),
        Param("segment", Bool(), False,
              "find the people with the person-segmentation role (instead of person_masks)"),
        Param("inpaint", Enum(FOOTAGE_INPAINT), "propagate",
              "fill where people are removed: background propagated from other frames along the "
              "camera motion, then spatial inpainting; model: the inpainting role"),
        Param("occluder_masks", PathParam("dir"), None,
              "scene objects in front of everything inserted (numbered PNG masks), for shots "
              "without depth"),
    )


_SHOT_DATA = (
    ("frames", "frames used"), ("frame_start", "first footage frame, 1-based"),
    ("width", "pixels"), ("height", "pixels"), ("fps", ""),
    ("depth_source", '"given", "estimator" or "none"'),
    ("people", '"masks", "segmentation" or "none"'),
    ("timings_s", "per stage"),
)
_SHOT_ARRAYS = (
    ResultArray("camera_K", "float64", ("F", 3, 3), "the camera per frame used"),
    ResultArray("camera_R", "float64", ("F", 3, 3)),
    ResultArray("camera_t", "float64", ("F", 3)),
)
_DECOMPOSE_FILES = (
    ("video/%06d.png", "the footage frames used"),
    ("masks/%06d.png", "people already in the shot (white = person), when there are any"),
    ("human/%06d.png", "their pixels, RGBA"),
    ("scene/%06d.png", "the scene layer: the frames with the people removed and filled"),
    ("depth/%06d.npy", "scene depth, metres (float32, H x W), when known"),
    ("config.json", "the template's description: frames, fps, camera, sources, counts"),
)


def footage_contracts() -> list[JobContract]:
    decompose = JobContract(
        "footage.decompose",
        "Lift a shot into MIMO's layers: the people already in it, the scene with them removed "
        "(inpainted), depth and camera, written as a template folder (docs/footage.md).",
        _footage_params(camera_required=False),
        Result(
            data=(*_SHOT_DATA,
                  ("removed_pixels", "person pixels removed over all frames"),
                  ("propagated_fraction", "of those, filled from other frames"),
                  ("folder", '"template": the artifacts under it are the template folder')),
            arrays=_SHOT_ARRAYS,
            files=tuple((f"template/{name}", meaning) for name, meaning in _DECOMPOSE_FILES),
        ),
        exclusive=(("person_masks", "segment"), ("depth", "depth_estimator")),
    )
    insert = JobContract(
        "footage.insert",
        "Insert an avatar into a shot: driven by a motion (or following a person's SMPL-X track, "
        "who is removed), placed on the ground plane, rendered through the shot's camera, lit from "
        "the plate, with a shadow and depth-aware occlusion; 3d: exact compositing, neural: MIMO's "
        "decoder on the layers (docs/footage.md).",
        (
            *_footage_params(camera_required=True),
            Param("avatar", PathParam("dir"), REQUIRED,
                  "a folder avatar.from_views (or the CLI's avatar) wrote: avatar_arrays.npz + avatar.glb"),
            Param("motion", MOTION, "walk", "procedural name, AMASS .npz / .bvh path, AMASS or SMPL-X"),
            Param("track", SMPLX_POSE, None,
                  "replacement: the SMPL-X track (world) of the person the avatar replaces; the "
                  "avatar follows it and the person (person_masks) is removed"),
            Param("place", Array("float64", (3,)), [0.0, 0.0, 0.0],
                  "where the motion's root starts, world metres (Y up); the ground plane is y = place[1]"),
            Param("heading", Float(-360.0, 360.0), 0.0, "turn of the motion about the up axis, degrees"),
            Param("route", Enum(FOOTAGE_ROUTES), "3d", "3d: exact compositing; neural: MIMO's decoder"),
            Param("lighting", Enum(FOOTAGE_LIGHTING), "plate",
                  "plate: spherical harmonics fitted to the plate; sh: the given sh; flat: albedo only"),
            Param("sh", Array("float32", (9, 3)), None,
                  "order-2 spherical-harmonic irradiance, RGB (e.g. from the scene's lights)"),
            Param("shadow", Float(0.0, 1.0), 0.6, "strength of the shadow on the ground plane (0: none)"),
            Param("motion_blur", Int(0, 16), 0, "sub-frame samples across the shutter (0: off)"),
            Param("antialias", Int(1, 4), 2, "supersampling per side"),
            Param("mp4", Bool(), True, "also encode composite.mp4"),
            Param("steps", Int(1, 200), 25, "neural route: denoising steps"),
            Param("seed", Int(0, 2**53 - 1), 0, "neural route: same seed, same frames"),
            Param("window", Int(1, 64), 16, "neural route: frames per denoising window"),
            Param("overlap", Int(0, 63), 4, "neural route: frames shared by neighbouring windows"),
            Param("guidance", Float(0.0, 50.0), 3.5, "neural route: classifier-free guidance"),
        ),
        Result(
            data=(*_SHOT_DATA,
                  ("route", "as run"), ("lighting", "as run"),
                  ("visible_fraction", "mean over frames of the character's pixels not occluded"),
                  ("folder", '"insert": the artifacts under it are the result folder')),
            arrays=(
                *_SHOT_ARRAYS,
                ResultArray("root", "float32", ("F", 3), "the avatar's root per frame, world metres"),
                ResultArray("sh", "float32", (9, 3), "the lighting used (zeros for flat)"),
                ResultArray("character_pixels", "int32", ("F",), "pixels the character covers"),
                ResultArray("occluded_pixels", "int32", ("F",), "of those, behind the scene"),
            ),
            files=(
                ("insert/composite/%06d.png", "the shot with the character in it"),
                ("insert/character/%06d.png", "the character alone, RGBA (straight alpha), occluded"),
                ("insert/shadow/%06d.png", "the shadow's darkening, 8-bit grey (0 = none)"),
                ("insert/occlusion/%06d.png", "matte of scene pixels in front of the character (white)"),
                ("insert/composite.mp4", "with mp4"),
                ("insert/layers/...", "the footage.decompose template of the shot (same names), when "
                 "it was decomposed: people removed or depth estimated"),
                ("insert/footage.json", "settings, sources, timings, frame numbers"),
            ),
        ),
        exclusive=(("person_masks", "segment"), ("depth", "depth_estimator"), ("motion", "track")),
    )
    return [decompose, insert]
