"""Content-addressed artifact store: ``<root>/ab/abcdef...`` named by the SHA-256 of the bytes.

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the directory), so a
blob that exists is complete: a crash leaves at worst an orphan ``*.tmp`` file, never a torn blob.
The same content stored twice is stored once. Arrays are stored as ``.npy`` bytes (dtype and
shape travel inside the file, and ``np.load(mmap_mode="r")`` reads them back without a copy).

Both the worker processes (which store a job's outputs) and the server (which reads them back for
``get_artifact``) use this class; it holds no state but the root path.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from protocol.artifact_names import ArtifactNameError as ArtifactNameError
from protocol.artifact_names import check_artifact_name

_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")  # fullmatch only: "$" accepts a trailing newline
NPY_MEDIA_TYPE = "application/x-npy"


@dataclass(frozen=True)
class ArtifactRecord:
    """What the job store keeps and what the wire carries for one artifact (docs/protocol.md §4)."""

    name: str
    kind: str  # "array" | "file"
    sha256: str
    size: int
    media_type: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        record = asdict(self)
        if self.kind != "array":
            del record["dtype"], record["shape"]
        else:
            record["shape"] = list(self.shape or ())
        return record


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingWriter:
    """File-like wrapper that hashes what it writes (so ``np.save`` streams into the hash)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.size += view.nbytes
        return self.raw.write(view)

    def flush(self) -> None:
        self.raw.flush()


class ArtifactStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _commit(self, tmp: Path, sha256: str) -> Path:
        """Move a complete, fsynced temp file to its content address (or drop it if already there)."""
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # identical content already stored: keep the old blob untouched
            tmp.unlink()
            return final
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return final

    def _write(self, fill: Any) -> tuple[str, int]:
        """Create a temp file, let ``fill(writer)`` write into it, then fsync and commit it."""
        fd, tmp_name = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as raw:
                writer = _HashingWriter(raw)
                fill(writer)
                raw.flush()
                os.fsync(raw.fileno())
            sha256 = writer.hash.hexdigest()
            self._commit(tmp, sha256)
            return sha256, writer.size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_bytes(self, data: bytes | memoryview) -> tuple[str, int]:
        return self._write(lambda w: w.write(data))

    def put_file(self, source: Path | str) -> tuple[str, int]:
        def copy(writer: _HashingWriter) -> None:
            with open(source, "rb") as src:
                while chunk := src.read(_CHUNK):
                    writer.write(chunk)

        return self._write(copy)

    def put_array(self, array: np.ndarray) -> tuple[str, int]:
        # allow_pickle=False: object arrays are refused (they would not be plain bytes on the wire).
        return self._write(lambda w: np.save(w, np.asarray(array), allow_pickle=False))

    def store_array(self, name: str, array: np.ndarray) -> ArtifactRecord:
        array = np.asarray(array)
        sha256, size = self.put_array(array)
        return ArtifactRecord(
            check_artifact_name(name),
            "array",
            sha256,
            size,
            NPY_MEDIA_TYPE,
            array.dtype.str,
            tuple(array.shape),
        )

    def store_file(self, name: str, source: Path | str) -> ArtifactRecord:
        sha256, size = self.put_file(source)
        media_type = mimetypes.guess_type(name)[0] or mimetypes.guess_type(str(source))[0]
        return ArtifactRecord(
            check_artifact_name(name), "file", sha256, size, media_type or "application/octet-stream"
        )

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def load_array(self, sha256: str) -> np.ndarray:
        """Memory-mapped, read-only view of a stored ``.npy`` (no copy into RAM)."""
        return np.load(self.path(sha256), mmap_mode="r", allow_pickle=False)

    def verify(self, sha256: str) -> bool:
        """Recompute the digest of a stored blob (detects bit rot or tampering)."""
        digest = hashlib.sha256()
        with open(self.path(sha256), "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def iter_blobs(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for blob in sorted(sub.iterdir()):
                    if _SHA256_RE.fullmatch(blob.name):
                        yield blob.name
