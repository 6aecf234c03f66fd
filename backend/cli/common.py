"""What every built-in command shares: exit codes, the ``--json``, ``--connection``/``--timeout`` and
``--data-dir`` and ``--models`` options, the client they open, JSON output and the error report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output on stdout")


def add_connection(parser: argparse.ArgumentParser) -> None:
    from protocol import default_connection_file

    parser.add_argument(
        "--connection",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"connection file of the backend (default: {default_connection_file()})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the backend to answer a request (default: 10)",
    )


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    from protocol import default_data_dir

    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"backend data directory (default: $AVATAR_STUDIO_DATA_DIR or {default_data_dir()})",
    )


def data_dir_of(args: argparse.Namespace) -> Path:
    from protocol import default_data_dir

    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


def connect(args: argparse.Namespace) -> Any:
    """A client to the backend named by ``--connection`` (see :func:`add_connection`)."""
    from protocol.client import Client

    return Client.from_connection_file(args.connection, timeout=args.timeout, request_timeout_s=args.timeout)


def fail(args: argparse.Namespace, exc: BaseException) -> int:
    """Report ``exc`` (as JSON on stdout with ``--json``, else on stderr); the usage/error exit code."""
    ename = getattr(exc, "remote_ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc)
    if getattr(args, "json", False):
        print_json({"error": {"ename": ename, "evalue": evalue}})
    else:
        print(f"error: {ename}: {evalue}", file=sys.stderr)
    return EXIT_ERROR


def add_models_file(parser: argparse.ArgumentParser) -> None:
    """``--models FILE``: a models.toml used instead of ``<data-dir>/models.toml`` (docs/models.md).

    One definition for the top-level parser and the commands that read models (``models ...``,
    ``serve``); ``SUPPRESS`` keeps a sub-command from resetting a value given before it.
    """
    parser.add_argument(
        "--models",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="models.toml to use instead of <data-dir>/models.toml (e.g. one written by "
        "`models make-tiny`); also $AVATAR_STUDIO_MODELS, which job workers inherit",
    )


def use_models_file(args: argparse.Namespace) -> None:
    """Make ``--models FILE`` this process's registry file: ``$AVATAR_STUDIO_MODELS`` (absolute),
    which every registry load reads and the server's job workers inherit."""
    from backend.models.registry import MODELS_FILE_ENV

    models = getattr(args, "models", None)
    if models is not None:
        os.environ[MODELS_FILE_ENV] = str(Path(models).expanduser().absolute())
