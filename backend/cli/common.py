"""Helpers shared by the command modules: JSON output, connection/data-dir options, errors,
following a job with a progress bar."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2


# --- shared helpers ---------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output on stdout")


def _add_connection(parser: argparse.ArgumentParser) -> None:
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


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    from protocol import default_data_dir

    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"backend data directory (default: $AVATAR_STUDIO_DATA_DIR or {default_data_dir()})",
    )


def _data_dir(args: argparse.Namespace) -> Path:
    from protocol import default_data_dir

    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


def _client(args: argparse.Namespace) -> Any:
    from protocol.client import Client

    return Client.from_connection_file(args.connection, timeout=args.timeout, request_timeout_s=args.timeout)


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    ename = getattr(exc, "remote_ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc)
    if getattr(args, "json", False):
        _print_json({"error": {"ename": ename, "evalue": evalue}})
    else:
        print(f"error: {ename}: {evalue}", file=sys.stderr)
    return EXIT_ERROR


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
        _print_json(summary)
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
