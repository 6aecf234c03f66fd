"""Job kind -> importer. A kind without an importer only reports where its files were saved.

An import runs in steps across the bridge's pumps (see :mod:`.steps`), so what it needs from the
job item is read once into an :class:`ImportRequest` (an item reference does not survive the
job list growing in between), and what it produces comes back as an :class:`ImportOutcome` that
the bridge writes to the item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .arrays import ResultFormatError
from .steps import Steps, run


class ImportFailed(RuntimeError):
    """An importer could not turn a result into Blender data; the message says why."""


# Errors an importer raises for a bad result (as opposed to an add-on bug).
RESULT_ERRORS = (ResultFormatError, ValueError, KeyError, RuntimeError, OSError)


@dataclass(frozen=True)
class ImportRequest:
    """What an import needs from the job item, read once when it starts."""

    scene_name: str
    job_id: str
    kind: str
    target: str = ""
    frame_start: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    result_dir: str = ""

    @classmethod
    def from_item(cls, scene: bpy.types.Scene, item: Any) -> ImportRequest:
        try:
            meta = json.loads(item.meta or "{}")
        except ValueError:
            meta = {}
        return cls(scene.name, item.job_id, item.kind, item.target, int(item.frame_start),
                   meta if isinstance(meta, dict) else {}, item.result_dir)


@dataclass(frozen=True)
class ImportOutcome:
    summary: str
    target: str | None = None  # the object the job's item points at from now on


def _body_mesh(scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
               arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> Steps[ImportOutcome]:
    from .body_mesh import import_body_mesh_steps
    from .correctives import bake_from_result_steps

    meta = request.meta
    data = {**data, "params": {**meta, **(data.get("params") or {})}}
    target = scene.objects.get(request.target) if request.target else None
    name = meta.get("name") if isinstance(meta.get("name"), str) else "SMPLX"
    arm_obj, mesh_obj = yield from import_body_mesh_steps(
        arrays,
        data,
        name=name,
        target=target,
        collection=scene.collection,
        frame_start=request.frame_start,
        import_motion=bool(meta.get("import_motion")),
        place_on_ground=not meta.get("import_motion"),
    )
    summary = f"{arm_obj.name}: {len(mesh_obj.data.vertices)} vertices, {len(arm_obj.data.bones)} bones"
    source = scene.objects.get(meta["source"]) if isinstance(meta.get("source"), str) else None
    source_mesh = next((c for c in source.children if c.type == "MESH"), None) if source is not None else None
    if source_mesh is not None:
        # The body whose animation was posed gets the same correctives, so it matches too.
        baked = yield from bake_from_result_steps(source_mesh, dict(arrays), request.frame_start)
        summary += f"; {baked} corrective shape keys on {source.name}" if baked else ""
    return ImportOutcome(summary, arm_obj.name)


def _preview(scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
             arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> Steps[ImportOutcome]:
    from .preview import import_preview_steps

    label = request.meta.get("camera_name")
    strips = yield from import_preview_steps(
        files,
        scene=scene,
        job_id=request.job_id,
        frame_start=request.frame_start,
        label=label if isinstance(label, str) else "",
    )
    return ImportOutcome(
        f"{len(strips)} strips from frame {request.frame_start}, {len(strips[0].elements)} frames"
    )


def _avatar(scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
            arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> Steps[ImportOutcome]:
    from .avatar import import_avatar_steps

    name = request.meta.get("name")
    arm_obj, mesh_obj = yield from import_avatar_steps(
        arrays,
        data,
        files,
        name=name if isinstance(name, str) else "Avatar",
        collection=scene.collection,
    )
    if request.meta.get("views_pose"):  # Avatar from Selected: stand where the character stood
        from .views_pose import pose_to_views_steps

        yield from pose_to_views_steps(arm_obj, arrays, files, scene.frame_current)
    return ImportOutcome(
        f"{arm_obj.name}: {len(mesh_obj.data.vertices)} vertices, textured, {len(arm_obj.data.bones)} bones",
        arm_obj.name,
    )


# Meta keys of a clips.render import: the dataset folder (a local one; else the job's download),
# which clip to load, and whether to ask the backend for its people (body.mesh jobs).
CLIP_DATASET, CLIP_INDEX, CLIP_BODIES = "dataset_dir", "load_clip", "load_people"


def clip_dataset(data: Mapping[str, Any], files: Mapping[str, Path], meta: Mapping[str, Any]) -> Path:
    """The dataset folder of a clips.render result: ``meta``'s local folder, else where the job's
    ``<folder>/manifest.json`` was downloaded."""
    if isinstance(meta.get(CLIP_DATASET), str):
        return Path(meta[CLIP_DATASET])
    folder = data.get("folder") if isinstance(data.get("folder"), str) else "dataset"
    manifest = files.get(f"{folder}/manifest.json")
    if manifest is None:
        raise ValueError("the clips result holds no manifest.json")
    return Path(manifest).parent


def _clips(scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
           arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> Steps[ImportOutcome]:
    from .clip import load_clip_steps

    index = request.meta.get(CLIP_INDEX, 0)
    index = index if isinstance(index, int | str) else 0
    dataset = clip_dataset(data, files, request.meta)
    loaded = yield from load_clip_steps(dataset, index, scene=scene, frame_start=request.frame_start)
    summary = loaded.summary
    if request.meta.get(CLIP_BODIES):
        summary += f"; {_request_people(scene, dataset, index, loaded.clip_id, request.frame_start)}"
    return ImportOutcome(summary, loaded.cameras[0].name)


def _request_people(scene: bpy.types.Scene, dataset: Path, index: int | str, clip_id: str,
                    frame_start: int) -> str:
    """The clip's people as body.mesh jobs (the add-on cannot pose SMPL-X itself); each comes back
    through the body importer as an animated body."""
    from .. import bridge, job_params
    from .clip import people_payloads

    the_bridge = bridge.get_bridge()
    if not the_bridge.connected:
        return "people not loaded (connect to a backend to pose them)"
    payloads = people_payloads(dataset, index, frame_start)
    pose = job_params.POSE
    for person, payload in enumerate(payloads):
        shape = {job_params.MESH.betas: payload[pose.betas].tolist(),
                 job_params.MESH.expression: payload[pose.expression].tolist(),
                 job_params.MESH.gender: payload[pose.gender]}
        meta = {**shape, "name": f"{clip_id} person {person}", "import_motion": True}
        the_bridge.submit(scene, "body.mesh", job_params.body_mesh_params(shape, payload),
                          frame_start=frame_start, meta=meta, auto_import=True)
    return f"{len(payloads)} people requested from the backend"


def _footage(scene: bpy.types.Scene, request: ImportRequest, data: dict[str, Any],
             arrays: Mapping[str, np.ndarray], files: Mapping[str, Path]) -> Steps[ImportOutcome]:
    from .footage import import_footage_steps
    from .preview import strip_start

    strips = yield from import_footage_steps(files, scene=scene, job_id=request.job_id, kind=request.kind,
                                             data=data, meta=request.meta)
    first = min(int(strip_start(s)) for s in strips)
    return ImportOutcome(f"{len(strips)} strips from frame {first} on channels "
                         f"{strips[0].channel}-{strips[-1].channel}")


IMPORTERS = {
    "footage.insert": _footage,
    "footage.decompose": _footage,
    "avatar.from_views": _avatar,
    # The generated kinds' result arrays are avatar.from_views' (protocol/kinds.py).
    "avatar.from_text": _avatar,
    "avatar.from_image": _avatar,
    "avatar.from_noise": _avatar,
    "avatar.from_image_inversion": _avatar,
    "clips.render": _clips,
    "body.mesh": _body_mesh,
    "body.preview": _preview,
}


def stages(kind: str) -> tuple[str, ...]:
    """The stage names an import of ``kind`` goes through, in order (for the Jobs panel)."""
    from .avatar import AVATAR_STAGES
    from .body_mesh import BODY_STAGES
    from .clip import CLIP_STAGES
    from .footage import FOOTAGE_STAGES
    from .preview import PREVIEW_STAGES

    return {"avatar.from_views": AVATAR_STAGES, "avatar.from_text": AVATAR_STAGES,
            "avatar.from_image": AVATAR_STAGES, "avatar.from_noise": AVATAR_STAGES,
            "avatar.from_image_inversion": AVATAR_STAGES, "body.mesh": BODY_STAGES,
            "body.preview": PREVIEW_STAGES,
            "clips.render": CLIP_STAGES, "footage.insert": FOOTAGE_STAGES,
            "footage.decompose": FOOTAGE_STAGES}.get(kind, ())


def import_steps(
    scene: bpy.types.Scene,
    request: ImportRequest,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> Steps[ImportOutcome]:
    """The import of one result, in steps; a bad result raises :class:`ImportFailed`."""
    importer = IMPORTERS.get(request.kind)
    if importer is None:
        return ImportOutcome(f"{len(arrays) + len(files)} result(s) saved in {request.result_dir}")
    try:
        return (yield from importer(scene, request, data, arrays, files))
    except RESULT_ERRORS as exc:
        raise ImportFailed(str(exc)) from exc


def import_result(
    scene: bpy.types.Scene,
    item: Any,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> str:
    """The whole import in one go (scripts, tests); writes the new target to ``item``."""
    outcome = run(import_steps(scene, ImportRequest.from_item(scene, item), data, arrays, files))
    if outcome.target is not None:
        item.target = outcome.target
    return outcome.summary
