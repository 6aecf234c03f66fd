"""Job kind -> importer. A kind without an importer only reports where its files were saved."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from .arrays import ResultFormatError


class ImportFailed(RuntimeError):
    """An importer could not turn a result into Blender data; the message says why."""


def _meta(item: Any) -> dict[str, Any]:
    try:
        meta = json.loads(item.meta or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def import_body_mesh_result(
    scene: bpy.types.Scene,
    item: Any,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> str:
    from .body_mesh import import_body_mesh

    meta = _meta(item)
    data = {**data, "params": {**meta, **(data.get("params") or {})}}
    target = scene.objects.get(item.target) if item.target else None
    name = meta.get("name") if isinstance(meta.get("name"), str) else "SMPLX"
    arm_obj, mesh_obj = import_body_mesh(
        arrays,
        data,
        name=name,
        target=target,
        collection=scene.collection,
        frame_start=item.frame_start,
        import_motion=bool(meta.get("import_motion")),
        place_on_ground=not meta.get("import_motion"),
    )
    item.target = arm_obj.name
    summary = f"{arm_obj.name}: {len(mesh_obj.data.vertices)} vertices, {len(arm_obj.data.bones)} bones"
    source = scene.objects.get(meta["source"]) if isinstance(meta.get("source"), str) else None
    source_mesh = next((c for c in source.children if c.type == "MESH"), None) if source is not None else None
    if source_mesh is not None:
        # The body whose animation was posed gets the same correctives, so it matches too.
        from .correctives import bake_from_result

        baked = bake_from_result(source_mesh, dict(arrays), item.frame_start)
        summary += f"; {baked} corrective shape keys on {source.name}" if baked else ""
    return summary


def import_preview_result(
    scene: bpy.types.Scene,
    item: Any,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> str:
    from .preview import import_preview

    label = _meta(item).get("camera")
    strips = import_preview(
        files,
        scene=scene,
        job_id=item.job_id,
        frame_start=item.frame_start,
        label=label if isinstance(label, str) else "",
    )
    return f"{len(strips)} strips from frame {item.frame_start}, {len(strips[0].elements)} frames"


def import_avatar_result(
    scene: bpy.types.Scene,
    item: Any,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> str:
    from .avatar import import_avatar

    name = _meta(item).get("name")
    arm_obj, mesh_obj = import_avatar(
        arrays, data, files, name=name if isinstance(name, str) else "Avatar", collection=scene.collection
    )
    item.target = arm_obj.name
    return (
        f"{arm_obj.name}: {len(mesh_obj.data.vertices)} vertices, textured, {len(arm_obj.data.bones)} bones"
    )


IMPORTERS = {
    "avatar.from_views": import_avatar_result,
    "body.mesh": import_body_mesh_result,
    "body.preview": import_preview_result,
}


def import_result(
    scene: bpy.types.Scene,
    item: Any,
    data: dict[str, Any],
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, Path],
) -> str:
    importer = IMPORTERS.get(item.kind)
    if importer is None:
        return f"{len(arrays) + len(files)} result(s) saved in {item.result_dir}"
    try:
        return importer(scene, item, data, arrays, files)
    except (ResultFormatError, ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ImportFailed(str(exc)) from exc
