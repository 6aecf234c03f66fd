"""The one rule for artifact names (docs/protocol.md §4): the server checks the names a job stores,
and every client (``protocol.client``, the Blender add-on) checks the names it is sent before using
one as a path under its download folder, so a name can never escape that folder on any OS.

A name is a relative POSIX path (``rgb/0001.png``) of at most 512 characters: non-empty parts,
none ``.`` or ``..``, no leading ``/``, no backslash (a separator on Windows), no NUL, no control
characters, and no drive or stream colon in it (``C:x`` is relative to a drive's working folder on
Windows, ``a:b`` an NTFS alternate stream).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .errors import ProtocolError

MAX_ARTIFACT_NAME_CHARS = 512


class ArtifactNameError(ProtocolError, ValueError):
    """An artifact name that could escape its folder once downloaded (``..``, absolute, empty, ...).

    A :class:`ProtocolError` for clients (a server sent it) and a ``ValueError`` for the server's
    job code (a job tried to store it).
    """

    ename = "ArtifactNameError"


def check_artifact_name(name: object) -> str:
    """``name`` unchanged when it is a safe artifact name (see the module doc); else the error."""
    if not isinstance(name, str) or not name or len(name) > MAX_ARTIFACT_NAME_CHARS:
        shown = name[:80] if isinstance(name, str) else name
        raise ArtifactNameError(
            f"artifact name must be a non-empty string of at most {MAX_ARTIFACT_NAME_CHARS} chars: {shown!r}"
        )
    parts = name.split("/")
    if (
        name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or any(c in name for c in "\\:")
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise ArtifactNameError(
            f"artifact name must be a relative path without '.', '..', '\\', ':' or control characters: "
            f"{name[:80]!r}"
        )
    return name


def artifact_path(name: object) -> PurePosixPath:
    """The checked name as a relative path, to join under a download folder."""
    return PurePosixPath(check_artifact_name(name))
