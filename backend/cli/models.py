"""``avatar-studio models list|check|download ROLE|make-tiny DIR``: the model weights by role
(docs/models.md). Every sub-command reads ``--models FILE`` (else ``<data-dir>/models.toml``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from backend.cli.common import (
    EXIT_OK,
    add_data_dir,
    add_json,
    add_models_file,
    data_dir_of,
    fail,
    print_json,
)


def _registry(args: argparse.Namespace) -> Any:
    from backend.models.registry import ModelRegistry

    return ModelRegistry.load(data_dir_of(args))  # --models is in $AVATAR_STUDIO_MODELS (cli.main)


def cmd_models_list(args: argparse.Namespace) -> int:
    from backend.models.registry import ROLES

    rows = [
        {
            "role": r.name,
            "default_hub_id": r.default_hub_id,
            "consumer": r.consumer,
            "loader": r.loader,
            "license": r.license,
            "optional": r.optional,
            "description": r.description,
        }
        for r in ROLES.values()
    ]
    if args.json:
        print_json({"roles": rows})
        return EXIT_OK
    for row in rows:
        default = row["default_hub_id"] or "(licensed: local path only)"
        print(f"{row['role']:20} {default:46} {row['consumer']}")
    return EXIT_OK


def cmd_models_check(args: argparse.Namespace) -> int:
    from backend.models.registry import ModelConfigError

    try:
        registry = _registry(args)
    except ModelConfigError as exc:
        return fail(args, exc)
    results = registry.check()
    if args.json:
        print_json({"config": str(registry.config_path), "models": [r.to_json() for r in results]})
        return EXIT_OK
    absent = "" if registry.config_path.exists() else " (absent: defaults)"
    print(f"model config: {registry.config_path}{absent}")
    for r in results:
        status = f"present ({r.source}: {r.location})" if r.present else "missing"
        print(f"{r.spec.role:20} {r.spec.label:48} {status}")
        if not r.present:
            print(f"{'':20} how to provide: {r.how_to}")
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    from backend.models.download import DownloadError, download_role
    from backend.models.registry import ModelConfigError

    try:
        registry = _registry(args)
        if args.role not in registry.specs:
            known = ", ".join(sorted(registry.specs))
            raise DownloadError(f"unknown model role {args.role!r}; known: {known}")
        found = registry.resolve(args.role)
        # A configured local folder wins over the hub: nothing to fetch.
        folder = found.location if found.source == "path" else download_role(args.role, registry)
    except (DownloadError, ModelConfigError) as exc:
        return fail(args, exc)
    if args.json:
        print_json({"role": args.role, "location": str(folder)})
    else:
        print(f"{args.role}: {folder}")
    return EXIT_OK


def cmd_models_make_tiny(args: argparse.Namespace) -> int:
    from backend.models.tiny import make_tiny

    start = time.monotonic()
    config = make_tiny(args.dir)
    size = sum(f.stat().st_size for f in Path(config).parent.rglob("*") if f.is_file())
    seconds = time.monotonic() - start
    if args.json:
        print_json({"models_file": str(config), "bytes": size, "seconds": round(seconds, 2)})
    else:
        print(f"tiny models ({size / 1e6:.1f} MB, {seconds:.1f} s): {config}", file=sys.stderr)
        print(config)  # stdout: the file to pass as --models
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="model weights registry",
        description="Model weights by role: which are present, downloads, tiny test models.",
    )
    models_sub = p.add_subparsers(dest="models_command", required=True)

    def command(name: str, help_: str, func: Any) -> argparse.ArgumentParser:
        parser = models_sub.add_parser(name, help=help_, description=help_)
        add_data_dir(parser)
        add_models_file(parser)
        add_json(parser)
        parser.set_defaults(func=func)
        return parser

    command("list", "the model roles: default model, which pipeline reads each", cmd_models_list)
    command("check", "list model roles, present or missing, and how to provide them", cmd_models_check)
    download = command(
        "download",
        "download a role's model into the Hugging Face cache (progress bar; resumes an interrupted download)",
        cmd_models_download,
    )
    download.add_argument("role", metavar="ROLE", help="a role of `models list`, e.g. base-diffusion")
    tiny = command(
        "make-tiny",
        "write tiny random models in the real on-disk formats and DIR/models.toml naming them (for tests)",
        cmd_models_make_tiny,
    )
    tiny.add_argument("dir", type=Path, metavar="DIR")
