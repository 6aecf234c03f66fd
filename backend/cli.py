# Over 450 lines: the built-in commands; a backend/cli/ package (serve, jobs, keys, models) is next.
"""``avatar-studio`` (also ``python -m backend``): the backend's command line.

Built-in commands: ``serve``, ``submit``, ``jobs``, ``cancel``, ``attach``, ``keys``, ``models``.
Every command has ``--help``; ``--json`` prints machine-readable output on stdout (logs and
progress bars go to stderr). Client commands read ``--connection FILE`` (default: the default
data dir's ``connection.json``, see ``$AVATAR_STUDIO_DATA_DIR``).

Plug-ins: each module in :data:`PLUGIN_MODULES` exposes ``register(subparsers) -> None`` and sets
``func`` (``args -> int`` exit status) on its parsers. A plug-in module that does not exist is
skipped; any other import error propagates. Plug-ins import heavy packages (torch) inside their
handlers, so ``--help`` stays fast.

Exit status: 0 success, 1 the job failed or was cancelled, 2 usage, connection or server error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from backend.cli_fair import add_jobs_prune, add_serve_limits, serve_limits_config

PLUGIN_MODULES = ["backend.commands.preview", "backend.commands.avatar", "backend.addon_build",
                  "backend.commands.clips"]

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


# --- serve --------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.server.app import Server, ServerConfig, ServerStartError

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Everything the server and its workers create (work dirs, artifacts, logs) is private, like
    # the data dir that secure_data_dir makes 0700 (backend/server/datadir.py).
    os.umask(0o077)
    config = ServerConfig(
        data_dir=_data_dir(args),
        bind=args.bind,
        curve=args.curve,
        workers=args.workers,
        cancel_grace_s=args.cancel_grace,
        buffer_integrity=args.buffer_integrity,
        input_roots=tuple(Path(r).expanduser().resolve() for r in args.input_root),
        **serve_limits_config(args),
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
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_serve_limits(p)
    _add_json(p)
    p.set_defaults(func=cmd_serve)


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
    add_jobs_prune(p)  # `jobs prune --older-than DURATION`

    p = sub.add_parser("cancel", help="cancel a job", description="Cancel a queued or running job.")
    p.add_argument("job_id")
    _add_connection(p)
    _add_json(p)
    p.set_defaults(func=cmd_cancel)


# --- keys ---------------------------------------------------------------------------------------


def _server_settings_for_clients(data_dir: Path) -> tuple[str | None, str | None]:
    """(address, buffer integrity) clients should use: the running server's, from its connection
    file, with a wildcard host replaced; (None, None) when no server has written one."""
    import socket

    from protocol import ProtocolError, read_connection_file

    try:
        info = read_connection_file(data_dir / "connection.json")
    except ProtocolError:
        return None, None
    address: str | None = info.address
    if info.transport != "tcp":  # ipc: reachable from this machine only, no use to a remote client
        address = None
    elif info.ip in ("0.0.0.0", "*", "::", None):
        address = f"tcp://{socket.getfqdn()}:{info.port}"
    return address, info.effective_buffer_integrity


def cmd_keys(args: argparse.Namespace) -> int:
    from backend.server.curve_auth import CurveKeys
    from backend.server.datadir import load_or_create_hmac_key
    from protocol import ProtocolError, read_connection_file

    data_dir = _data_dir(args)
    keys = CurveKeys(data_dir)
    if args.keys_command == "list":
        names = keys.client_public_keys()
        admins = {n for n, record in keys.client_records().items() if record.admin} | {"local"}
        if args.json:
            _print_json({"clients": [{"name": n, "public_key": k.decode("ascii"), "admin": n in admins}
                                     for n, k in names.items()]})
        else:
            for name, key in names.items():
                print(f"{name:24} {key.decode('ascii')}{'  admin' if name in admins else ''}")
            if not names:
                print("no client keys (create one with `avatar-studio keys create NAME`)", file=sys.stderr)
        return EXIT_OK
    if args.keys_command == "rotate":
        return _rotate_keys(args, data_dir, keys)
    if args.keys_command == "revoke":
        try:
            removed = keys.revoke_client(args.name)
        except ValueError as exc:
            return _fail(args, exc)
        if args.json:
            _print_json({"name": args.name, "revoked": removed})
        else:
            print(f"revoked {args.name}" if removed else f"no client named {args.name}")
        return EXIT_OK if removed else EXIT_ERROR
    # create: the client must sign buffers the way the server checks them (a mismatch is refused
    # at the hello), so the mode comes from the running server unless given.
    server_address, server_integrity = _server_settings_for_clients(data_dir)
    address = args.address or server_address
    integrity = args.buffer_integrity or server_integrity
    if address is None:
        return _fail(
            args,
            ValueError(
                "no running TCP server found in the data dir to take the address from (a local ipc "
                "server cannot be reached from other machines); pass --address tcp://HOST:PORT"
            ),
        )
    try:
        load_or_create_hmac_key(data_dir)
        issued = keys.create_client(args.name, address, args.out, buffer_integrity=integrity,
                                    admin=args.admin)
    except (ValueError, FileExistsError, ProtocolError) as exc:
        return _fail(args, exc)
    result = {
        "name": issued.name,
        "admin": args.admin,
        "public_key": issued.public_key,
        "address": address,
        "buffer_integrity": read_connection_file(issued.connection_file).effective_buffer_integrity,
        "secret_key_file": str(issued.secret_key_file),
        "connection_file": str(issued.connection_file),
    }
    if args.json:
        _print_json(result)
    else:
        print(
            f"created client key {issued.name!r}\n  connection file: {issued.connection_file}\n"
            f"  secret key file: {issued.secret_key_file}\n"
            f"Copy both to the client machine; there, point `--connection` at the connection file and, "
            f"if the secret key file moved, set $AVATAR_STUDIO_CLIENT_KEY to its new path."
        )
    return EXIT_OK


def _rotate_keys(args: argparse.Namespace, data_dir: Path, keys: Any) -> int:
    """New HMAC keys for the data dir and every issued client; rewrite their connection files."""
    import contextlib
    from dataclasses import replace

    from backend.server.datadir import rotate_hmac_key
    from protocol import ProtocolError, read_connection_file, write_connection_file

    if not data_dir.is_dir():
        return _fail(args, FileNotFoundError(f"no data dir at {data_dir}"))
    key = rotate_hmac_key(data_dir)
    written = [data_dir / "hmac.key"]
    server_file = data_dir / "connection.json"
    # A running server's own file: local clients read the new key from it. None (no server running,
    # no file): the next start writes it with the new key.
    with contextlib.suppress(ProtocolError):
        info = replace(read_connection_file(server_file), key=key)
        written.append(write_connection_file(server_file, info))
    written += keys.rotate_client_keys()
    if args.json:
        _print_json({"rotated": [str(p) for p in written]})
    else:
        print("new keys; give each client its new connection file (the old ones are refused now):")
        for path in written:
            print(f"  {path}")
    return EXIT_OK


def _register_keys(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="CURVE client keys for remote mode",
        description="Create, list, revoke and rotate the per-client keys of a server.",
    )
    keys_sub = p.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key pair and a connection file for a client")
    create.add_argument("name", help="client name (letters, digits, _ . -)")
    create.add_argument(
        "--address",
        default=None,
        metavar="tcp://HOST:PORT",
        help="address the client connects to (default: the running server's)",
    )
    create.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to write the client's files (default <data-dir>/curve/issued/NAME)",
    )
    create.add_argument(
        "--buffer-integrity",
        choices=("digest", "transport"),
        default=None,
        help="how the client signs array buffers; must match the server's "
        "(default: the running server's mode, else transport; docs/protocol.md §2.1)",
    )
    create.add_argument(
        "--admin", action="store_true",
        help="the client may list, attach to, cancel and download every client's jobs",
    )
    list_ = keys_sub.add_parser("list", help="list the allowed client keys")
    revoke = keys_sub.add_parser("revoke", help="remove a client's key (it can no longer connect)")
    revoke.add_argument("name")
    rotate = keys_sub.add_parser(
        "rotate", help="new HMAC keys for the data dir and every client; old connection files stop working",
    )
    for parser in (create, list_, revoke, rotate):
        _add_data_dir(parser)
        _add_json(parser)
        parser.set_defaults(func=cmd_keys)


# --- models -------------------------------------------------------------------------------------


def cmd_models_check(args: argparse.Namespace) -> int:
    from backend.models.registry import ModelConfigError, ModelRegistry

    try:
        registry = ModelRegistry.load(_data_dir(args))
    except ModelConfigError as exc:
        return _fail(args, exc)
    results = registry.check()
    if args.json:
        _print_json({"config": str(registry.config_path), "models": [r.to_json() for r in results]})
        return EXIT_OK
    absent = "" if registry.config_path.exists() else " (absent: defaults)"
    print(f"model config: {registry.config_path}{absent}")
    for r in results:
        status = f"present ({r.source}: {r.location})" if r.present else "missing"
        print(f"{r.spec.role:20} {r.spec.label:48} {status}")
        if not r.present:
            print(f"{'':20} how to provide: {r.how_to}")
    return EXIT_OK


def _register_models(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="model weights registry",
        description="Which model weights (by role) are present on this machine.",
    )
    models_sub = p.add_subparsers(dest="models_command", required=True)
    check = models_sub.add_parser(
        "check", help="list model roles, present or missing, and how to provide them"
    )
    _add_data_dir(check)
    _add_json(check)
    check.set_defaults(func=cmd_models_check)
    # `models make-tiny DIR` (tiny random models in the real on-disk formats) arrives with a later issue.


# --- entry point --------------------------------------------------------------------------------


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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_serve(sub)
    _register_client_commands(sub)
    _register_keys(sub)
    _register_models(sub)
    if plugins:
        _load_plugins(sub)
    return parser


BUILTIN_COMMANDS = frozenset({"serve", "submit", "attach", "jobs", "cancel", "keys", "models"})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A built-in command does not need the plug-ins: skipping them keeps `serve` free of whatever
    # they import (a plug-in that imports torch at module level would land torch in the server).
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(plugins=command not in BUILTIN_COMMANDS).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `avatar-studio jobs | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
