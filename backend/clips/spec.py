"""The clip spec: what a synthetic dataset holds, as typed dataclasses read from / written to JSON.

One spec is one dataset of ``clips`` clips, each sampled from the distributions below with a seed
derived from the dataset seed and the clip index (:func:`clip_seed`), so a clip never depends on how
many workers render the dataset or in which order. ``docs/clips.md`` documents every field.

Parsing is strict: an unknown key, a wrong type, a negative size, zero cameras, an unknown
procedural motion or a motion file that does not exist or does not load, an avatar folder that does
not load, an appearance image that cannot be read or a background folder without images is a
:class:`SpecError` naming the field, raised before anything is written. Paths (motions, avatars,
images) are stored absolute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from protocol.cameras import CameraPath
from protocol.kind_types import ParamError, ParseContext
from protocol.kinds import (
    CLIP_CAMERA_KINDS,
    CLIP_DEFAULT_PASSES,
    CLIP_MAX_PEOPLE,
    CLIP_PASSES,
    CLIP_RIG_KINDS,
    SMPLX_POSE,
    names,
)
from protocol.smplx import NUM_BETAS, NUM_EXPRESSION, PER_FRAME_FIELDS

from .spec_appearance import IMAGE_SUFFIXES, AppearanceSpec  # noqa: F401 - IMAGE_SUFFIXES: re-exported
from .spec_fields import SpecError, integer, known_keys, number_range

FORMAT = "avatar-studio.clips"
VERSION = 1
# Image passes a spec may ask for; keypoints, boxes, SMPL-X params, 3D joints and cameras are
# always written (they cost microseconds).
# (The pass and camera lists live in protocol/kinds.py, beside the clips.render contract that
# offers them.)
PASSES: tuple[str, ...] = CLIP_PASSES
DEFAULT_PASSES: tuple[str, ...] = CLIP_DEFAULT_PASSES
CAMERA_KINDS: tuple[str, ...] = CLIP_CAMERA_KINDS
MAX_PEOPLE = CLIP_MAX_PEOPLE
MAX_SIDE = 4096


@dataclass(frozen=True)
class PeopleSpec:
    """Who is in a clip: ``count`` people (sampled in [min, max]) placed in a square of ``area``
    metres a side on the ground plane (y = 0) without their bounding circles overlapping."""

    count: tuple[int, int] = (1, 1)
    genders: tuple[str, ...] = ("neutral",)
    betas_std: float = 1.0  # betas ~ N(0, std^2), the first num_betas of the model
    area: float = 4.0
    margin: float = 0.05  # metres kept between two people's bounding circles
    # Avatar folders (``avatar-studio avatar --out DIR``): each person is one of them, picked
    # uniformly, with probability ``avatar_probability``; else a SMPL-X body with a sampled look.
    avatars: tuple[str, ...] = ()
    avatar_probability: float = 1.0
    # Explicit people (e.g. Blender's bodies): SMPL-X payloads (the contract's SMPLX_POSE fields, as
    # JSON lists), posed and placed exactly as given; only their look is sampled. When given, they
    # are the clip's people (count = their number) and nothing of the above is sampled for them.
    explicit: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, data: Any, name: str = "people") -> PeopleSpec:
        d = known_keys(data, cls, name)
        explicit = _explicit_people(d.get("explicit", []), f"{name}.explicit")
        if explicit:
            n = len(explicit)
            if number_range(d.get("count", n), f"{name}.count", 1, MAX_PEOPLE) != (n, n):
                raise SpecError(f"{name}.count: the clip's people are the {n} explicit ones, got "
                                f"{d['count']!r} (leave count out)")
        lo, hi = number_range(d.get("count", [len(explicit) or 1] * 2), f"{name}.count", 1, MAX_PEOPLE)
        if lo != int(lo) or hi != int(hi):
            raise SpecError(f"{name}.count: whole numbers of people, got [{lo}, {hi}]")
        genders = d.get("genders", ["neutral"])
        if (not isinstance(genders, list) or not genders
                or any(g not in ("neutral", "male", "female") for g in genders)):
            raise SpecError(f"{name}.genders: a non-empty list of neutral/male/female, got {genders!r}")
        std = number_range(d.get("betas_std", 1.0), f"{name}.betas_std", 0.0, 5.0)[0]
        area = number_range(d.get("area", 4.0), f"{name}.area", 0.0, 1000.0)[0]
        margin = number_range(d.get("margin", 0.05), f"{name}.margin", 0.0, 10.0)[0]
        avatars = d.get("avatars", [])
        if not isinstance(avatars, list) or not all(isinstance(a, str) and a for a in avatars):
            raise SpecError(f"{name}.avatars: a list of avatar folders, got {avatars!r}")
        chance = number_range(d.get("avatar_probability", 1.0), f"{name}.avatar_probability", 0.0, 1.0)[0]
        return cls((int(lo), int(hi)), tuple(genders), std, area, margin, tuple(avatars), chance, explicit)


POSE = names(SMPLX_POSE)  # the payload's field names: one home, the contract
EXPLICIT_FIELDS = (*PER_FRAME_FIELDS, POSE.betas, POSE.expression, POSE.gender)  # what a spec keeps


def _explicit_people(value: Any, name: str) -> tuple[dict[str, Any], ...]:
    """Each entry checked by the contract's SMPL-X payload type (shapes, one frame count per person,
    finite numbers; errors name the field), missing per-frame fields filled with zeros, as are absent
    betas and expression (10 each), gender neutral; stored as JSON lists. ``fps`` / ``frame_start`` of a
    payload are dropped: the spec's fps and frame 0 apply."""
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_PEOPLE:
        shown = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise SpecError(f"{name}: a list of at most {MAX_PEOPLE} SMPL-X parameter objects, got {shown}")
    people = []
    for i, entry in enumerate(value):
        where = f"{name}[{i}]"
        try:
            parsed = SMPLX_POSE.parse(entry, where, ParseContext())
        except ParamError as exc:
            raise SpecError(str(exc)) from None
        frames = len(parsed[POSE.global_orient])
        person: dict[str, Any] = {}
        for key, width in PER_FRAME_FIELDS.items():
            array = parsed.get(key, np.zeros((frames, width), np.float32))
            person[key] = np.asarray(array, np.float32).tolist()
        for key, n in ((POSE.betas, NUM_BETAS), (POSE.expression, NUM_EXPRESSION)):
            person[key] = np.asarray(parsed.get(key, np.zeros(n, np.float32)), np.float32).tolist()
        person[POSE.gender] = parsed.get(POSE.gender, "neutral")
        people.append(person)
    return tuple(people)


@dataclass(frozen=True)
class MotionSpec:
    """What people do: each person picks one of ``sources`` (a procedural name or an AMASS .npz /
    .bvh file, relative paths from the spec's folder), a random sub-window of ``frames`` frames, is
    mirrored left/right with probability ``mirror``, and plays ``speed`` (sampled) times as fast."""

    sources: tuple[str, ...] = ("walk",)
    mirror: float = 0.5
    speed: tuple[float, float] = (0.8, 1.2)

    @classmethod
    def parse(cls, data: Any, name: str = "motion") -> MotionSpec:
        d = known_keys(data, cls, name)
        sources = d.get("sources", ["walk"])
        if isinstance(sources, str):
            sources = [sources]
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            raise SpecError(f"{name}.sources: a non-empty list of motion names or files, got {sources!r}")
        mirror = number_range(d.get("mirror", 0.5), f"{name}.mirror", 0.0, 1.0)[0]
        speed = number_range(d.get("speed", [0.8, 1.2]), f"{name}.speed", 0.05, 20.0)
        return cls(tuple(sources), mirror, speed)


@dataclass(frozen=True)
class CameraSpec:
    """A camera rig: ``count`` cameras of one ``kind``, all looking at the people's centre.

    ``ring``: fixed cameras evenly spaced in azimuth (random start) at a sampled height;
    ``orbit``: cameras that circle the people by ``sweep_deg`` over the clip; ``handheld``: a fixed
    position plus a smooth random walk of ``shake`` metres (position and aim); ``dolly``: moves
    straight towards the people, its distance scaled by ``dolly`` from start to end. The distance
    is the one at which the people's bounding sphere fills the view, times ``distance``.
    Intrinsics: vertical field of view ``fov_deg``, principal point jittered by up to
    ``principal_jitter`` times the image size. ``path``: one explicit, possibly animated camera
    (e.g. a Blender scene camera): ``path`` holds its K, R, t per frame (a
    :class:`protocol.cameras.CameraPath` payload, as JSON lists); nothing is sampled.
    """

    kind: str = "ring"
    count: int = 4
    fov_deg: tuple[float, float] = (35.0, 55.0)
    distance: tuple[float, float] = (1.1, 1.4)
    height: tuple[float, float] = (0.6, 2.0)
    principal_jitter: float = 0.02
    sweep_deg: tuple[float, float] = (30.0, 120.0)
    shake: float = 0.02
    dolly: tuple[float, float] = (0.7, 0.9)
    path: dict[str, Any] | None = None  # kind "path": {"K", "R", "t", "width", "height"} as lists

    @classmethod
    def parse(cls, data: Any, name: str) -> CameraSpec:
        if isinstance(data, str):
            return parse_camera_shorthand(data, name)
        d = known_keys(data, cls, name)
        kind = d.get("kind", "ring")
        if kind not in CAMERA_KINDS:
            raise SpecError(f"{name}.kind: one of {', '.join(CAMERA_KINDS)}, got {kind!r}")
        if kind == "path" or d.get("path") is not None:
            return cls._parse_path(d, name)
        return cls(
            kind=kind,
            count=integer(d.get("count", 4), f"{name}.count", 1, 64),
            fov_deg=number_range(d.get("fov_deg", [35.0, 55.0]), f"{name}.fov_deg", 1.0, 170.0),
            distance=number_range(d.get("distance", [1.1, 1.4]), f"{name}.distance", 0.5, 100.0),
            height=number_range(d.get("height", [0.6, 2.0]), f"{name}.height", -100.0, 100.0),
            principal_jitter=number_range(d.get("principal_jitter", 0.02), f"{name}.principal_jitter",
                                    0.0, 0.25)[0],
            sweep_deg=number_range(d.get("sweep_deg", [30.0, 120.0]), f"{name}.sweep_deg", -3600.0, 3600.0),
            shake=number_range(d.get("shake", 0.02), f"{name}.shake", 0.0, 1.0)[0],
            dolly=number_range(d.get("dolly", [0.7, 0.9]), f"{name}.dolly", 0.1, 10.0),
        )


    @classmethod
    def _parse_path(cls, d: dict[str, Any], name: str) -> CameraSpec:
        # (The sampling fields are allowed, as to_json_dict writes them, and mean nothing here.)
        if d.get("kind") != "path" or d.get("count", 1) != 1:
            raise SpecError(f"{name}: a path camera is {{\"kind\": \"path\", \"path\": {{K, R, t, width, "
                            f"height}}}} (one camera, nothing sampled)")
        try:
            path = CameraPath.from_payload(d.get("path") if isinstance(d.get("path"), Mapping) else {})
        except ValueError as exc:
            raise SpecError(f"{name}.path: {exc}") from None
        payload = {"K": path.K.tolist(), "R": path.R.tolist(), "t": path.t.tolist(),
                   "width": path.width, "height": path.height}
        return cls(kind="path", count=1, path=payload)


def parse_camera_shorthand(text: str, name: str = "cameras") -> CameraSpec:
    """``ring:4``, ``orbit:2``, ``handheld:1``, ``dolly:1`` (the CLI's ``--cameras``)."""
    kind, _, count = text.partition(":")
    if kind not in CLIP_RIG_KINDS:  # a path camera has no shorthand: it carries its K, R, t
        raise SpecError(f"{name}: {text!r} is not KIND:N with KIND one of {', '.join(CLIP_RIG_KINDS)}")
    try:
        n = int(count) if count else 1
    except ValueError:
        raise SpecError(f"{name}: {text!r}: the camera count must be an integer") from None
    return CameraSpec(kind=kind, count=integer(n, f"{name} ({text})", 1, 64))


@dataclass(frozen=True)
class ClipSpec:
    """A dataset: ``clips`` clips of ``frames`` frames at ``width`` x ``height`` pixels."""

    clips: int = 1
    frames: int = 8
    width: int = 256
    height: int = 256
    fps: float = 30.0
    seed: int = 0
    people: PeopleSpec = field(default_factory=PeopleSpec)
    motion: MotionSpec = field(default_factory=MotionSpec)
    cameras: tuple[CameraSpec, ...] = (CameraSpec(),)
    passes: tuple[str, ...] = DEFAULT_PASSES
    near: float = 0.05
    far: float = 100.0
    appearance: AppearanceSpec = field(default_factory=AppearanceSpec)

    @property
    def n_cameras(self) -> int:
        return sum(c.count for c in self.cameras)

    @classmethod
    def parse(cls, data: Any, base_dir: Path | None = None) -> ClipSpec:
        """Validate a spec object (as read from JSON); motion files resolve against ``base_dir``."""
        if isinstance(data, Mapping):
            fmt, version = data.get("format", FORMAT), data.get("version", VERSION)
            if fmt != FORMAT:
                raise SpecError(f"format: expected {FORMAT!r}, got {fmt!r}")
            if version != VERSION:
                raise SpecError(f"version: this reader knows version {VERSION}, got {version!r}")
            data = {k: v for k, v in data.items() if k not in ("format", "version")}
        d = known_keys({k: v for k, v in data.items() if k != "video"} if isinstance(data, Mapping) else data,
                  cls, "spec")
        if isinstance(data, Mapping) and "video" in data:
            d["video"] = data["video"]
        cams = d.get("cameras", ["ring:4"])
        if isinstance(cams, str | Mapping):
            cams = [cams]
        if not isinstance(cams, list) or not cams:
            raise SpecError("cameras: at least one camera rig is needed (e.g. \"ring:4\")")
        cameras = tuple(CameraSpec.parse(c, f"cameras[{i}]") for i, c in enumerate(cams))
        passes = d.get("passes", list(DEFAULT_PASSES))
        if not isinstance(passes, list) or any(p not in PASSES for p in passes):
            raise SpecError(f"passes: a list out of {', '.join(PASSES)}, got {passes!r}")
        video = d.pop("video", False)  # sugar for the mp4 pass, not a field of its own
        if not isinstance(video, bool):
            raise SpecError(f"video: true or false, got {video!r}")
        if video and "mp4" not in passes:
            passes = [*passes, "mp4"]
        if "mp4" in passes and "rgb" not in passes:
            raise SpecError("passes: mp4 is encoded from the rgb pass; add rgb")
        if "overlay" in passes and "rgb" not in passes:
            raise SpecError("passes: overlay is drawn over the rgb pass; add rgb")
        seed = d.get("seed", 0)
        spec = cls(
            clips=integer(d.get("clips", 1), "clips", 1, 10_000_000),
            frames=integer(d.get("frames", 8), "frames", 1, 100_000),
            width=integer(d.get("width", 256), "width", 1, MAX_SIDE),
            height=integer(d.get("height", 256), "height", 1, MAX_SIDE),
            fps=number_range(d.get("fps", 30.0), "fps", 0.1, 1000.0)[0],
            seed=integer(seed, "seed", 0, 2**63 - 1),
            people=PeopleSpec.parse(d.get("people", {})),
            motion=MotionSpec.parse(d.get("motion", {})),
            cameras=cameras,
            passes=tuple(p for p in PASSES if p in passes),
            near=number_range(d.get("near", 0.05), "near", 1e-4, 1e6)[0],
            far=number_range(d.get("far", 100.0), "far", 1e-3, 1e7)[0],
            appearance=AppearanceSpec.parse(d.get("appearance", {})),
        )
        for i, rig in enumerate(cameras):
            got = (len(rig.path["K"]), rig.path["width"], rig.path["height"]) if rig.path else None
            if got is not None and got != (spec.frames, spec.width, spec.height):
                raise SpecError(f"cameras[{i}].path: {got[0]} frames of {got[1]}x{got[2]}, the spec "
                                f"renders {spec.frames} of {spec.width}x{spec.height}")
        for i, person in enumerate(spec.people.explicit):
            got = len(person[POSE.global_orient])
            if got != spec.frames:
                raise SpecError(f"people.explicit[{i}]: {got} frames, the spec renders {spec.frames}")
        if spec.near >= spec.far:
            raise SpecError(f"near: must be below far, got near={spec.near}, far={spec.far}")
        return spec.resolve_motions(base_dir).resolve_assets(base_dir)

    def resolve_motions(self, base_dir: Path | None) -> ClipSpec:
        """Motion files as absolute paths, each checked to exist and to load; names checked known."""
        from backend.body.procedural import load_motion

        resolved = []
        for i, source in enumerate(self.motion.sources):
            where = f"motion.sources[{i}]"
            if source.lower().endswith((".npz", ".bvh")):
                path = Path(source).expanduser()
                if not path.is_absolute() and base_dir is not None:
                    path = base_dir / path
                if not path.is_file():
                    raise SpecError(f"{where}: motion file not found: {path}")
                try:
                    load_motion(str(path))
                except (ValueError, KeyError, OSError) as exc:
                    raise SpecError(f"{where}: {path}: {exc}") from None
                resolved.append(str(path.resolve()))
            else:
                try:  # the one name lookup (and its message listing the known names)
                    load_motion(source, n_frames=1)
                except KeyError as exc:
                    raise SpecError(f"{where}: {exc.args[0]}, or an AMASS .npz / .bvh file") from None
                resolved.append(source)
        motion = MotionSpec(tuple(resolved), self.motion.mirror, self.motion.speed)
        return ClipSpec(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "motion": motion})

    def resolve_assets(self, base_dir: Path | None) -> ClipSpec:
        """Appearance images and avatar folders as absolute paths, each checked to load."""
        from backend.clips.avatars import AvatarError, load_avatar_person

        avatars = []
        for i, folder in enumerate(self.people.avatars):
            path = Path(folder).expanduser()
            path = (base_dir / path if not path.is_absolute() and base_dir is not None else path).resolve()
            try:
                load_avatar_person(path)
            except AvatarError as exc:
                raise SpecError(f"people.avatars[{i}]: {exc}") from None
            avatars.append(str(path))
        people = PeopleSpec(**{**asdict(self.people), "avatars": tuple(avatars)})
        return ClipSpec(**{**{f.name: getattr(self, f.name) for f in fields(self)}, "people": people,
                           "appearance": self.appearance.resolve(base_dir)})

    def to_json_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT, "version": VERSION, **asdict(self)}
        return json.loads(json.dumps(out))  # tuples -> lists, as the JSON file holds them


def load_spec(path: str | Path) -> ClipSpec:
    """Read and validate a spec file (JSON)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not JSON: {exc}") from None
    return ClipSpec.parse(data, base_dir=path.parent)


def clip_seed(dataset_seed: int, clip_index: int) -> np.random.SeedSequence:
    """The seed of clip ``clip_index``: a function of the dataset seed and the index only."""
    return np.random.SeedSequence(entropy=dataset_seed, spawn_key=(clip_index,))


def clip_id(clip_index: int) -> str:
    return f"{clip_index:06d}"
