"""``avatar-studio keys``: the per-client CURVE keys of a --curve server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_ERROR,
    EXIT_OK,
    _add_data_dir,
    _add_json,
    _data_dir,
    _fail,
    _print_json,
)

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
    address = info.address
    if info.ip in ("0.0.0.0", "*", "::", None):
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
        if args.json:
            _print_json({"clients": [{"name": n, "public_key": k.decode("ascii")} for n, k in names.items()]})
        else:
            for name, key in names.items():
                print(f"{name:24} {key.decode('ascii')}")
            if not names:
                print("no client keys (create one with `avatar-studio keys create NAME`)", file=sys.stderr)
        return EXIT_OK
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
                "no running server found in the data dir to take the address from; "
                "pass --address tcp://HOST:PORT"
            ),
        )
    try:
        hmac_key = load_or_create_hmac_key(data_dir)
        issued = keys.create_client(args.name, address, hmac_key, args.out, buffer_integrity=integrity)
    except (ValueError, FileExistsError, ProtocolError) as exc:
        return _fail(args, exc)
    result = {
        "name": issued.name,
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


def _register_keys(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="CURVE client keys for remote mode",
        description="Create, list and revoke the per-client CURVE keys of a --curve server.",
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
    list_ = keys_sub.add_parser("list", help="list the allowed client keys")
    revoke = keys_sub.add_parser("revoke", help="remove a client's key (it can no longer connect)")
    revoke.add_argument("name")
    for parser in (create, list_, revoke):
        _add_data_dir(parser)
        _add_json(parser)
        parser.set_defaults(func=cmd_keys)
