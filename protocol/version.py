"""The wire protocol's version, independent of the package version (see docs/protocol.md)."""

from __future__ import annotations

import re

from .errors import MalformedMessage, VersionMismatch

PROTOCOL_VERSION = "1.1"

_OWN_VERSION = (int(PROTOCOL_VERSION.split(".")[0]), int(PROTOCOL_VERSION.split(".")[1]))
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")  # fullmatch: "$" passes "1.1\n"


def parse_version(text: object) -> tuple[int, int]:
    """``"1.0"`` -> ``(1, 0)``; anything else raises :class:`MalformedMessage`."""
    if text == PROTOCOL_VERSION:  # the usual case, once per received message
        return _OWN_VERSION
    if not isinstance(text, str):
        raise MalformedMessage(f"protocol version must be a string 'MAJOR.MINOR', got {type(text).__name__}")
    match = _VERSION_RE.fullmatch(text)
    if match is None:
        raise MalformedMessage(f"protocol version must look like 'MAJOR.MINOR', got {text[:32]!r}")
    return int(match.group(1)), int(match.group(2))


def is_compatible(remote: str, local: str = PROTOCOL_VERSION) -> bool:
    """Same major version = compatible; minor versions only add optional fields and message types."""
    return parse_version(remote)[0] == parse_version(local)[0]


def check_compatible(remote: object, local: str = PROTOCOL_VERSION) -> None:
    """Raise :class:`VersionMismatch` naming both versions unless ``remote`` shares our major."""
    if not isinstance(remote, str) or _VERSION_RE.fullmatch(remote) is None:
        raise VersionMismatch(local, repr(remote)[:32], "unparseable version")
    if not is_compatible(remote, local):
        raise VersionMismatch(local, remote)
