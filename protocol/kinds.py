# Over 450 lines: every job kind's contract, in the one home the server, jobs, add-on and CLI read.
"""Job-kind contracts: the params each job kind accepts and the result it returns (spec:
docs/protocol.md §11, generated from this module by :func:`spec_markdown`).

One declaration per kind, used by every side:
- the server validates a ``submit`` against it before anything is stored (:func:`validate`);
- the backend's worker builds the typed params the job function receives (:func:`parse`, with a
  ``resolve_path`` hook that confines paths to the server's input roots);
- the add-on and the CLI build params through it (:func:`names`, :func:`describe`).
A new job kind starts here. Pure Python + numpy, like the rest of ``protocol/``; the types live in
:mod:`protocol.kind_types`.

Errors name the field, e.g. ``params.size[0]: must be an int in [1, 4096], got 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .kind_types import (
    MAX_FRAMES,
    REQUIRED,
    Array,
    Bool,
    Enum,
    Float,
    Int,
    JobContract,
    List,
    OneOf,
    Param,
    ParamError,
    ParseContext,
    PathParam,
    Result,
    ResultArray,
    Size,
    Str,
    Struct,
    Type,
    parse_fields,
)

__all__ = [
    "KINDS",
    "REQUIRED",
    "JobContract",
    "Param",
    "ParamError",
    "PathParam",
    "Struct",
    "check_result",
    "contract",
    "describe",
    "names",
    "parse",
    "spec_markdown",
    "validate",
]

# ----------------------------------------------------------------------------------- shared payloads

from .kinds_footage import footage_contracts
from .kinds_threedgm import threedgm_contracts
from .payloads import (  # re-exported: callers read them as kinds.X
    BETAS,
    CAMERA_PATH,
    EXPRESSION,
    GENDER,
    MOTION,
    MOTION_FILE,
    ORBIT,
    PHOTO_FILE,
    PREVIEW_PASSES,
    PROCEDURAL_MOTIONS,
    SIZE,
    SMPLX_POSE,
)

SYNTHETIC = Struct(
    "synthetic character",
    (
        Param("shape", Enum(("average", "tall", "broad")), "average"),
        Param("resolution", Int(64, 2048), 512, "pixels of each rendered view"),
        Param("skirt", Bool(), True),
        Param("hair", Bool(), True),
    ),
)

# Synthetic clips (clips.render; the spec format itself: backend/clips/spec.py, docs/clips.md).
CLIP_PASSES = ("rgb", "depth", "normal", "instance", "amodal", "part", "scene_depth", "flow", "mp4",
               "overlay")
# What a clip spec without ``passes`` writes (scene_depth, flow, mp4 and overlay are asked for by name;
# overlay: the ground truth drawn over the RGB, cam_xx/overlay/NNNNNN.png, as ``clips vis`` draws it).
CLIP_DEFAULT_PASSES = ("rgb", "depth", "normal", "instance", "amodal", "part")
CLIP_RIG_KINDS = ("ring", "orbit", "handheld", "dolly")  # sampled rigs; "path": explicit cameras
CLIP_CAMERA_KINDS = (*CLIP_RIG_KINDS, "path")
CLIP_MAX_PEOPLE = 4
CLIP_RIG = Str(
    24,
    rf"({'|'.join(CLIP_RIG_KINDS)}):([1-9]|[1-5][0-9]|6[0-4])",
    f'camera rig "KIND:N", KIND {"|".join(CLIP_RIG_KINDS)}, N in 1-64',
)
# What one clips.render job may write at most: images = clips x cameras x frames, and pixels. Each
# image is a stored file (~13 ms to store with its fsyncs here), stored after the job returns and
# before its terminal event, so the bound also keeps that under the job's watchdog (300 s).
CLIP_MAX_IMAGES = 5_000
CLIP_MAX_PIXELS = 1 << 31

# ----------------------------------------------------------------------------------- the kinds

_CONTRACTS = [
    JobContract(
        "system.info",
        "Versions, device, CPU count and which model roles are present.",
        (),
        Result(
            data=(
                ("python", "Python version"), ("numpy", "numpy version"), ("pyzmq", "pyzmq version"),
                ("torch", "torch version or null"), ("device", '"cuda" or "cpu"'),
                ("cpu_count", "CPUs"), ("render_threads", "threads of the CPU rasterizer"),
                ("models", "role -> {present, source, location}"),
                ("body_model", '{"kind": "licensed"|"stand-in", ...}: the body every job uses'),
            )
        ),
    ),
    JobContract(
        "system.sleep",
        "A cheap, cancellable job for tests of servers and clients: sleeps in 0.1 s ticks.",
        (
            Param("seconds", Float(0.0, 3600.0), 1.0, "how long to sleep"),
            Param("ignore_cancel", Bool(), False, "never check the cancel flag (the server must kill it)"),
            Param("silent", Bool(), False, "no progress events (the watchdog must fire)"),
            Param("fail", Str(1000), None, "raise RuntimeError(fail) at the end"),
            Param("preview", Bool(), False, "an 8x8 RGB preview with each progress event"),
            Param("file_bytes", Int(0, 1 << 30), 0, "also return files/data.bin of this size"),
            Param("echo", Array("float64", (None,)), None,
                  "an input array (a buffer frame), for tests of stored inputs; data.echo = [size, sum]"),
        ),
        Result(
            data=(("seconds", "as asked"), ("ticks", "progress ticks"), ("slept_s", "measured"),
                  ("echo", "with echo: [element count, sum] of the input array")),
            arrays=(ResultArray("ticks", "float32", ("T",), "0..T-1"),),
            files=(("files/data.bin", "with file_bytes > 0: a fixed byte pattern"),),
        ),
    ),
    JobContract(
        "body.preview",
        "Render the posed body (RGB, mask, depth, normals, OpenPose) as PNG sequences + mp4.",
        (
            Param("motion", MOTION, "a-pose", "procedural name, AMASS .npz / .bvh path, AMASS or SMPL-X"),
            Param("cameras", OneOf((ORBIT, CAMERA_PATH)), "orbit:8", "turntable or one camera per frame"),
            Param("size", SIZE, [512, 512], "[W, H] (a CameraPath's own size wins)"),
            Param("frames", Int(1, MAX_FRAMES), None, "frames to render (default: motion or cameras)"),
            Param("fps", Float(0.0, 1000.0, lo_open=True), None, "resample the motion to this rate"),
            Param("betas", BETAS, None, "shape coefficients (override the motion's)"),
            Param("gender", GENDER, None, "default: the motion's"),
            Param("passes", List(Enum(PREVIEW_PASSES), 1, 5), list(PREVIEW_PASSES), "which images"),
            Param("color", Enum(("parts", "grey")), "parts", "body colouring"),
            Param("mp4", Bool(), True, "also encode rgb.mp4"),
            Param("hands", Bool(), True, "hand keypoints in the pose pass"),
            Param("face", Bool(), True, "face keypoints in the pose pass"),
        ),
        Result(
            data=(
                ("frames", "frames rendered"), ("width", "pixels"), ("height", "pixels"), ("fps", ""),
                ("frame_start", "1"), ("passes", "as rendered"),
                ("depth_range", "[near, far] for decoding the 16-bit depth PNGs"),
                ("keypoint_names", "127 names, the order of joints_2d"),
            ),
            arrays=(
                ResultArray("camera_K", "float64", ("F", 3, 3), "one camera per frame"),
                ResultArray("camera_R", "float64", ("F", 3, 3)),
                ResultArray("camera_t", "float64", ("F", 3)),
                ResultArray("joints_2d", "float32", ("F", 127, 2), "pixels"),
                ResultArray("joints_visible", "uint8", ("F", 127)),
            ),
            files=(("<pass>/0001.png ...", "one PNG per frame and pass"), ("rgb.mp4", "with mp4")),
        ),
    ),
    JobContract(
        "body.mesh",
        "The SMPL-X body (licensed through the smplx model role, else the stand-in): rest mesh, "
        "skinning weights, joint tree, part labels, posed by a motion or a pose payload.",
        (
            Param("betas", BETAS, None, "shape coefficients (padded/truncated to the model's)"),
            Param("expression", EXPRESSION, None, "expression coefficients"),
            Param("gender", GENDER, "neutral"),
            Param("motion", MOTION, None, "as body.preview (default a-pose)"),
            Param("pose", SMPLX_POSE, None, "an SMPL-X parameter payload (instead of motion)"),
            Param("frames", Int(1, MAX_FRAMES), None, "at most this many frames"),
            Param("fps", Float(0.0, 1000.0, lo_open=True), None, "resample the motion to this rate"),
        ),
        Result(
            data=(
                ("joint_names", "55 names"), ("part_names", "body part names"), ("n_frames", "N"),
                ("fps", ""), ("n_vertices", "V"), ("model", '"stand-in" or "licensed"'),
            ),
            arrays=(
                ResultArray("rest_vertices", "float32", ("V", 3), "metres, Y up, at betas"),
                ResultArray("faces", "int32", ("F", 3)),
                ResultArray("weights", "float32", ("V", 55), "skinning weights, rows sum to 1"),
                ResultArray("parents", "int32", (55,), "-1 for the root"),
                ResultArray("joints_rest", "float32", (55, 3)),
                ResultArray("part_labels", "int32", ("V",), "index into part_names"),
                ResultArray("posed_vertices", "float32", ("N", "V", 3)),
                ResultArray("joint_transforms", "float32", ("N", 55, 4, 4), "world transform per joint"),
            ),
        ),
        exclusive=(("motion", "pose"),),
    ),
    JobContract(
        "avatar.from_views",
        "Sculpt, texture and rig an avatar from calibrated views (En3D GS + ET).",
        (
            Param("views", PathParam("dir"), None, "a views folder (docs/avatar.md)"),
            Param("synthetic", SYNTHETIC, None, "make a synthetic character and build from its views"),
            Param("grid", Int(8, 512), 64, "tet-grid resolution"),
            Param("init_iters", Int(0, 100_000), 100, "body-SDF fitting iterations"),
            Param("refine_iters", Int(0, 100_000), 160, "sculpt refinement iterations"),
            Param("render_scale", Float(0.0, 2.0, lo_open=True), 0.5, "optimisation render scale"),
            Param("texture_size", Int(16, 2048), None,
                  "texture pixels (square); default: matched to what the views resolve"),
            Param("texture_iters", Int(0, 100_000), 60, "texture optimisation iterations"),
            Param("unwrap", Enum(("cylinder", "xatlas")), "cylinder", "UV unwrapper"),
            Param("normals", Enum(("auto", "views", "estimator", "none")), "auto", "normal supervision"),
        ),
        Result(
            data=(
                ("timings_s", "per stage"), ("info", "diagnostics"), ("joint_names", "55 names"),
                ("part_names", ""), ("vertices", "N"), ("faces", "F"),
            ),
            arrays=(
                ResultArray("vertices", "float32", ("N", 3), "split vertices, canonical bind pose"),
                ResultArray("faces", "int32", ("F", 3)),
                ResultArray("uvs", "float32", ("N", 2), "v = 0 at the bottom"),
                ResultArray("normals", "float32", ("N", 3)),
                ResultArray("texture", "uint8", ("S", "S", 3), "row 0 = top"),
                ResultArray("weights", "float32", ("N", 55)),
                ResultArray("parents", "int32", (55,)),
                ResultArray("joints_rest", "float32", (55, 3)),
                ResultArray("part_labels", "int32", ("N",)),
                ResultArray("vertices_posed", "float32", ("N", 3), "as posed in the views"),
                ResultArray("normals_posed", "float32", ("N", 3)),
                ResultArray("joints_posed", "float32", (55, 3)),
                ResultArray("pose_transforms", "float32", (55, 4, 4)),
                ResultArray("pose_offsets", "float32", ("N", 3), "pose correctives"),
            ),
            files=(
                ("avatar.glb", "rigged glTF"), ("avatar.obj", ""), ("avatar.mtl", ""),
                ("avatar.png", "texture"), ("avatar.json", "summary"),
            ),
        ),
        one_required=(("views", "synthetic"),),
    ),
    JobContract(
        "clips.render",
        "Synthetic multi-view clips of SMPL-X people with exact ground truth (docs/clips.md): "
        "RGB, depth, normals, masks, parts, keypoints, boxes, SMPL-X and cameras per frame.",
        (
            Param("people", OneOf((Int(1, CLIP_MAX_PEOPLE), List(Int(1, CLIP_MAX_PEOPLE), 2, 2))), 1,
                  "people per clip: N, or [min, max] sampled per clip"),
            Param("motions", List(OneOf((Enum(PROCEDURAL_MOTIONS), MOTION_FILE)), 1, 16),
                  ["walk"], "each person plays one, picked at random (sub-window, mirror, speed jitter)"),
            Param("cameras", List(OneOf((CLIP_RIG, CAMERA_PATH)), 1, 16), ["ring:4"],
                  "sampled rigs and/or explicit cameras (a CameraPath each, e.g. Blender's, animated)"),
            Param("frames", Int(1, 1000), None, "frames per clip (default 8, or the camera paths' length)"),
            Param("size", Size(2048), None, "[W, H] (default [256, 256], or the camera paths' size)"),
            Param("fps", Float(0.0, 240.0, lo_open=True), None, "default 30, or the camera paths' fps"),
            Param("clips", Int(1, 1000), 1, "clips in the dataset"),
            Param("seed", Int(0, 2**53 - 1), 0, "dataset seed: clip i depends only on it and i"),
            Param("passes", List(Enum(CLIP_PASSES), 0, len(CLIP_PASSES)), list(CLIP_DEFAULT_PASSES),
                  "image passes; keypoints, boxes, SMPL-X, joints and cameras are always written"),
            Param("bodies", List(SMPLX_POSE, 1, CLIP_MAX_PEOPLE), None,
                  "explicit people instead of sampled ones (e.g. Blender's SMPL-X bodies and their "
                  "actions): one SMPL-X payload each, world frame, frames = the clip's; rendered where "
                  "they are, as posed (only their look is sampled)"),
        ),
        Result(
            data=(
                ("clips", "clips written"), ("frames", "per clip"), ("cameras", "per clip"),
                ("images", "COCO images (clip x camera x frame)"), ("annotations", "COCO annotations"),
                ("folder", '"dataset": the artifacts under it are the dataset folder'),
                ("body_model", '"smplx" or "stand-in"'),
            ),
            files=(
                ("dataset/manifest.json", "format, seeds, the spec, one entry per clip, counts"),
                ("dataset/coco_person_keypoints.json", "COCO person keypoints of the whole dataset"),
                ("dataset/spec.json", "the spec as rendered"),
                ("dataset/clips/<id>/...", "one folder per clip and camera (layout: docs/clips.md)"),
            ),
        ),
        exclusive=(("people", "bodies"), ("motions", "bodies")),
    ),
]

# ----------------------------------------------------------------------------------- generated avatars

# backend/generate/multiview.py SCHEDULER_NAMES (a test keeps them equal); quality presets:
# backend/jobs/generate_avatar.py QUALITY_PRESETS.
GENERATE_SCHEDULERS = ("dpm++2m", "dpm++2m-karras", "unipc", "ddim", "euler-a")
GENERATE_QUALITY = ("draft", "standard", "high")
GENERATE_CONDITIONS = ("pose", "depth", "normal")
KEYPOINTS_FILE = PathParam("file", (".json",))


def _generate_params(prompt: Param) -> tuple[Param, ...]:
    return (
        prompt,
        Param("negative_prompt", Str(2000), None, "default: lowres, blurry, bad anatomy..."),
        Param("seed", Int(0, 2**53 - 1), 0, "same seed, same views"),
        Param("views", Int(1, 32), 8, "views generated on a ring around the body, the first in front"),
        Param("size", Int(64, 1024), None, "view side in pixels, a multiple of 8 (default: the quality's)"),
        Param("steps", Int(1, 200), None, "denoising steps (default: the quality's)"),
        Param("guidance", Float(0.0, 50.0), 7.5, "classifier-free guidance scale"),
        Param("scheduler", Enum(GENERATE_SCHEDULERS), "dpm++2m"),
        Param("quality", Enum(GENERATE_QUALITY), "standard",
              "preset of size, steps and the avatar stages (docs/avatar.md)"),
        Param("conditions", List(Enum(GENERATE_CONDITIONS), 1, 3), ["pose"],
              "body condition images, one ControlNet role each (controlnet-openpose|depth|normal)"),
        Param("window", Int(0, 31), 1, "previous views each view attends to besides the anchor"),
        Param("body", SMPLX_POSE, None, "the body to dress (frame 0); default the neutral stand-in, A-pose"),
        Param("normals", Enum(("body", "estimator", "none")), "body",
              "normals of the generated views: the body's render, the normal-estimator role, none"),
        Param("grid", Int(8, 512), None, "avatar tet-grid resolution (default: the quality's)"),
        Param("init_iters", Int(0, 100_000), None, "body-SDF fitting iterations (default: the quality's)"),
        Param("refine_iters", Int(0, 100_000), None, "sculpt iterations (default: the quality's)"),
        Param("render_scale", Float(0.0, 2.0, lo_open=True), None, "optimisation render scale"),
        Param("texture_size", Int(16, 2048), None, "texture pixels (default: the quality's)"),
        Param("texture_iters", Int(0, 100_000), None, "texture iterations (default: the quality's)"),
    )


def _generated_avatar_contracts(from_views: JobContract) -> list[JobContract]:
    """avatar.from_text / avatar.from_image: K views generated (backend/generate/), then the
    avatar.from_views pipeline; the result is from_views' plus the generated views as files."""
    result = Result(
        data=(*from_views.result.data,
              ("generated", "generation settings, seconds, device; body_fit: the fit to the photo"),
              ("views_folder", '"views": the artifacts under it are the generated views folder')),
        arrays=from_views.result.arrays,
        files=(*from_views.result.files,
               ("views/views.json, views/rgba/<name>.png ...", "the generated views (docs/avatar.md)")),
    )
    text = JobContract(
        "avatar.from_text",
        "A rigged, textured avatar from a prompt: K consistent views of a posed body generated by "
        "Stable Diffusion + ControlNet (docs/generate.md), then the avatar.from_views pipeline.",
        _generate_params(Param("prompt", Str(2000), REQUIRED, "what the person looks like")),
        result,
    )
    image = JobContract(
        "avatar.from_image",
        "As avatar.from_text with a photo as the anchor view: the body is fitted to the photo (its "
        "silhouette and 2D keypoints, docs/fitting.md) and the photo is view 0, seen by the camera the "
        "body was fitted in; the other views are generated around it, consistent with it.",
        (
            Param("image", PHOTO_FILE, REQUIRED, "the photo (.png/.jpg/.webp) inside the input roots"),
            *_generate_params(Param("prompt", Str(2000), "a person", "what the person looks like")),
            Param("fit_body", Bool(), True,
                  "fit the body to the photo (its silhouette + keypoints) unless body is given"),
            Param("keypoints", KEYPOINTS_FILE, None,
                  "2D keypoints of the photo: a keypoints JSON (docs/fitting.md), its one view or 'photo'; "
                  "default: <photo stem>.keypoints.json beside the photo when there is one"),
            Param("pose_estimator", Bool(), True,
                  "without keypoints: detect them with the pose-estimator role when it is on this machine"),
            Param("photo_fov", Float(5.0, 120.0), 40.0, "vertical field of view of the photo, degrees"),
        ),
        result,
    )
    return [text, image]


_CONTRACTS += _generated_avatar_contracts(next(c for c in _CONTRACTS if c.kind == "avatar.from_views"))
_CONTRACTS += footage_contracts()
_CONTRACTS += threedgm_contracts(next(c for c in _CONTRACTS if c.kind == "avatar.from_views"))

KINDS: dict[str, JobContract] = {c.kind: c for c in _CONTRACTS}


def contract(kind: str) -> JobContract:
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None


def parse(
    kind: str,
    params: Mapping[str, Any],
    resolve_path: Callable[[str, str, PathParam], Any] | None = None,
) -> Any:
    """The typed params of ``kind`` (an instance of ``contract(kind).params_class``) with defaults
    filled in; :class:`ParamError` naming the field when ``params`` breaks the contract.

    ``resolve_path(value, field, param)`` turns each path param into what the job opens (the
    backend confines it there); without it paths stay strings.
    """
    c = contract(kind)
    if not isinstance(params, Mapping):
        raise ParamError("params", f"must be an object, got {type(params).__name__}")
    ctx = ParseContext(resolve_path)
    values = parse_fields(c.params, params, "params", ctx)
    given = {k for k, v in params.items() if v is not None}
    for group in c.exclusive:
        both = [n for n in group if n in given]
        if len(both) > 1:
            raise ParamError(f"params.{both[1]}", f"give either {' or '.join(group)}, not both")
    for group in c.one_required:
        chosen = [n for n in group if n in given]
        if len(chosen) != 1:
            where = f"params.{chosen[1]}" if chosen else f"params.{group[0]}"
            raise ParamError(where, f"give exactly one of {', '.join(group)}")
    return c.params_class(**values)


def validate(kind: str, params: Mapping[str, Any]) -> None:
    """Check ``params`` against the contract (paths are checked for form only)."""
    parse(kind, params)


def check_result(kind: str, data: Mapping[str, Any], arrays: Mapping[str, Any]) -> list[str]:
    """What in a job's result breaks the contract of ``kind`` (empty: nothing); see
    :meth:`JobContract.check_result`."""
    return contract(kind).check_result(data, arrays)


class _Names:
    def __init__(self, owner: str, names_: Sequence[str], what: str = "param") -> None:
        self._owner = owner
        self._what = what
        self._names = frozenset(names_)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"{self._owner} has no {self._what} {name!r}")
        return name


def names(kind_or_payload: str | Struct) -> Any:
    """Attribute access to declared names, so callers never spell a param name as a literal:
    ``names("body.mesh").betas == "betas"``; a typo is an ``AttributeError``."""
    if isinstance(kind_or_payload, Struct):
        return _Names(kind_or_payload.name, [p.name for p in kind_or_payload.fields])
    return _Names(kind_or_payload, [p.name for p in contract(kind_or_payload).params])


def result_names(kind: str) -> Any:
    """The same for the result arrays a kind declares, so importers never spell an array name:
    ``result_names("body.mesh").rest_vertices == "rest_vertices"``."""
    return _Names(kind, [a.name for a in contract(kind).result.arrays], "result array")


# ----------------------------------------------------------------------------------- text


def _default_text(p: Param) -> str:
    if p.required:
        return "required"
    if p.default is None:
        return "optional"
    value = p.default
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value).replace("'", '"')
    return f"default {text}"


def _payload_types(c: JobContract) -> list[Struct]:
    found: list[Struct] = []

    def visit(t: Type) -> None:
        if isinstance(t, Struct) and t not in found:
            found.append(t)
        for child in getattr(t, "options", ()):
            visit(child)

    for p in c.params:
        visit(p.type)
    return found


def describe(kind: str) -> str:
    """The contract as plain text (``avatar-studio submit --help-kind KIND``)."""
    c = contract(kind)
    lines = [f"{c.kind}: {c.summary}", "", "params:"]
    if not c.params:
        lines.append("  (none)")
    for p in c.params:
        lines.append(f"  {p.name:14} {p.type.doc()}; {_default_text(p)}")
        if p.help:
            lines.append(f"  {'':14} {p.help}")
    for group in c.exclusive:
        lines.append(f"  at most one of: {', '.join(group)}")
    for group in c.one_required:
        lines.append(f"  exactly one of: {', '.join(group)}")
    for struct in _payload_types(c):
        lines += ["", f"{struct.name} payload:"]
        for p in struct.fields:
            note = f"  ({p.help})" if p.help else ""
            lines.append(f"  {p.name:18} {p.type.doc()}; {_default_text(p)}{note}")
    r = c.result
    lines += ["", "result:"]
    for name, meaning in r.data:
        lines.append(f"  data.{name:18} {meaning}")
    for a in r.arrays:
        shape = ", ".join(str(d) for d in a.shape)
        comma = "," if len(a.shape) == 1 else ""
        lines.append(f"  array {a.name:18} ({shape}{comma}) {a.dtype}  {a.help}".rstrip())
    for name, meaning in r.files:
        lines.append(f"  file {name:19} {meaning}".rstrip())
    return "\n".join(lines)


def spec_markdown() -> str:
    """The spec section listing every kind (docs/protocol.md embeds exactly this text)."""
    out = [
        "Generated from `protocol/kinds.py` (`python -m protocol.kinds`); a test keeps this copy equal.",
        "",
    ]
    for kind in KINDS:
        out += [f"### `{kind}`", "", "```", describe(kind), "```", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # print the spec section
    print(spec_markdown(), end="")
