"""What every built-in command shares: exit codes, the ``--json``, ``--connection``/``--timeout`` and
``--data-dir`` options, the client they open, JSON output and the error report."""

from __future__ import annotations

import argparse
import json
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
