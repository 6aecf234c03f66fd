"""``avatar-studio models check``: which model weights (by role) are present on this machine."""

from __future__ import annotations

import argparse
from typing import Any

from backend.cli.common import EXIT_OK, add_data_dir, add_json, data_dir_of, fail, print_json


def cmd_models_check(args: argparse.Namespace) -> int:
    from backend.models.registry import ModelConfigError, ModelRegistry

    try:
        registry = ModelRegistry.load(data_dir_of(args))
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


def register(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="model weights registry",
        description="Which model weights (by role) are present on this machine.",
    )
    models_sub = p.add_subparsers(dest="models_command", required=True)
    check = models_sub.add_parser(
        "check", help="list model roles, present or missing, and how to provide them"
    )
    add_data_dir(check)
    add_json(check)
    check.set_defaults(func=cmd_models_check)
    # `models make-tiny DIR` (tiny random models in the real on-disk formats) arrives with a later issue.
