"""What lives at the top of a data dir and is shared by the server and the CLI, and its permissions.

The data dir holds every secret of a backend (the HMAC key, the connection file, CURVE secret keys,
jobs' params and results), so like ``ssh`` with ``~/.ssh`` the server makes it private before it
uses it (:func:`secure_data_dir`): the dir and its subfolders 0700, its files 0600, everything
owned by the user running the server. A dir that cannot be made so (owned by someone else, a
file we may not chmod) is refused with a message saying what to do.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from protocol import new_key, write_private_file

log = logging.getLogger(__name__)

HMAC_KEY_FILE = "hmac.key"
MIN_KEY_CHARS = 32
# Folders whose whole tree holds secrets and is small: every entry in them is checked and repaired.
# (work/ and artifacts/ can hold many files: their top folder is made 0700, which already keeps
# everyone else from reaching anything below it.)
_DEEP = ("curve",)


class DataDirError(RuntimeError):
    """The data dir is not private and cannot be made so; the message says why and what to do."""


def read_hmac_key(data_dir: Path) -> str:
    """The data dir's signing key, made on first use (see :func:`load_or_create_hmac_key`)."""
    return load_or_create_hmac_key(data_dir)


def load_or_create_hmac_key(data_dir: Path) -> str:
    """The signing key of this data dir, made on first use and kept (mode 0600).

    Keeping it (rather than a new key per start) lets clients, and the connection files issued by
    ``keys create``, keep working across a server restart; ``keys rotate`` replaces it.
    """
    path = Path(data_dir) / HMAC_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= MIN_KEY_CHARS:
            return key
    key = new_key()
    write_private_file(path, key.encode("utf-8"))
    return key


def rotate_hmac_key(data_dir: Path) -> str:
    """Replace the data dir's signing key with a new one (atomically, 0600); returns it."""
    key = new_key()
    write_private_file(Path(data_dir) / HMAC_KEY_FILE, key.encode("utf-8"))
    return key


def _repair(path: Path, st: os.stat_result, uid: int, repaired: list[str]) -> None:
    if st.st_uid != uid:
        raise DataDirError(
            f"{path} is owned by uid {st.st_uid}, not by the user running the server (uid {uid}): "
            f"refusing to keep secrets there. Use a data dir of your own (--data-dir or "
            f"$AVATAR_STUDIO_DATA_DIR), or `chown -R {uid} {path}` as its owner/root."
        )
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    new_mode = 0o700 if stat.S_ISDIR(st.st_mode) else mode & 0o700  # others lose every bit
    try:
        os.chmod(path, new_mode)
    except OSError as exc:
        raise DataDirError(f"cannot make {path} private (chmod: {exc.strerror}); "
                           f"run `chmod {new_mode:o} {path}` and start again") from None
    repaired.append(f"{path} {mode:04o}")


def secure_data_dir(data_dir: Path) -> list[str]:
    """Create ``data_dir`` 0700, or make an existing one private; returns what was repaired
    (``"PATH OLDMODE"`` each, also logged as a warning). Raises :class:`DataDirError`."""
    data_dir = Path(data_dir)
    if os.name == "nt":  # POSIX modes mean nothing there; the user's profile ACLs apply
        data_dir.mkdir(parents=True, exist_ok=True)
        return []
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = os.getuid()
    repaired: list[str] = []
    _repair(data_dir, data_dir.lstat(), uid, repaired)
    for entry in os.scandir(data_dir):
        path = Path(entry.path)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):  # a link's target is not ours to judge; note it
            log.warning("data dir entry %s is a symbolic link; its target's permissions are not checked",
                        path)
            continue
        _repair(path, st, uid, repaired)
        if entry.name in _DEEP and stat.S_ISDIR(st.st_mode):
            for root, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    child = Path(root) / name
                    child_st = child.lstat()
                    if not stat.S_ISLNK(child_st.st_mode):
                        _repair(child, child_st, uid, repaired)
    for item in repaired:
        log.warning("made private (was readable or writable by others): %s", item)
    return repaired


# --- the default local endpoint ------------------------------------------------------------------

SOCKET_NAME = "backend.sock"
# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
MAX_IPC_PATH_BYTES = 103
TCP_LOOPBACK_BIND = "tcp://127.0.0.1:0"


def _private_runtime_dir() -> Path | None:
    """A short folder of our own for the socket when the data dir's path is too long:
    ``$XDG_RUNTIME_DIR/avatar-studio`` or ``/tmp/avatar-studio-UID``, 0700 and ours, else None
    (e.g. someone else made the /tmp one first: then we do not use it)."""
    uid = os.getuid()
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        candidates.append(Path(runtime) / "avatar-studio")
    candidates.append(Path("/tmp") / f"avatar-studio-{uid}")
    for folder in candidates:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                log.warning("not using %s for the backend socket: not a folder of uid %d", folder, uid)
                continue
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(folder, 0o700)
            return folder
        except OSError as exc:
            log.warning("not using %s for the backend socket: %s", folder, exc)
    return None


def local_endpoint(data_dir: Path) -> str:
    """The default bind of a local server: an ``ipc://`` socket the OS lets only this user reach.

    ``<data-dir>/backend.sock`` (the data dir is 0700, so only its owner, and root, can connect);
    when that path is too long for a Unix socket, ``<short private dir>/<hash of the data dir>.sock``;
    where neither works (Windows, no ipc in libzmq), TCP on 127.0.0.1 with a free port.
    docs/protocol.md §2.1 says why ipc carries buffers in ``transport`` mode by default.
    """
    import hashlib

    import zmq

    if os.name == "nt" or not zmq.has("ipc"):
        return TCP_LOOPBACK_BIND
    path = Path(data_dir) / SOCKET_NAME
    if len(os.fsencode(path)) > MAX_IPC_PATH_BYTES:
        folder = _private_runtime_dir()
        if folder is None:
            return TCP_LOOPBACK_BIND
        digest = hashlib.sha256(os.fsencode(Path(data_dir))).hexdigest()[:16]
        path = folder / f"{digest}.sock"
        if len(os.fsencode(path)) > MAX_IPC_PATH_BYTES:
            return TCP_LOOPBACK_BIND
    return f"ipc://{path}"
