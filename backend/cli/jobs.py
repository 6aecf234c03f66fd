"""The job commands of ``avatar-studio``: ``submit``, ``attach``, ``jobs`` (list), ``cancel``, which
talk to a running server, and ``jobs prune --older-than DURATION``, which deletes finished jobs older
than that and the stored bytes only they used. Prune works on the data dir directly, whether or not
a server runs (SQLite transactions and the collector's horizon make that safe, see
``backend/server/retention.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from backend.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    add_connection,
    add_data_dir,
    add_json,
    connect,
    data_dir_of,
    fail,
    print_json,
)


def _job_summary(view: Any, written: list[Path] | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {"job_id": view.job_id, "kind": view.kind, "state": view.state}
    if view.data is not None:
        summary["data"] = view.data
    if view.artifacts:
        summary["artifacts"] = view.artifacts
    if view.error is not None:
        summary["error"] = view.error
    if written is not None:
        summary["downloaded"] = [str(p) for p in written]
    return summary


def _follow(client: Any, job_id: str, args: argparse.Namespace) -> int:
    """Wait for a job with a progress bar (stderr), download its artifacts, print the outcome."""
    from protocol import messages as M

    bar = None
    if (not args.json and sys.stderr.isatty()) or getattr(args, "progress", False):
        from tqdm import tqdm

        bar = tqdm(
            total=1000,
            desc=job_id[:8],
            file=sys.stderr,
            leave=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}",
        )

    def on_progress(view: Any) -> None:
        if bar is not None:
            bar.n = int(view.fraction * 1000)
            text = f"{view.state} {view.stage}: {view.message}" if view.stage else view.state
            bar.set_description_str(f"{job_id[:8]} {text[:48]:48}", refresh=True)

    try:
        view = client.wait(job_id, on_progress=on_progress, timeout=args.wait_timeout)
    finally:
        if bar is not None:
            bar.close()
    written = None
    if view.state == M.SUCCEEDED and args.out is not None:
        written = client.download(job_id, args.out)
    summary = _job_summary(view, written)
    if args.json:
        print_json(summary)
    else:
        print(f"job {job_id} {view.state}")
        if view.error:
            print(f"  {view.error.get('ename')}: {view.error.get('evalue')}")
            if view.error.get("traceback"):
                print(view.error["traceback"], file=sys.stderr)
        if view.data:
            print(json.dumps(view.data, indent=2, default=str))
        for path in written or []:
            print(f"  wrote {path}")
    return EXIT_OK if view.state == M.SUCCEEDED else EXIT_JOB_FAILED


def cmd_submit(args: argparse.Namespace) -> int:
    if args.help_kind is not None:
        from protocol.kinds import KINDS, describe

        if args.help_kind not in KINDS:
            return fail(args, ValueError(f"unknown job kind {args.help_kind!r}; known: {', '.join(KINDS)}"))
        print(describe(args.help_kind))
        return EXIT_OK
    if args.kind is None:
        return fail(args, ValueError("submit needs a job kind (or --help-kind KIND)"))
    try:
        params = json.loads(args.params)
    except ValueError as exc:
        return fail(args, ValueError(f"--params is not JSON: {exc}"))
    if not isinstance(params, dict):
        return fail(args, ValueError("--params must be a JSON object"))
    from protocol import ProtocolError

    try:
        with connect(args) as client:
            job_id = client.submit(args.kind, params, idempotency_key=args.idempotency_key)
            if not args.wait:
                if args.json:
                    print_json({"job_id": job_id, "state": client.jobs[job_id].state})
                else:
                    print(job_id)
                return EXIT_OK
            return _follow(client, job_id, args)
    except ProtocolError as exc:
        return fail(args, exc)


def cmd_attach(args: argparse.Namespace) -> int:
    from protocol import ProtocolError

    try:
        with connect(args) as client:
            client.attach(args.job_id)
            return _follow(client, args.job_id, args)
    except ProtocolError as exc:
        return fail(args, exc)


def cmd_jobs(args: argparse.Namespace) -> int:
    from protocol import ProtocolError

    try:
        with connect(args) as client:
            jobs = client.list_jobs(states=args.state or None, limit=args.limit)
    except ProtocolError as exc:
        return fail(args, exc)
    if args.json:
        print_json({"jobs": jobs})
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
        with connect(args) as client:
            state = client.cancel(args.job_id)
            if state not in M.TERMINAL_STATES:  # a running job stops within its grace period
                state = client.wait(args.job_id, timeout=args.timeout).state
    except ProtocolError as exc:
        return fail(args, exc)
    if args.json:
        print_json({"job_id": args.job_id, "state": state})
    else:
        print(f"job {args.job_id} {state}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from backend.server.artifacts import ArtifactStore
    from backend.server.jobstore import JobStore
    from backend.server.retention import prune

    data_dir = data_dir_of(args)
    database = data_dir / "jobs.sqlite3"
    if not database.is_file():
        return fail(args, FileNotFoundError(f"no job store in {data_dir} (is this a backend data dir?)"))
    store = JobStore(database)
    try:
        report = prune(store, ArtifactStore(data_dir / "artifacts"), args.older_than)
    finally:
        store.close()
    if args.json:
        print_json(report.to_json())
    else:
        print(
            f"pruned {report.jobs} finished job(s) older than {args.older_than:g} s; removed "
            f"{report.blobs} stored file(s) ({report.bytes / (1 << 20):.1f} MiB) no job uses any more"
        )
    return EXIT_OK


def _duration(text: str) -> float:
    from backend.server.retention import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_follow_options(p: argparse.ArgumentParser) -> None:
    """Options of the commands that follow a job to its end (submit --wait, attach)."""
    p.add_argument(
        "--wait-timeout", type=float, default=None, metavar="S", help="give up waiting after S seconds"
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when stderr is not a tty"
    )


def register(sub: Any) -> None:
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
    add_follow_options(p)
    add_connection(p)
    add_json(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "attach",
        help="follow a job until it ends",
        description="Re-attach to a job by id (e.g. after a reconnect), wait for its end, "
        "optionally download its artifacts.",
    )
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="download the artifacts into DIR")
    add_follow_options(p)
    add_connection(p)
    add_json(p)
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
    add_connection(p)
    add_json(p)
    p.set_defaults(func=cmd_jobs)
    _register_prune(p)  # `jobs prune --older-than DURATION`

    p = sub.add_parser("cancel", help="cancel a job", description="Cancel a queued or running job.")
    p.add_argument("job_id")
    add_connection(p)
    add_json(p)
    p.set_defaults(func=cmd_cancel)


def _register_prune(jobs_parser: argparse.ArgumentParser) -> None:
    """``jobs prune`` as a subcommand of ``jobs`` (plain ``jobs`` still lists)."""
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
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=cmd_prune)
