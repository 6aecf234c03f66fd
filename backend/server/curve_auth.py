"""Remote mode: the server's CURVE key pair, one key pair per client, and the ZAP authenticator.

Layout under ``<data-dir>/curve/``::

    server.key, server.key_secret          the server's key pair (made once, kept across restarts)
    clients/NAME.key                       public keys of the clients allowed in (one per client)
    issued/NAME/NAME.key(_secret)          what ``keys create NAME`` made for that client, plus
    issued/NAME/connection.json            a connection file for it (address, HMAC key, server key)
    ../client.key(_secret)                 the key of clients on the server machine itself, listed
                                           as clients/local.key (see ensure_local_client)

The authenticator asks :class:`ClientKeyDirectory` at every CURVE handshake, and that reads the
``clients`` folder afresh when it changed, so ``keys create``/``keys revoke`` take effect for new
connections without a restart. (A revoked client's already open connection stays open until it
reconnects; restart the server to cut it at once.)
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from protocol import ConnectionInfo, write_connection_file
from protocol.curve import PUBLIC_SUFFIX, SECRET_SUFFIX, load_keypair, load_public_key, write_keypair

log = logging.getLogger(__name__)

SERVER_KEY_NAME = "server"
LOCAL_CLIENT_NAME = "local"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")





def check_client_name(name: str) -> str:
    if not _NAME_RE.match(name) or name == SERVER_KEY_NAME:
        raise ValueError(
            f"client name must be 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-', "
            f"and not {SERVER_KEY_NAME!r}: {name!r}"
        )
    return name


@dataclass(frozen=True)
class IssuedClient:
    name: str
    public_key: str
    secret_key_file: Path
    connection_file: Path


class CurveKeys:
    """The key files of one data dir."""

    def __init__(self, data_dir: Path | str) -> None:
        self.root = Path(data_dir) / "curve"
        self.clients_dir = self.root / "clients"
        self.issued_dir = self.root / "issued"

    def server_keypair(self) -> tuple[bytes, bytes]:
        """The server's ``(public, secret)`` Z85 keys, created on first use."""
        secret_file = self.root / (SERVER_KEY_NAME + SECRET_SUFFIX)
        if not secret_file.exists():
            write_keypair(self.root, SERVER_KEY_NAME, role="server")
            os.chmod(self.root, 0o700)
        return load_keypair(secret_file)

    def client_public_keys(self) -> dict[str, bytes]:
        """name -> Z85 public key of every allowed client."""
        keys: dict[str, bytes] = {}
        if self.clients_dir.is_dir():
            for path in sorted(self.clients_dir.glob("*" + PUBLIC_SUFFIX)):
                try:
                    keys[path.name[: -len(PUBLIC_SUFFIX)]] = load_public_key(path)
                except Exception as exc:  # one bad file must not lock everybody out
                    log.warning("ignoring unreadable client key %s: %s", path, exc)
        return keys

    def create_client(
        self, name: str, address: str, hmac_key: str, out_dir: Path | None = None,
        buffer_integrity: str | None = None,
    ) -> IssuedClient:
        """Make a key pair for client ``name``, allow its public key, write its connection file.

        ``buffer_integrity`` must be the server's mode (docs/protocol.md §2.1): a client whose
        mode differs is refused at its hello. None writes the CURVE default.
        """
        check_client_name(name)
        if (self.clients_dir / (name + PUBLIC_SUFFIX)).exists():
            raise FileExistsError(f"a client named {name!r} already exists; revoke it first")
        server_public, _ = self.server_keypair()
        folder = Path(out_dir) if out_dir is not None else self.issued_dir / name
        public_path, secret_path = write_keypair(folder, name, role="client")
        public_key = load_public_key(public_path)
        self.clients_dir.mkdir(parents=True, exist_ok=True)
        # Written last: the client is allowed only once everything it needs exists.
        (self.clients_dir / (name + PUBLIC_SUFFIX)).write_bytes(public_path.read_bytes())
        info = ConnectionInfo(
            address=address,
            key=hmac_key,
            curve=True,
            server_public_key=server_public.decode("ascii"),
            client_key_file=str(secret_path.resolve()),
            buffer_integrity=buffer_integrity,
        )
        connection = write_connection_file(folder / "connection.json", info)
        return IssuedClient(name, public_key.decode("ascii"), secret_path, connection)

    def ensure_local_client(self) -> Path:
        """A client key for this machine's own use, listed as ``local``; returns its secret key file.

        It lives in the data dir (``client.key_secret``, where clients look by default), so CLI
        commands on the server machine work against a ``--curve`` server with the server's own
        connection file. Whoever can read the data dir can read the HMAC key too, so this grants
        nothing new; ``keys revoke local`` removes it (it is re-made at the next start).
        """
        data_dir = self.root.parent
        secret = data_dir / ("client" + SECRET_SUFFIX)
        if not secret.exists():
            write_keypair(data_dir, "client", role="client")
        listed = self.clients_dir / (LOCAL_CLIENT_NAME + PUBLIC_SUFFIX)
        public = load_keypair(secret)[0]
        if not listed.exists() or load_public_key(listed) != public:
            self.clients_dir.mkdir(parents=True, exist_ok=True)
            listed.write_bytes((data_dir / ("client" + PUBLIC_SUFFIX)).read_bytes())
        return secret

    def revoke_client(self, name: str) -> bool:
        """Remove the client's public key (it can no longer connect). False if it was not listed."""
        check_client_name(name)
        path = self.clients_dir / (name + PUBLIC_SUFFIX)
        if not path.exists():
            return False
        path.unlink()
        return True


class ClientKeyDirectory:
    """ZAP credentials provider: allows exactly the public keys in ``clients_dir`` (re-read on change)."""

    def __init__(self, keys: CurveKeys) -> None:
        self.keys = keys
        self._stamp: tuple[int, int] | None = None
        self._allowed: dict[bytes, str] = {}

    def _refresh(self) -> None:
        try:
            st = self.keys.clients_dir.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            self._allowed = {key: name for name, key in self.keys.client_public_keys().items()}
            self._stamp = stamp

    def callback(self, domain: str, key: bytes) -> bool:
        self._refresh()
        name = self._allowed.get(key)
        if name is None:
            log.warning(
                "CURVE: refused a client key that is not listed (%s...)", key[:8].decode("ascii", "replace")
            )
            return False
        log.info("CURVE: client %r connected", name)
        return True


def start_authenticator(context: zmq.Context[Any], keys: CurveKeys) -> ThreadAuthenticator:
    """A ZAP handler thread that lets in only listed client keys. Start it before binding."""
    auth = ThreadAuthenticator(context, log=logging.getLogger("backend.server.zap"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=ClientKeyDirectory(keys))
    return auth
