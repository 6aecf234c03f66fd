"""``avatar-studio serve``: run the job server, with the limits of fair service on a shared server
(``--max-jobs-per-client``, ``--max-jobs``, ``--request-rate``, ``--request-burst``,
``--artifact-quota``; docs/security.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from backend.cli.common import EXIT_OK, add_data_dir, add_json, add_models_file, data_dir_of, fail

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"50G"``, ``"500MiB"``, ``"1.5T"``, ``"123456"`` (bytes) -> bytes; binary units."""
    match = _SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 50G, 2T)")
    return int(float(match.group(1)) * _SIZE_UNIT[match.group(2).lower()])


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.models.registry import ModelConfigError, ModelRegistry
    from backend.server.app import Server, ServerConfig, ServerStartError

    try:  # a --models file that is missing or malformed stops the start, not each job later
        ModelRegistry.load(data_dir_of(args))
    except ModelConfigError as exc:
        return fail(args, exc)

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Everything the server and its workers create (work dirs, artifacts, logs) is private, like
    # the data dir that secure_data_dir makes 0700 (backend/server/datadir.py).
    os.umask(0o077)
    config = ServerConfig(
        data_dir=data_dir_of(args),
        bind=args.bind,
        curve=args.curve,
        workers=args.workers,
        cancel_grace_s=args.cancel_grace,
        buffer_integrity=args.buffer_integrity,
        input_roots=tuple(Path(r).expanduser().resolve() for r in args.input_root),
        ray=args.ray,
        ray_cpus=args.ray_cpus,
        **_limits_config(args),
    )
    server = Server(config)
    try:
        info = server.start()
    except ServerStartError as exc:
        server.close()
        return fail(args, exc)
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


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the backend job server",
        description="Run the job server: binds a ZeroMQ ROUTER socket, writes "
        "<data-dir>/connection.json (mode 0600), runs jobs in worker processes.",
    )
    add_data_dir(p)
    add_models_file(p)  # -> $AVATAR_STUDIO_MODELS, inherited by the job workers
    p.add_argument(
        "--bind",
        default=None,
        metavar="ADDRESS",
        help="ZeroMQ address to bind. Default: ipc://<data-dir>/backend.sock (only this user can "
        "connect; a short private folder when that path is too long; tcp://127.0.0.1:0 where ipc is "
        "unavailable), or tcp://127.0.0.1:0 with --curve (port 0 = a free port). "
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
    p.add_argument(
        "--ray",
        default=None,
        metavar="local|ADDRESS",
        help="clips.render jobs render one clip per Ray task: 'local' starts a private cluster that "
        "lives and stops with the server; or an existing cluster's address (auto, HOST:PORT, "
        "ray://HOST:PORT), checked at start; its nodes must share the data dir (docs/clips.md)",
    )
    p.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the --ray local cluster (default: this machine's)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    _add_limits(p)
    add_json(p)
    p.set_defaults(func=cmd_serve)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    from backend.server.quotas import DEFAULT_MAX_UNFINISHED_PER_CLIENT, DEFAULT_MAX_UNFINISHED_TOTAL
    from backend.server.ratelimit import DEFAULT_BURST, DEFAULT_RATE

    group = parser.add_argument_group("limits (fair service on a shared server; docs/security.md)")
    group.add_argument(
        "--max-jobs-per-client", type=int, default=DEFAULT_MAX_UNFINISHED_PER_CLIENT, metavar="N",
        help=f"jobs one client may have queued or running; more are refused with QueueFull "
        f"(default {DEFAULT_MAX_UNFINISHED_PER_CLIENT})",
    )
    group.add_argument(
        "--max-jobs", type=int, default=DEFAULT_MAX_UNFINISHED_TOTAL, metavar="N",
        help=f"jobs queued or running for all clients together (default {DEFAULT_MAX_UNFINISHED_TOTAL})",
    )
    group.add_argument(
        "--request-rate", type=float, default=DEFAULT_RATE, metavar="UNITS",
        help=f"per client: units of the server loop's time per second (1 per request plus 1 per ms "
        f"it took); over it requests get RateLimited; 0 turns the limit off (default {DEFAULT_RATE:g})",
    )
    group.add_argument(
        "--request-burst", type=float, default=DEFAULT_BURST, metavar="UNITS",
        help=f"per client: units an idle client may spend at once (default {DEFAULT_BURST:g})",
    )
    group.add_argument(
        "--artifact-quota", type=parse_size, default=None, metavar="SIZE",
        help="most bytes the artifact store may hold (e.g. 200G); a job whose outputs would exceed "
        "it fails with DiskQuotaExceeded, a submit whose inputs would is refused (default: none)",
    )


def _limits_config(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig fields from the flags of :func:`_add_limits`."""
    from backend.server.quotas import QueueLimits

    if args.max_jobs_per_client < 1 or args.max_jobs < 1:
        raise SystemExit("error: --max-jobs-per-client and --max-jobs must be at least 1")
    return {
        "queue_limits": QueueLimits(args.max_jobs_per_client, args.max_jobs),
        "request_rate": args.request_rate,
        "request_burst": args.request_burst,
        "artifact_quota_bytes": args.artifact_quota,
    }
