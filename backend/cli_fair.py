"""Command-line parts of fair service and bounded resources (docs/security.md):

- ``serve`` flags for the limits: ``--max-jobs-per-client``, ``--max-jobs``, ``--request-rate``,
  ``--request-burst``, ``--artifact-quota``;
- ``avatar-studio jobs prune --older-than DURATION``: delete finished jobs older than that and the
  stored bytes only they used. It works on the data dir directly, whether or not a server runs
  (SQLite transactions and the collector's horizon make that safe, see
  ``backend/server/retention.py``).

Kept out of ``backend/cli.py`` so that module only registers these.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"50G"``, ``"500MiB"``, ``"1.5T"``, ``"123456"`` (bytes) -> bytes; binary units."""
    match = _SIZE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 50G, 2T)")
    return int(float(match.group(1)) * _SIZE_UNIT[match.group(2).lower()])


def _duration(text: str) -> float:
    from backend.server.retention import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- serve ----------------------------------------------------------------------------------------


def add_serve_limits(parser: argparse.ArgumentParser) -> None:
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


def serve_limits_config(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig fields from the flags of :func:`add_serve_limits`."""
    from backend.server.quotas import QueueLimits

    if args.max_jobs_per_client < 1 or args.max_jobs < 1:
        raise SystemExit("error: --max-jobs-per-client and --max-jobs must be at least 1")
    return {
        "queue_limits": QueueLimits(args.max_jobs_per_client, args.max_jobs),
        "request_rate": args.request_rate,
        "request_burst": args.request_burst,
        "artifact_quota_bytes": args.artifact_quota,
    }


# --- jobs prune -----------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    from backend.cli import EXIT_OK, _data_dir, _fail, _print_json
    from backend.server.artifacts import ArtifactStore
    from backend.server.jobstore import JobStore
    from backend.server.retention import prune

    data_dir = _data_dir(args)
    database = data_dir / "jobs.sqlite3"
    if not database.is_file():
        return _fail(args, FileNotFoundError(f"no job store in {data_dir} (is this a backend data dir?)"))
    store = JobStore(database)
    try:
        report = prune(store, ArtifactStore(data_dir / "artifacts"), args.older_than)
    finally:
        store.close()
    if args.json:
        _print_json(report.to_json())
    else:
        print(
            f"pruned {report.jobs} finished job(s) older than {args.older_than:g} s; removed "
            f"{report.blobs} stored file(s) ({report.bytes / (1 << 20):.1f} MiB) no job uses any more"
        )
    return EXIT_OK


def add_jobs_prune(jobs_parser: argparse.ArgumentParser) -> None:
    """``jobs prune`` as a subcommand of ``jobs`` (plain ``jobs`` still lists)."""
    from backend.cli import _add_data_dir, _add_json

    sub = jobs_parser.add_subparsers(dest="jobs_command", metavar="{prune}")
    p = sub.add_parser(
        "prune",
        help="delete old finished jobs and their stored files",
        description="Delete finished (succeeded, failed, cancelled) jobs whose last change is older "
        "than DURATION, with their results, and the stored files no remaining job uses. Queued and "
        "running jobs are kept. Works on the data dir, with or without a running server.",
    )
    p.add_argument(
        "--older-than", required=True, type=_duration, metavar="DURATION",
        help="e.g. 7d, 12h, 30m, 90s, 2w",
    )
    _add_data_dir(p)
    _add_json(p)
    p.set_defaults(func=cmd_prune)

