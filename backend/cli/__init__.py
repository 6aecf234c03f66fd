"""``avatar-studio`` (also ``python -m backend``): the backend's command line.

Built-in commands, one module each: ``serve`` (:mod:`backend.cli.serve`, with the limits of fair
service), ``submit``, ``attach``, ``jobs`` (with ``jobs prune``), ``cancel`` (:mod:`backend.cli.jobs`),
``keys`` (:mod:`backend.cli.keys`), ``models`` (:mod:`backend.cli.models`); the options and output
they share are in :mod:`backend.cli.common`. Every command has ``--help``; ``--json`` prints
machine-readable output on stdout (logs and progress bars go to stderr). Client commands read
``--connection FILE`` (default: the default data dir's ``connection.json``, see
``$AVATAR_STUDIO_DATA_DIR``).

Plug-ins: each module in :data:`PLUGIN_MODULES` exposes ``register(subparsers) -> None`` and sets
``func`` (``args -> int`` exit status) on its parsers. A plug-in module that does not exist is
skipped; any other import error propagates. Plug-ins import heavy packages (torch) inside their
handlers, so ``--help`` stays fast.

Exit status: 0 success, 1 the job failed or was cancelled, 2 usage, connection or server error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from backend.cli import jobs, keys, models, serve
from backend.cli.common import EXIT_ERROR, add_models_file, use_models_file

PLUGIN_MODULES = ["backend.commands.preview", "backend.commands.avatar", "backend.addon_build",
                  "backend.commands.clips", "backend.commands.footage", "backend.commands.threedgm",
                  "backend.commands.eval"]

BUILTIN_COMMANDS = frozenset({"serve", "submit", "attach", "jobs", "cancel", "keys", "models"})


def _load_plugins(sub: Any) -> None:
    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the plug-in is not part of this checkout: skip it
                continue
            raise
        module.register(sub)


def build_parser(plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-studio",
        description="avatar-studio backend: job server, job client and tools. "
        "Start a server with `avatar-studio serve`, then `avatar-studio submit system.info --wait`.",
    )
    from backend import __version__

    parser.add_argument("--version", action="version", version=f"avatar-studio {__version__}")
    add_models_file(parser)  # for every command; `models ...` and `serve` also take it after their name
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    jobs.register(sub)  # submit, attach, jobs (+ jobs prune), cancel: in this order in --help
    keys.register(sub)
    models.register(sub)
    if plugins:
        _load_plugins(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A built-in command does not need the plug-ins: skipping them keeps `serve` free of whatever
    # they import (a plug-in that imports torch at module level would land torch in the server).
    command = next(
        (a for i, a in enumerate(argv) if not a.startswith("-") and argv[i - 1 : i] != ["--models"]), None
    )
    args = build_parser(plugins=command not in BUILTIN_COMMANDS).parse_args(argv)
    use_models_file(args)  # --models FILE -> $AVATAR_STUDIO_MODELS, for this process and its workers
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `avatar-studio jobs | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
