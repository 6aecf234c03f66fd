"""Content-addressed artifact store: ``<root>/ab/abcdef...`` named by the SHA-256 of the bytes.

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the directory), so a
blob that exists is complete: a crash leaves at worst an orphan ``*.tmp`` file, never a torn blob.
The same content stored twice is stored once. Arrays are stored as ``.npy`` bytes (dtype and
shape travel inside the file, and ``np.load(mmap_mode="r")`` reads them back without a copy).

Both the worker processes (which store a job's outputs) and the server (which reads them back for
``get_artifact``) use this class; it holds no state but the root path and a cached size.

Disk quota: ``<root>/quota.json`` (written by the server from ``serve --artifact-quota``) bounds
the bytes of all blobs together; every process that stores reads it, so the workers' outputs and
the server's stored inputs count against one budget. A blob that would cross it is not committed
and :class:`DiskQuotaExceeded` says the quota and how to free space. The usage each process sees
is re-measured every :data:`USAGE_REFRESH_S` seconds, so concurrent writers may overshoot by what
they store in that window (bounded by the workers' output, never unbounded).

Blobs are shared by content; what may be deleted is decided in :mod:`backend.server.retention`
from the job table. A blob that is stored again while it exists has its mtime refreshed, so the
collector can tell an old blob from one a running job has just (re)produced.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
import tempfile
import time
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
QUOTA_FILE = "quota.json"
USAGE_REFRESH_S = 5.0


class DiskQuotaExceeded(OSError):
    """Storing a blob would put the artifact store over its quota (a clear, user-facing message)."""


@dataclass(frozen=True)
class Staged:
    """A complete, fsynced blob not yet at its content address (see :meth:`ArtifactStore.stage_bytes`)."""

    tmp: Path
    sha256: str
    size: int


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
        self._usage: int | None = None
        self._usage_at = -1e9

    # --- quota -----------------------------------------------------------------------------------

    def quota(self) -> int | None:
        """The quota in bytes from ``quota.json``, or None (no quota)."""
        try:
            value = json.loads((self.root / QUOTA_FILE).read_text()).get("max_bytes")
        except (OSError, ValueError, AttributeError):
            return None
        return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def set_quota(self, max_bytes: int | None) -> None:
        path = self.root / QUOTA_FILE
        if max_bytes is None:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"max_bytes": int(max_bytes)}))
        os.replace(tmp, path)

    def usage(self, refresh: bool = False) -> int:
        """Bytes of all blobs (re-measured at most every USAGE_REFRESH_S s unless ``refresh``)."""
        now = time.monotonic()
        if refresh or self._usage is None or now - self._usage_at > USAGE_REFRESH_S:
            total = 0
            for sub in self.root.iterdir():
                if sub.is_dir() and len(sub.name) == 2:
                    with os.scandir(sub) as entries:
                        total += sum(e.stat().st_size for e in entries if e.is_file())
            self._usage, self._usage_at = total, now
        return self._usage

    def check_quota(self, new_bytes: int, what: str = "a blob") -> None:
        """Raise :class:`DiskQuotaExceeded` when ``new_bytes`` more would exceed the quota."""
        quota = self.quota()
        if quota is None:
            return
        used = self.usage()
        if used + new_bytes > quota:
            used = self.usage(refresh=True)  # maybe something was pruned meanwhile
        if used + new_bytes > quota:
            raise DiskQuotaExceeded(
                f"the artifact store is full: {used} of its {quota} bytes are used and {what} needs "
                f"{new_bytes} more. Free space with `avatar-studio jobs prune --older-than 7d` (finished "
                f"jobs older than 7 days and the files only they used), or restart the server with a "
                f"larger `serve --artifact-quota`"
            )

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _commit(self, tmp: Path, sha256: str, check_quota: bool = True) -> Path:
        """Move a complete, fsynced temp file to its content address (or drop it if already there)."""
        final = self.path(sha256)
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # identical content already stored: keep the old blob's bytes,
            try:  # but mark it as in use now (retention keeps young blobs)
                os.utime(final)
                tmp.unlink()
                return final
            except FileNotFoundError:
                pass  # collected just now: store ours in its place
        size = tmp.stat().st_size
        if check_quota:
            self.check_quota(size, f"a new file of the job's output ({sha256[:12]})")
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if self._usage is not None:
            self._usage += size
        return final

    def stage_bytes(self, data: bytes | memoryview) -> Staged:
        """Write and fsync ``data`` under a temp name; :meth:`commit` or :meth:`discard` it later.

        Used for a submit's inputs: nothing reaches a content address (where a job or the
        collector could see it) before the job that uses it is in the job table."""
        return self._stage(lambda w: w.write(data))

    def stage_array(self, array: np.ndarray) -> Staged:
        return self._stage(lambda w: np.save(w, np.asarray(array), allow_pickle=False))

    def _stage(self, fill: Any) -> Staged:
        fd, tmp_name = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as raw:
                writer = _HashingWriter(raw)
                fill(writer)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(tmp, writer.hash.hexdigest(), writer.size)

    def commit(self, staged: Staged) -> None:
        """Move a staged blob to its content address (the quota was checked when it was admitted)."""
        self._commit(staged.tmp, staged.sha256, check_quota=False)

    def discard(self, staged: Staged) -> None:
        staged.tmp.unlink(missing_ok=True)

    def remove(self, sha256: str) -> int:
        """Delete a blob (the caller knows nothing refers to it); returns the bytes freed."""
        path = self.path(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        if self._usage is not None:
            self._usage = max(0, self._usage - size)
        return size

    def _write(self, fill: Any) -> tuple[str, int]:
        """Stage ``fill``'s bytes (temp file, hashed, fsynced), then commit them under the quota."""
        staged = self._stage(fill)
        try:
            self._commit(staged.tmp, staged.sha256)
        except BaseException:
            staged.tmp.unlink(missing_ok=True)
            raise
        return staged.sha256, staged.size

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
