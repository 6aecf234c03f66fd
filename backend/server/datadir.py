"""What lives at the top of a data dir and is shared by the server and the CLI."""

from __future__ import annotations

from pathlib import Path

from protocol import new_key, write_private_file

HMAC_KEY_FILE = "hmac.key"
MIN_KEY_CHARS = 32


def load_or_create_hmac_key(data_dir: Path) -> str:
    """The signing key of this data dir, made on first use and kept (mode 0600).

    Keeping it (rather than a new key per start) lets clients, and the connection files issued by
    ``keys create``, keep working across a server restart.
    """
    path = Path(data_dir) / HMAC_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= MIN_KEY_CHARS:
            return key
    key = new_key()
    write_private_file(path, key.encode("utf-8"))
    return key
