"""The layers of docs/architecture.md, enforced: who may import what, read from every module's AST.

Every ``import``/``from ... import`` counts, wherever it stands (inside functions and under
``TYPE_CHECKING`` too): a lazy import is still a dependency. Relative imports are resolved first.
A new backend package or top-level module must be given a place in :data:`BACKEND_LAYERS` (and in
the table of docs/architecture.md) before this test passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LIBRARIES = ("backend.mesh", "backend.body", "backend.models", "backend.ray_cluster", "backend.render",
             "backend.preview", "backend.avatar", "backend.clips", "backend.generate", "backend.fitting",
             "backend.mimo", "backend.footage", "backend.threedgm", "backend.metrics")
# Backend part -> the backend parts it may import (importing the root package ``backend`` itself,
# for ``__version__``, is always allowed). Lower layers first.
BACKEND_LAYERS: dict[str, frozenset[str]] = {
    "backend.mesh": frozenset(),
    "backend.body": frozenset({"backend.mesh", "backend.models"}),  # models: the smplx role
    "backend.models": frozenset(),
    "backend.ray_cluster": frozenset(),  # torch-free: the server starts and checks clusters with it
    "backend.render": frozenset({"backend.mesh"}),
    "backend.preview": frozenset({"backend.mesh", "backend.body", "backend.render"}),
    "backend.fitting": frozenset({"backend.mesh", "backend.body", "backend.render"}),
    "backend.avatar": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.models",
                                 "backend.fitting"}),  # fitting: a views set without SMPL-X
    "backend.clips": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.preview",
                                "backend.ray_cluster"}),
    # generate: conditions from the body (preview's OpenPose drawing), views written in the
    # avatar's views format (avatar.io), weights by role (models)
    "backend.generate": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.preview",
                                   "backend.avatar", "backend.models"}),
    # mimo: MIMO's neural decoder (docs/mimo.md); trains on rendered clips
    "backend.mimo": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.models",
                               "backend.clips"}),
    # footage: reads the avatar folder (avatar.io), poses it (body), renders it (render), calls the
    # neural route (mimo) and the estimator roles (models)
    "backend.footage": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.preview",
                                  "backend.avatar", "backend.models", "backend.fitting", "backend.clips",
                                  "backend.mimo"}),
    # threedgm: En3D's 3DGM (docs/threedgm.md); trains on rendered clips, PSNR/SSIM of avatar.eval
    "backend.threedgm": frozenset({"backend.mesh", "backend.body", "backend.render", "backend.models",
                                   "backend.clips", "backend.avatar"}),
    # metrics: image metrics over folders (docs/eval.md); FID/KID/identity formulas of threedgm.metrics
    "backend.metrics": frozenset({"backend.models", "backend.avatar", "backend.threedgm"}),
    "backend.jobs": frozenset(LIBRARIES),
    "backend.server": frozenset({"backend.jobs", "backend.models", "backend.ray_cluster"}),
    "backend.commands": frozenset({*LIBRARIES, "backend.jobs"}),
}
# Entry points (the command line: the package backend/cli/, one module per command group, and
# backend/__main__.py; the add-on packager) see everything.
ENTRY_POINTS = ("backend.cli", "backend.__main__", "backend.addon_build")
BACKEND_LAYERS.update({name: frozenset({*BACKEND_LAYERS, *ENTRY_POINTS}) for name in ENTRY_POINTS})
FOREIGN = {  # top-level packages a part must never import
    "protocol": {"torch", "bpy", "backend", "blender_addon"},
    "blender_addon": {"torch", "backend"},
    "backend": {"bpy", "blender_addon"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``source`` (module ``module``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from backend import jobs`` imports backend.jobs
                yield node.lineno, f"{target}.{alias.name}"


def part_of(name: str) -> str:
    """``backend.render.api`` -> ``backend.render``; other names -> their top-level package."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "backend" and len(parts) > 1 else parts[0]


def _job_kind_modules() -> frozenset[str]:
    """The modules that hold job kinds (they import torch lazily and run only in workers)."""
    from backend.jobs.api import JOB_KINDS

    return frozenset(kind.module for kind in JOB_KINDS.values())


def _is_job_kind_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in _job_kind_modules())


def violations(path: Path, source: str) -> list[str]:
    module = module_name(path)
    top, part = module.split(".")[0], part_of(module)
    found = []
    for line, name in imports_of(source, module, path.name == "__init__.py"):
        target_top, target_part = name.split(".")[0], part_of(name)
        where = f"{path.relative_to(ROOT)}:{line} imports {name}"
        if target_top in FOREIGN.get(top, ()):
            found.append(f"{where} ({top} never imports {target_top})")
        if top != "backend" or target_top != "backend" or target_part in ("backend", part):
            continue
        if target_part not in BACKEND_LAYERS or part not in BACKEND_LAYERS:
            # a name that is not a backend part (``from backend import __version__``), or a module
            # of a part with no layer yet (test_every_backend_part_has_a_layer says so)
            continue
        allowed = sorted(BACKEND_LAYERS[part]) or "no backend part"
        if target_part not in BACKEND_LAYERS[part]:
            found.append(f"{where} ({part} may import only {allowed})")
        elif part == "backend.server" and _is_job_kind_module(name):
            found.append(f"{where} (the server never imports a job kind's module: workers load it by name)")
    return found


def source_files() -> list[Path]:
    return sorted(p for top in FOREIGN for p in (ROOT / top).rglob("*.py"))


def test_every_backend_part_has_a_layer() -> None:
    parts = {part_of(module_name(p)) for p in (ROOT / "backend").rglob("*.py")} - {"backend"}
    missing = sorted(parts - set(BACKEND_LAYERS))
    assert not missing, f"give {missing} a layer in tests/test_import_rules.py and docs/architecture.md"


def test_import_rules_hold_for_every_module() -> None:
    found = [v for path in source_files() for v in violations(path, path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def module_file(name: str) -> Path | None:
    """The repository file of a dotted name (``backend.jobs.api.JOB_KINDS`` -> backend/jobs/api.py)."""
    parts = name.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        parts.pop()
    return None


def test_the_server_never_reaches_torch() -> None:
    """Follow every import (lazy ones too) from backend/server through the repository's modules:
    torch must not be reachable. Job kinds are loaded by name in the worker, so they are not."""
    todo = sorted((ROOT / "backend" / "server").rglob("*.py"))
    seen: set[Path] = set()
    via: dict[Path, Path] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for line, name in imports_of(path.read_text(encoding="utf-8"), module_name(path),
                                     path.name == "__init__.py"):
            assert name.split(".")[0] != "torch", f"{path.relative_to(ROOT)}:{line} imports torch " + (
                f"(reached from {via[path].relative_to(ROOT)})" if path in via else "")
            target = module_file(name) if name.split(".")[0] in ("backend", "protocol") else None
            if target is not None and target not in seen:
                via.setdefault(target, via.get(path, path))
                todo.append(target)
    assert ROOT / "backend/jobs/api.py" in seen  # the walk did follow the server into the jobs layer


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("protocol/x.py", "import torch\n", "protocol never imports torch"),
        ("protocol/x.py", "def f():\n    from backend.body import model\n", "protocol never imports backend"),
        ("blender_addon/ops.py", "from backend.render import api\n", "blender_addon never imports backend"),
        ("backend/render/x.py", "from backend.preview import pipeline\n", "backend.render may import only"),
        ("backend/render/x.py", "from ..avatar import rig\n", "backend.render may import only"),
        ("backend/avatar/io/x.py", "from backend.jobs.api import JobContext\n", "backend.avatar may import"),
        ("backend/body/x.py", "from backend import jobs\n", "backend.body may import only"),
        ("backend/server/x.py", "from backend.jobs.body import body_preview\n", "never imports a job kind"),
        ("backend/mesh/x.py", "import bpy\n", "backend never imports bpy"),
    ],
)
def test_the_checker_catches_violations(path: str, source: str, expected: str) -> None:
    found = violations(ROOT / path, source)
    assert found and expected in found[0], found


def test_the_checker_lets_allowed_imports_pass() -> None:
    ok = "from backend.mesh import normals\nfrom backend import __version__\nfrom . import ops\n"
    assert violations(ROOT / "backend/render/x.py", ok) == []
    server = "from backend.jobs.api import JOB_KINDS\nfrom backend.jobs import api\nimport backend.models\n"
    assert violations(ROOT / "backend/server/x.py", server) == []
