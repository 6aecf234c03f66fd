"""Remote mode: the server's CURVE key pair, one key pair per client, and the ZAP authenticator.

Layout under ``<data-dir>/curve/``::

    server.key, server.key_secret          the server's key pair (made once, kept across restarts)
    clients/NAME.key                       public keys of the clients allowed in (one per client)
    issued/NAME/NAME.key(_secret)          what ``keys create NAME`` made for that client, plus
    issued/NAME/connection.json            a connection file for it (address, HMAC key, server key)
    clients/NAME.json                      the client's record (0600): its own HMAC key, admin flag,
                                           where its connection file is (see ClientRecord)
    ../client.key(_secret)                 the key of clients on the server machine itself, listed
                                           as clients/local.key (see ensure_local_client)

The authenticator asks :class:`ClientKeyDirectory` at every CURVE handshake, and that reads the
``clients`` folder afresh when it changed, so ``keys create``/``keys revoke`` take effect for new
connections without a restart. (A revoked client's already open connection stays open until it
reconnects; restart the server to cut it at once.)

Identity: the ZAP handler sets each CURVE connection's ZMQ ``User-Id`` to the *name* its public
key is listed under (:meth:`NamingAuthenticator.curve_user_id`), so every received frame says
which client sent it (``frame.get("User-Id")``, see backend/server/identity.py). Each issued
client signs with its own HMAC key (its record); the server verifies a message with the key of
the name CURVE authenticated, so a key copied from another client's connection file is useless
on this client's connection. ``local`` (this machine's key) signs with the data dir's key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from protocol import ConnectionInfo, new_key, write_connection_file, write_private_file
from protocol.curve import PUBLIC_SUFFIX, SECRET_SUFFIX, load_keypair, load_public_key, write_keypair

log = logging.getLogger(__name__)

SERVER_KEY_NAME = "server"
LOCAL_CLIENT_NAME = "local"
RECORD_SUFFIX = ".json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_client_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name == SERVER_KEY_NAME:
        raise ValueError(
            f"client name must be 1-64 of [A-Za-z0-9_.-], not starting with '.' or '-', "
            f"and not {SERVER_KEY_NAME!r}: {name!r}"
        )
    return name


@dataclass(frozen=True)
class ClientRecord:
    """What the server knows of one issued client besides its public key (``clients/NAME.json``).

    ``hmac_key``: the key this client signs with (its own, in its connection file only).
    ``admin``: may see, attach to, cancel and download every client's jobs.
    The rest is what ``keys rotate`` needs to write the client a new connection file.
    """

    name: str
    hmac_key: str
    admin: bool = False
    connection_file: str | None = None
    address: str | None = None
    buffer_integrity: str | None = None
    client_key_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "hmac_key": self.hmac_key, "admin": self.admin,
            "connection_file": self.connection_file, "address": self.address,
            "buffer_integrity": self.buffer_integrity, "client_key_file": self.client_key_file,
        }

    @classmethod
    def from_json(cls, name: str, data: object) -> ClientRecord:
        key = data.get("hmac_key") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(key, str) or len(key) < 32:
            raise ValueError("a client record needs an 'hmac_key' string of >= 32 characters")
        if not isinstance(data.get("admin", False), bool):
            raise ValueError("'admin' must be true or false")

        def text(field: str) -> str | None:
            value = data.get(field)
            return value if isinstance(value, str) else None

        return cls(name, data["hmac_key"], data.get("admin", False), text("connection_file"),
                   text("address"), text("buffer_integrity"), text("client_key_file"))


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

    def client_records(self) -> dict[str, ClientRecord]:
        """name -> record of every client that has one (clients issued before records existed
        have none: they sign with the data dir's shared key until ``keys rotate``)."""
        records: dict[str, ClientRecord] = {}
        if self.clients_dir.is_dir():
            for path in sorted(self.clients_dir.glob("*" + RECORD_SUFFIX)):
                name = path.name[: -len(RECORD_SUFFIX)]
                try:
                    records[name] = ClientRecord.from_json(name, json.loads(path.read_text("utf-8")))
                except Exception as exc:  # that client is refused (no key), the others go on
                    log.warning("ignoring unreadable client record %s: %s", path, exc)
        return records

    def write_record(self, record: ClientRecord) -> Path:
        return write_private_file(self.clients_dir / (record.name + RECORD_SUFFIX),
                                  (json.dumps(record.to_json(), indent=2) + "\n").encode("utf-8"))

    def _write_client_connection(self, record: ClientRecord) -> Path:
        assert record.connection_file is not None and record.address is not None
        server_public, _ = self.server_keypair()
        info = ConnectionInfo(
            address=record.address,
            key=record.hmac_key,
            curve=True,
            server_public_key=server_public.decode("ascii"),
            client_key_file=record.client_key_file,
            buffer_integrity=record.buffer_integrity,
        )
        return write_connection_file(record.connection_file, info)

    def create_client(
        self, name: str, address: str, out_dir: Path | None = None,
        buffer_integrity: str | None = None, admin: bool = False,
    ) -> IssuedClient:
        """Make a key pair and an HMAC key for client ``name``, allow its public key, write its
        connection file (which holds its own HMAC key: no other client's file can sign for it).

        ``buffer_integrity`` must be the server's mode (docs/protocol.md §2.1): a client whose
        mode differs is refused at its hello. None writes the CURVE default. ``admin``: the
        client sees and manages every client's jobs.
        """
        check_client_name(name)
        if name == LOCAL_CLIENT_NAME:
            raise ValueError(f"{LOCAL_CLIENT_NAME!r} is this machine's own key; choose another name")
        if (self.clients_dir / (name + PUBLIC_SUFFIX)).exists():
            raise FileExistsError(f"a client named {name!r} already exists; revoke it first")
        self.server_keypair()
        folder = Path(out_dir) if out_dir is not None else self.issued_dir / name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        public_path, secret_path = write_keypair(folder, name, role="client")
        public_key = load_public_key(public_path)
        record = ClientRecord(
            name, new_key(), admin, str((folder / "connection.json").resolve()), address,
            buffer_integrity, str(secret_path.resolve()),
        )
        connection = self._write_client_connection(record)
        self.clients_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.write_record(record)
        # Written last: the client is allowed only once everything it needs exists.
        write_private_file(self.clients_dir / (name + PUBLIC_SUFFIX), public_path.read_bytes())
        return IssuedClient(name, public_key.decode("ascii"), secret_path, connection)

    def rotate_client_keys(self) -> list[Path]:
        """A new HMAC key for every listed client but ``local`` (which uses the data dir's key),
        and a new connection file for each; returns the files written. A client issued before
        records existed gets a record now, if its connection file is where ``keys create`` put it.
        The old keys stop verifying as soon as the records change (the server re-reads them)."""
        written: list[Path] = []
        records = self.client_records()
        for name in self.client_public_keys():
            if name == LOCAL_CLIENT_NAME:
                continue
            record = records.get(name)
            if record is None:
                record = self._legacy_record(name)
                if record is None:
                    log.warning("client %r has no record and no connection file in %s: revoke and "
                                "re-create it", name, self.issued_dir / name)
                    continue
            record = ClientRecord(**{**record.to_json(), "hmac_key": new_key()})
            self.write_record(record)
            written.append(self._write_client_connection(record))
        return written

    def _legacy_record(self, name: str) -> ClientRecord | None:
        from protocol import ProtocolError, read_connection_file

        path = self.issued_dir / name / "connection.json"
        try:
            info = read_connection_file(path)
        except ProtocolError:
            return None
        return ClientRecord(name, info.key, False, str(path.resolve()), info.address,
                            info.buffer_integrity, info.client_key_file)

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
            self.clients_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private_file(listed, (data_dir / ("client" + PUBLIC_SUFFIX)).read_bytes())
        return secret

    def revoke_client(self, name: str) -> bool:
        """Remove the client's public key (it can no longer connect). False if it was not listed."""
        check_client_name(name)
        path = self.clients_dir / (name + PUBLIC_SUFFIX)
        if not path.exists():
            return False
        path.unlink()
        (self.clients_dir / (name + RECORD_SUFFIX)).unlink(missing_ok=True)
        return True


class ChangeWatch:
    """Tells whether any of some files/folders may have changed since the last True, by stat.

    Modification times are coarse (a few ms on ext4), so two changes within one tick look like
    one. As git does for its index, a stamp that is not clearly older than the moment it was last
    read is treated as possibly changed again: for ``RACY_S`` after a change, every call says True.
    """

    RACY_S = 0.1

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self._seen: tuple[tuple[int, int, int], ...] | None = None
        self._read_at = 0.0

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def changed(self) -> bool:
        stamps = tuple(self._stamp(p) for p in self.paths)
        if stamps == self._seen and all(s[0] / 1e9 < self._read_at - self.RACY_S for s in stamps):
            return False
        self._seen, self._read_at = stamps, time.time()  # stamped before the caller reads
        return True


class ClientKeyDirectory:
    """ZAP credentials provider: allows exactly the public keys in ``clients_dir`` (re-read on change)."""

    def __init__(self, keys: CurveKeys) -> None:
        self.keys = keys
        self._watch = ChangeWatch(keys.clients_dir)
        self._allowed: dict[bytes, str] = {}

    def _refresh(self) -> None:
        if self._watch.changed():
            self._allowed = {key: name for name, key in self.keys.client_public_keys().items()}

    def name_of(self, key: bytes) -> str | None:
        """The name a Z85 public key was allowed under at the last :meth:`callback`."""
        return self._allowed.get(key)

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


class NamingAuthenticator(ThreadAuthenticator):
    """ZAP in a thread, with the client's listed *name* as the connection's ``User-Id``.

    pyzmq calls :meth:`curve_user_id` right after the credentials callback allowed the key, on the
    same thread, so the name comes from the same snapshot of the clients folder.
    """

    directory: ClientKeyDirectory | None = None

    def curve_user_id(self, client_public_key: bytes) -> str:
        name = self.directory.name_of(z85.encode(client_public_key)) if self.directory else None
        return name or "?"  # "?" is no valid client name: the server refuses its messages


def start_authenticator(context: zmq.Context[Any], keys: CurveKeys) -> ThreadAuthenticator:
    """A ZAP handler thread that lets in only listed client keys. Start it before binding."""
    auth = NamingAuthenticator(context, log=logging.getLogger("backend.server.zap"))
    auth.directory = ClientKeyDirectory(keys)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=auth.directory)
    return auth
