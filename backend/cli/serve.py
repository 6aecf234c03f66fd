"""``avatar-studio serve``: run the job server."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_OK,
    _add_data_dir,
    _add_json,
    _data_dir,
    _fail,
)

# --- serve --------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.server.app import Server, ServerConfig, ServerStartError

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = ServerConfig(
        data_dir=_data_dir(args),
        bind=args.bind,
        curve=args.curve,
        workers=args.workers,
        cancel_grace_s=args.cancel_grace,
        buffer_integrity=args.buffer_integrity,
        input_roots=tuple(Path(r).expanduser().resolve() for r in args.input_root),
    )
    server = Server(config)
    try:
        info = server.start()
    except ServerStartError as exc:
        server.close()
        return _fail(args, exc)
    ready = {
        "event": "ready",
        "address": info.address,
        "connection_file": str(server.connection_file),
        "data_dir": str(server.data_dir),
        "pid": info.server_pid,
        "curve": info.curve,
        "server_public_key": info.server_public_key,
        "protocol_version": info.protocol_version,
        "workers": config.workers,
    }
    if args.json:
        print(json.dumps(ready), flush=True)
    else:
        print(
            f"avatar-studio backend serving on {info.address}\n  connection file: {server.connection_file}"
            f"\n  stop with Ctrl-C",
            flush=True,
        )
    server.serve_forever()
    return EXIT_OK


def _register_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the backend job server",
        description="Run the job server: binds a ZeroMQ ROUTER socket, writes "
        "<data-dir>/connection.json (mode 0600), runs jobs in worker processes.",
    )
    _add_data_dir(p)
    p.add_argument(
        "--bind",
        default="tcp://127.0.0.1:0",
        metavar="ADDRESS",
        help="ZeroMQ address to bind (default tcp://127.0.0.1:0, port 0 = a free port). "
        "A non-loopback address requires --curve.",
    )
    p.add_argument(
        "--curve",
        action="store_true",
        help="encrypt with CurveZMQ and admit only client keys made by `keys create`",
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="jobs run at once (default 2)")
    p.add_argument(
        "--buffer-integrity",
        choices=["digest", "transport"],
        default=None,
        help="how array buffers are protected (docs/protocol.md 2.1): 'digest' signs every byte; "
        "'transport' leaves the bytes to CURVE or the loopback kernel (faster for big arrays). "
        "Default: transport with --curve, else digest, or $AVATAR_STUDIO_BUFFER_INTEGRITY",
    )
    p.add_argument(
        "--cancel-grace",
        type=float,
        default=0.5,
        metavar="S",
        help="a cancelled job that has not stopped after S seconds is killed (default 0.5)",
    )
    p.add_argument(
        "--input-root",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="a folder jobs may read files from (motion files, views folders); repeatable. "
        "<data-dir>/inputs always is one; any other path in params is refused (docs/security.md)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_json(p)
    p.set_defaults(func=cmd_serve)
