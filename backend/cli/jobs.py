"""Client commands: ``submit`` (and ``--help-kind``), ``attach``, ``jobs``, ``cancel``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import (
    EXIT_OK,
    _add_connection,
    _add_json,
    _client,
    _fail,
    _follow,
    _print_json,
)

# --- client commands ----------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    if args.help_kind is not None:
        from protocol.kinds import KINDS, describe

        if args.help_kind not in KINDS:
            return _fail(args, ValueError(f"unknown job kind {args.help_kind!r}; known: {', '.join(KINDS)}"))
        print(describe(args.help_kind))
        return EXIT_OK
    if args.kind is None:
        return _fail(args, ValueError("submit needs a job kind (or --help-kind KIND)"))
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        return _fail(args, ValueError(f"--params is not JSON: {exc}"))
    if not isinstance(params, dict):
        return _fail(args, ValueError("--params must be a JSON object"))
    from protocol import ProtocolError

    try:
        with _client(args) as client:
            job_id = client.submit(args.kind, params, idempotency_key=args.idempotency_key)
            if not args.wait:
                if args.json:
                    _print_json({"job_id": job_id, "state": client.jobs[job_id].state})
                else:
                    print(job_id)
                return EXIT_OK
            return _follow(client, job_id, args)
    except ProtocolError as exc:
        return _fail(args, exc)


def cmd_attach(args: argparse.Namespace) -> int:
    from protocol import ProtocolError

    try:
        with _client(args) as client:
            client.attach(args.job_id)
            return _follow(client, args.job_id, args)
    except ProtocolError as exc:
        return _fail(args, exc)


def cmd_jobs(args: argparse.Namespace) -> int:
    from protocol import ProtocolError

    try:
        with _client(args) as client:
            jobs = client.list_jobs(states=args.state or None, limit=args.limit)
    except ProtocolError as exc:
        return _fail(args, exc)
    if args.json:
        _print_json({"jobs": jobs})
        return EXIT_OK
    print(f"{'JOB ID':32}  {'KIND':18} {'STATE':10} {'PROGRESS':>8}  CREATED")
    for job in jobs:
        print(
            f"{job.get('job_id', ''):32}  {job.get('kind', ''):18} {job.get('state', ''):10} "
            f"{100 * float(job.get('fraction') or 0):7.0f}%  {job.get('created', '')}"
        )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from protocol import ProtocolError
    from protocol import messages as M

    try:
        with _client(args) as client:
            state = client.cancel(args.job_id)
            if state not in M.TERMINAL_STATES:  # a running job stops within its grace period
                state = client.wait(args.job_id, timeout=args.timeout).state
    except ProtocolError as exc:
        return _fail(args, exc)
    if args.json:
        _print_json({"job_id": args.job_id, "state": state})
    else:
        print(f"job {args.job_id} {state}")
    return EXIT_OK


def _register_client_commands(sub: Any) -> None:
    from protocol.kinds import KINDS

    p = sub.add_parser(
        "submit",
        help="submit a job",
        description="Submit a job to the backend. `--help-kind KIND` prints a kind's params and result.",
    )
    p.add_argument("kind", nargs="?", help=f"job kind: {', '.join(KINDS)}")
    p.add_argument(
        "--help-kind",
        default=None,
        metavar="KIND",
        help="print the contract of KIND (params with types, ranges, defaults; result) and exit",
    )
    p.add_argument(
        "--params",
        default="{}",
        metavar="JSON",
        help="job parameters as a JSON object, e.g. '{\"seconds\": 2}'",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job (progress bar on stderr)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --wait: download the artifacts into DIR (arrays as .npy)",
    )
    p.add_argument(
        "--idempotency-key",
        default=None,
        metavar="K",
        help="submitting the same key again returns the same job instead of running it twice",
    )
    p.add_argument(
        "--wait-timeout", type=float, default=None, metavar="S", help="give up waiting after S seconds"
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when stderr is not a tty"
    )
    _add_connection(p)
    _add_json(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "attach",
        help="follow a job until it ends",
        description="Re-attach to a job by id (e.g. after a reconnect), wait for its end, "
        "optionally download its artifacts.",
    )
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="download the artifacts into DIR")
    p.add_argument(
        "--wait-timeout", type=float, default=None, metavar="S", help="give up waiting after S seconds"
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when stderr is not a tty"
    )
    _add_connection(p)
    _add_json(p)
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("jobs", help="list jobs", description="List the backend's jobs, newest first.")
    p.add_argument(
        "--state",
        action="append",
        default=None,
        choices=["queued", "running", "succeeded", "failed", "cancelled"],
        help="only jobs in this state (repeatable)",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many jobs (default 100)")
    _add_connection(p)
    _add_json(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("cancel", help="cancel a job", description="Cancel a queued or running job.")
    p.add_argument("job_id")
    _add_connection(p)
    _add_json(p)
    p.set_defaults(func=cmd_cancel)
