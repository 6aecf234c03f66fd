"""``avatar-studio keys``: the per-client CURVE keys of a server in remote mode (``create`` with
``--admin``, ``list``, ``revoke``) and ``rotate`` (new HMAC keys for the data dir and every client)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backend.cli.common import EXIT_ERROR, EXIT_OK, add_data_dir, add_json, data_dir_of, fail, print_json


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

    data_dir = data_dir_of(args)
    keys = CurveKeys(data_dir)
    if args.keys_command == "list":
        names = keys.client_public_keys()
        admins = {n for n, record in keys.client_records().items() if record.admin} | {"local"}
        if args.json:
            print_json({"clients": [{"name": n, "public_key": k.decode("ascii"), "admin": n in admins}
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
            return fail(args, exc)
        if args.json:
            print_json({"name": args.name, "revoked": removed})
        else:
            print(f"revoked {args.name}" if removed else f"no client named {args.name}")
        return EXIT_OK if removed else EXIT_ERROR
    # create: the client must sign buffers the way the server checks them (a mismatch is refused
    # at the hello), so the mode comes from the running server unless given.
    server_address, server_integrity = _server_settings_for_clients(data_dir)
    address = args.address or server_address
    integrity = args.buffer_integrity or server_integrity
    if address is None:
        return fail(
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
        return fail(args, exc)
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
        print_json(result)
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
        return fail(args, FileNotFoundError(f"no data dir at {data_dir}"))
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
        print_json({"rotated": [str(p) for p in written]})
    else:
        print("new keys; give each client its new connection file (the old ones are refused now):")
        for path in written:
            print(f"  {path}")
    return EXIT_OK


def register(sub: Any) -> None:
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
        add_data_dir(parser)
        add_json(parser)
        parser.set_defaults(func=cmd_keys)
