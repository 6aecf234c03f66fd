"""Artifact transfers that never block: ranged, hash-checked, written to a temp file then renamed.

A :class:`Download` fetches one artifact as ranges (``offset``/``length``) of its stored bytes
(for an array: its ``.npy`` file), so no message nears the frame limit whatever the artifact's
size; the server may answer a range shorter than asked (it caps ranges at its own limit), and the
download simply continues from there. The caller steps it: :meth:`Download.step` does what it can
within a time budget (check a reply, write it, send the next range request) and returns at once,
which is what a Blender timer needs. The bytes are hashed as they arrive and compared with the
artifact record's sha256 at the end; a mismatch is an error and leaves no file behind. A file
already at the target is reused only when its sha256 matches (hashed in steps too), so a
corrupted cached file is fetched again.

A :class:`JobDownload` does that for every artifact of a job, a few at a time. The blocking
calls in :class:`protocol.client.Client` (``get_artifact``, ``download``) pump these until done.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

import numpy as np

from . import messages as M
from .artifact_names import ArtifactNameError, artifact_path
from .errors import ProtocolError
from .requests import PendingRequest

DEFAULT_RANGE_BYTES = 8 << 20  # per range request; small enough to verify and write within a pump
HASH_CHUNK_BYTES = 4 << 20  # a cached file is re-hashed this much per step
MAX_RANGES_IN_FLIGHT = 2  # pipelined range requests per artifact (hides one round trip)
# RateLimited replies (a busy client paced by the server): wait, then ask again; give up after this many
# in a row (waits of 0.05 s doubling up to 3.2 s: about 25 s in all).
RATE_LIMIT_MIN_WAIT_S = 0.05
RATE_LIMIT_RETRIES = 12
UNANSWERED_S = 5.0  # a range request without a reply this long is asked again (see Download._backoff)
MMAP_ABOVE_BYTES = 64 << 20  # bigger arrays are memory-mapped, not read, when a download ends


class TransferError(ProtocolError):
    """An artifact could not be fetched: bad reply, wrong size or hash, or the request failed."""


class RequestSender(Protocol):
    """What a transfer needs from the link: send a request without waiting for its reply."""

    def request_nowait(
        self, msg_type: str, content: dict[str, Any], *, emit: bool = True
    ) -> PendingRequest: ...


class UnsafeArtifactName(TransferError, ArtifactNameError):
    """A name from the server that could escape the download folder: both a transfer failure and
    the protocol's one artifact-name error."""


def safe_relative_path(name: str) -> PurePosixPath:
    """An artifact name as a path that cannot escape the download directory; the one rule is
    ``protocol.artifact_names``."""
    try:
        return artifact_path(name)
    except ArtifactNameError as exc:
        raise UnsafeArtifactName(f"unsafe artifact name: {exc}") from None


def local_path(out_dir: Path, record: dict[str, Any]) -> Path:
    """Where an artifact lands under ``out_dir``: arrays as ``.npy`` files, files under their name."""
    name = str(record.get("name", ""))
    relative = safe_relative_path(name)
    if record.get("kind") == "array" and relative.suffix != ".npy":
        return out_dir / f"{relative}.npy"
    return out_dir / relative


def array_key(name: str) -> str:
    """The name an importer looks an array up by (without a ``.npy`` suffix)."""
    return name[:-4] if name.endswith(".npy") else name


def array_from_npy(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Parse ``.npy`` bytes without copying the payload (``np.load`` would copy it once more)."""
    try:
        stream = io.BytesIO(bytes(data[: 1 << 20]))  # the header is small; only it is copied
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ValueError("object arrays are refused")
        count = math.prod(shape)
        array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    except (ValueError, TypeError, OSError) as exc:
        raise ProtocolError(f"artifact is not a valid .npy file: {exc}") from None
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    array.flags.writeable = False
    return array


def load_array_file(path: Path) -> np.ndarray:
    """A downloaded ``.npy`` file as an array (memory-mapped when big, so loading costs nothing)."""
    mmap = "r" if path.stat().st_size > MMAP_ABOVE_BYTES else None
    return np.load(path, mmap_mode=mmap, allow_pickle=False)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Download:
    """One artifact, fetched in ranges and stepped by the caller; see the module docstring.

    ``target``: the file to write (its folder is created); ``None`` keeps the bytes in memory
    (:meth:`value`). ``record``: the job's artifact record (``size``, ``sha256``, ``kind``); when
    missing, the first reply's record is used.
    """

    def __init__(
        self,
        link: RequestSender,
        job_id: str,
        name: str,
        *,
        record: dict[str, Any] | None = None,
        target: Path | None = None,
        range_bytes: int = DEFAULT_RANGE_BYTES,
        reuse_cached: bool = True,
    ) -> None:
        self.link, self.job_id, self.name = link, job_id, name
        self.record: dict[str, Any] = dict(record or {})
        self.target = target
        self.range_bytes = max(1, int(range_bytes))
        self.received = 0  # bytes written so far (contiguous from 0)
        self.cached = False  # the target was already there with the right hash
        self.error: ProtocolError | None = None
        self._in_flight: list[tuple[int, PendingRequest]] = []  # (offset, request), by offset
        self._sent_at = 0.0  # when the oldest range in flight was asked for
        self._next_offset = 0
        self._hash = hashlib.sha256()
        self._memory = bytearray()
        self._part: Path | None = None
        self._handle: BinaryIO | None = None
        self._finished = False
        self._retry_at = 0.0  # a RateLimited reply: ask again from here not before this time
        self._rate_limited = 0  # such replies in a row
        self._cache_handle: BinaryIO | None = None
        if reuse_cached and target is not None and target.is_file() and self.expected_sha256:
            self._cache_handle = open(target, "rb")  # noqa: SIM115 - closed when the check ends
            self._cache_hash = hashlib.sha256()

    # --- what callers read ----------------------------------------------------------------------
    @property
    def size(self) -> int | None:
        return _int(self.record.get("size"))

    @property
    def expected_sha256(self) -> str | None:
        value = self.record.get("sha256")
        return value.lower() if isinstance(value, str) else None

    @property
    def is_array(self) -> bool:
        return self.record.get("kind") == "array"

    @property
    def done(self) -> bool:
        return self._finished or self.error is not None

    @property
    def fraction(self) -> float:
        size = self.size
        return 1.0 if self._finished else (self.received / size if size else 0.0)

    def value(self) -> np.ndarray | bytes:
        """The artifact (a read-only array for ``array`` artifacts, else bytes) once done."""
        if self.error is not None:
            raise self.error
        if not self._finished:
            raise TransferError(f"artifact {self.name!r} is not downloaded yet")
        if self.target is not None:
            return load_array_file(self.target) if self.is_array else self.target.read_bytes()
        return array_from_npy(self._memory) if self.is_array else bytes(self._memory)

    # --- stepping ---------------------------------------------------------------------------------
    def step(self, budget_s: float = 0.005) -> bool:
        """Do what is due without waiting, for about ``budget_s``; returns :attr:`done`."""
        deadline = time.perf_counter() + budget_s
        try:
            while not self.done:
                if self._cache_handle is not None:
                    self._check_cache_chunk()
                elif self._in_flight and self._in_flight[0][1].done:
                    self._take_reply(*self._in_flight.pop(0))
                    self._sent_at = time.perf_counter()
                elif self._in_flight and time.perf_counter() - self._sent_at > UNANSWERED_S:
                    # No reply: a server pacing this client drops what is over its error budget.
                    if not self._backoff(None):
                        raise TransferError(f"artifact {self.name!r}: no reply from the backend")
                elif time.perf_counter() < self._retry_at:
                    break  # the server asked us to slow down: nothing to send yet
                else:
                    self._send_ranges()
                    break  # nothing more to do until a reply arrives
                if time.perf_counter() >= deadline:
                    break
        except ProtocolError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(TransferError(f"artifact {self.name!r}: {exc}"))
        return self.done

    def cancel(self, reason: str = "cancelled") -> None:
        if not self.done:
            self._fail(TransferError(f"artifact {self.name!r}: {reason}"))

    def _check_cache_chunk(self) -> None:
        assert self._cache_handle is not None
        chunk = self._cache_handle.read(HASH_CHUNK_BYTES)
        if chunk:
            self._cache_hash.update(chunk)
            return
        self._cache_handle.close()
        self._cache_handle = None
        if self._cache_hash.hexdigest() == self.expected_sha256:
            self.cached, self._finished = True, True
            self.received = self.size or 0
        # else: a damaged or stale file: fetched again, and replaced only once verified

    def _send_ranges(self) -> None:
        size = self.size
        while len(self._in_flight) < MAX_RANGES_IN_FLIGHT and (size is None or self._next_offset < size):
            if size is None and self._in_flight:
                return  # learn the size from the first reply before asking for more
            offset = self._next_offset
            content = {"job_id": self.job_id, "name": self.name, "offset": offset, "length": self.range_bytes}
            request = self.link.request_nowait(M.GET_ARTIFACT, content, emit=False)
            if not self._in_flight:
                self._sent_at = time.perf_counter()
            self._in_flight.append((offset, request))
            self._next_offset = offset + self.range_bytes
        if size == 0 and not self._in_flight:
            self._finish()

    def _take_reply(self, offset: int, request: PendingRequest) -> None:
        if request.error is not None:
            if self._backoff(request.error):
                return
            raise request.error
        self._rate_limited = 0
        if offset != self.received:
            return  # planned before a shorter reply moved the next offset: asked again below
        assert request.reply is not None
        content = request.reply.content
        if not self.record.get("size") and isinstance(content.get("artifact"), dict):
            self.record.update(content["artifact"])
        data = content.get("data")
        size = self.size
        if size is None or self.expected_sha256 is None:
            raise TransferError(f"artifact {self.name!r}: no size or sha256 to check it against")
        if not isinstance(data, memoryview | bytes) or _int(content.get("offset")) != offset:
            raise TransferError(f"artifact {self.name!r}: bad range reply")
        view = memoryview(data)
        if view.nbytes == 0 or offset + view.nbytes > size:
            raise TransferError(f"artifact {self.name!r}: range of {view.nbytes} bytes at {offset} of {size}")
        self._write(view)
        self.received += view.nbytes
        if view.nbytes < self.range_bytes or self._next_offset < self.received:
            # The server sent less than asked (its own range cap): ranges planned after this one
            # start at the wrong place. Ignore their replies; ask again from here.
            self._in_flight.clear()
            self._next_offset = self.received
        if self.received == size:
            self._finish()

    def _backoff(self, error: ProtocolError | None) -> bool:
        """A ``RateLimited`` reply (or, ``error`` None, a range unanswered for
        :data:`UNANSWERED_S`: the server also drops refusals over its budget) is the server pacing a
        busy client, not a failure: forget the ranges in flight and ask again from what was
        received after the wait it names (at least :data:`RATE_LIMIT_MIN_WAIT_S`, doubling while it
        repeats). Gives up (False) after :data:`RATE_LIMIT_RETRIES` in a row."""
        limited = error is None or getattr(error, "remote_ename", None) == "RateLimited"
        if not limited or self._rate_limited >= RATE_LIMIT_RETRIES:
            return False
        details = getattr(error, "details", None)
        wait = details.get("retry_after_s") if isinstance(details, dict) else None
        wait = float(wait) if isinstance(wait, int | float) and 0 <= wait <= 60 else 0.0
        wait = max(wait, RATE_LIMIT_MIN_WAIT_S * 2 ** min(self._rate_limited, 6))
        self._rate_limited += 1
        self._retry_at = time.perf_counter() + wait
        self._in_flight.clear()
        self._next_offset = self.received
        return True

    def _write(self, view: memoryview) -> None:
        self._hash.update(view)
        if self.target is None:
            if len(self._memory) != self.size:  # one allocation, not one per range
                self._memory = bytearray(self.size or 0)
            self._memory[self.received : self.received + view.nbytes] = view
            return
        if self._handle is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self._part = self.target.with_name(f".{self.target.name}.part")
            self._handle = open(self._part, "wb")  # noqa: SIM115 - closed in _finish/_fail
        self._handle.write(view)

    def _finish(self) -> None:
        if self._hash.hexdigest() != self.expected_sha256:
            raise TransferError(f"artifact {self.name!r} does not match its sha256")
        if self.target is not None:
            if self._handle is None:  # an empty artifact
                self.target.parent.mkdir(parents=True, exist_ok=True)
                self._part = self.target.with_name(f".{self.target.name}.part")
                self._handle = open(self._part, "wb")  # noqa: SIM115
            self._handle.close()
            self._handle = None
            assert self._part is not None
            os.replace(self._part, self.target)  # readers never see a partial file
        self._in_flight.clear()
        self._finished = True

    def _fail(self, error: ProtocolError) -> None:
        self.error = error
        self._in_flight.clear()
        for handle in (self._handle, self._cache_handle):
            if handle is not None:
                handle.close()
        self._handle = self._cache_handle = None
        if self._part is not None:
            self._part.unlink(missing_ok=True)


class JobDownload:
    """Every artifact of a finished job into ``out_dir``, a few at a time, stepped by the caller.

    When done: :attr:`files` (name -> path) for every artifact, :attr:`arrays` (name without
    ``.npy`` -> array) for the array artifacts; :attr:`error` names the first failure.
    """

    def __init__(
        self,
        link: RequestSender,
        job_id: str,
        records: list[dict[str, Any]],
        out_dir: Path,
        *,
        range_bytes: int = DEFAULT_RANGE_BYTES,
        parallel: int = 4,
        load_arrays: bool = True,
    ) -> None:
        self.job_id, self.out_dir, self.parallel = job_id, Path(out_dir), parallel
        self.load_arrays = load_arrays
        self.records = [r for r in records if isinstance(r, dict) and isinstance(r.get("name"), str)]
        self.files: dict[str, Path] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.error: ProtocolError | None = None
        self._queue = list(self.records)
        self._active: list[Download] = []
        self._link, self._range_bytes = link, range_bytes
        self.finished_count = 0
        self._finished_bytes = 0
        self._bytes_total = sum(_int(r.get("size")) or 0 for r in self.records)

    @property
    def done(self) -> bool:
        return self.error is not None or (not self._queue and not self._active)

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def fraction(self) -> float:
        total = self.bytes_total
        return self.bytes_done / total if total else float(self.done)

    @property
    def bytes_total(self) -> int:
        return self._bytes_total

    @property
    def bytes_done(self) -> int:
        return self._finished_bytes + sum(d.received for d in self._active)

    def step(self, budget_s: float = 0.005) -> bool:
        """Step the active downloads and start queued ones, for about ``budget_s``; returns done."""
        deadline = time.perf_counter() + budget_s
        try:
            finished = True
            while finished and not self.done and time.perf_counter() < deadline:
                # Refill as downloads end (many small files: several per step, not one round).
                while self._queue and len(self._active) < self.parallel:
                    record = self._queue.pop(0)
                    target = local_path(self.out_dir, record)
                    self._active.append(Download(self._link, self.job_id, record["name"], record=record,
                                                 target=target, range_bytes=self._range_bytes))
                finished = False
                for download in list(self._active):
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    if download.step(remaining):
                        self._active.remove(download)
                        self._take(download)
                        finished = True
        except ProtocolError as exc:
            self.cancel()
            self.error = exc
        return self.done

    def _take(self, download: Download) -> None:
        if download.error is not None:
            raise download.error
        assert download.target is not None
        self.files[download.name] = download.target
        self._finished_bytes += download.size or 0
        if download.is_array and self.load_arrays:
            self.arrays[array_key(download.name)] = load_array_file(download.target)
        self.finished_count += 1

    def cancel(self, reason: str = "cancelled") -> None:
        for download in self._active:
            download.cancel(reason)
        self._active.clear()
        self._queue.clear()
        if self.error is None and reason != "cancelled":
            self.error = TransferError(f"job {self.job_id}: {reason}")

    def written(self) -> list[Path]:
        """The local paths, in the job's artifact order."""
        return [self.files[r["name"]] for r in self.records if r["name"] in self.files]
