"""HMAC-SHA256 signatures over a message's frames, and the replay guard (docs/protocol.md §2).

The signature covers the four JSON frames *and* every buffer, via a per-buffer digest:

    buffer_digest(b) = SHA-256( b"AVS-BUF-v1" || u64be(len(b)) || SHA-256(chunk_0) || SHA-256(chunk_1) ... )

with chunks of CHUNK_BYTES (the last one shorter; an empty buffer has no chunk). The chunk level
exists so that big buffers hash on several cores at once: hashlib releases the GIL, and the result
does not depend on how many threads computed it. SHA-256 was chosen over blake2b after measuring:
with the SHA extensions (most x86 and ARM CPUs since ~2017) OpenSSL's SHA-256 runs ~1.2 GiB/s per
core on our machine against ~0.8 GiB/s for hashlib's blake2b; non-cryptographic checksums (xxhash,
crc) would be faster but cannot be used under an HMAC.

    signature = hex( HMAC-SHA256(key, b"AVS-SIG-v1" || for f in (header, parent, metadata, content):
                                      u64be(len(f)) || f
                                   || u32be(n_buffers) || for b in buffers: buffer_digest(b)) )

That is the ``digest`` buffer-integrity mode. In ``transport`` mode (protocol/integrity.py: only
where CURVE or loopback protects the bytes) the buffer part is instead

                                   || u32be(n_buffers) || b"AVS-LEN-v1" || for b in buffers: u64be(len(b))

which binds each buffer's index and length (its dtype/shape descriptor is in the signed content)
but not its bytes. Without buffers both modes sign the same bytes, so small messages, the handshake
included, verify whatever the peer's mode. With n >= 1 buffers the two modes sign inputs of different
lengths (32n against 10 + 8n bytes after the common prefix), so a message signed in one mode can never
verify in the other.

Length prefixes make the split between frames unambiguous.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .errors import BufferIntegrityMismatch, ReplayError, SignatureError
from .integrity import DIGEST, TRANSPORT, check_buffer_integrity_mode

CHUNK_BYTES = 1 << 20
SIGNATURE_HEX_LEN = 64
_SIG_DOMAIN = b"AVS-SIG-v1"
_BUF_DOMAIN = b"AVS-BUF-v1"
_LEN_DOMAIN = b"AVS-LEN-v1"
# Below this many bytes in all buffers together, threads cost more than they save.
PARALLEL_MIN_BYTES = 4 << 20

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_threads: int | None = None
HASH_THREADS_ENV = "AVATAR_STUDIO_HASH_THREADS"


def _hash_threads() -> int:
    if _threads is not None:
        return _threads
    env = os.environ.get(HASH_THREADS_ENV, "")
    return int(env) if env.isdigit() and int(env) > 0 else max(1, min(8, os.cpu_count() or 1))


def set_hash_threads(count: int | None) -> None:
    """How many threads hash big buffers (None: ``$AVATAR_STUDIO_HASH_THREADS`` or min(8, CPUs)).
    The digest is the same whatever the count; only the speed changes."""
    global _pool, _threads
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = count


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_hash_threads(), thread_name_prefix="avs-hash")
        return _pool


def _sha256(view: memoryview) -> bytes:
    return hashlib.sha256(view).digest()


def buffer_digests(buffers: Sequence[memoryview]) -> list[bytes]:
    """The per-buffer digests defined above, chunks hashed in parallel for big messages."""
    views = [memoryview(b).cast("B") if memoryview(b).format != "B" or memoryview(b).ndim != 1
             else memoryview(b) for b in buffers]
    chunks: list[list[memoryview]] = [
        [v[i:i + CHUNK_BYTES] for i in range(0, v.nbytes, CHUNK_BYTES)] for v in views
    ]
    total = sum(v.nbytes for v in views)
    flat = [c for per_buffer in chunks for c in per_buffer]
    if total >= PARALLEL_MIN_BYTES and _hash_threads() > 1 and len(flat) > 1:
        chunk_digests = list(_executor().map(_sha256, flat))
    else:
        chunk_digests = [_sha256(c) for c in flat]
    out: list[bytes] = []
    position = 0
    for view, per_buffer in zip(views, chunks, strict=True):
        h = hashlib.sha256(_BUF_DOMAIN)
        h.update(struct.pack(">Q", view.nbytes))
        for digest in chunk_digests[position:position + len(per_buffer)]:
            h.update(digest)
        position += len(per_buffer)
        out.append(h.digest())
    return out


class Signer:
    """Computes and checks signatures with one shared key, in one buffer-integrity mode."""

    def __init__(self, key: bytes, buffer_integrity: str = DIGEST) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ValueError("the signing key must be at least 16 bytes")
        self.buffer_integrity = check_buffer_integrity_mode(buffer_integrity)
        # Keyed once; copy() per message skips re-deriving the HMAC pads (matters for small messages).
        self._base = hmac.new(key, _SIG_DOMAIN, hashlib.sha256)

    def sign(self, parts: Sequence[bytes], buffers: Sequence[memoryview],
             buffer_integrity: str | None = None) -> bytes:
        """``parts`` = the four JSON frames; returns the 64 lowercase hex digits as bytes.
        ``buffer_integrity`` overrides this signer's mode (used only to explain a mismatch)."""
        mac = self._base.copy()
        pieces: list[bytes] = []
        for part in parts:
            pieces += (len(part).to_bytes(8, "big"), part)
        pieces.append(len(buffers).to_bytes(4, "big"))
        if buffers:
            if (buffer_integrity or self.buffer_integrity) == TRANSPORT:
                pieces.append(_LEN_DOMAIN)
                pieces += (memoryview(b).nbytes.to_bytes(8, "big") for b in buffers)
            else:
                pieces += buffer_digests(buffers)
        mac.update(b"".join(pieces))  # one call: small messages are dominated by per-call overhead
        return mac.hexdigest().encode("ascii")

    def verify(self, signature: bytes, parts: Sequence[bytes], buffers: Sequence[memoryview]) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is right (constant-time compare).

        A message with buffers that fails is checked once more under the other mode, only to say
        :class:`BufferIntegrityMismatch` instead of a bare SignatureError: it is refused either way.
        That costs a digest of the buffers when this side is in ``transport`` mode, but only for a
        message that is already being rejected.
        """
        if len(signature) != SIGNATURE_HEX_LEN:
            raise SignatureError("missing or malformed signature")
        if hmac.compare_digest(signature, self.sign(parts, buffers)):
            return
        if buffers:
            other = DIGEST if self.buffer_integrity == TRANSPORT else TRANSPORT
            if hmac.compare_digest(signature, self.sign(parts, buffers, other)):
                raise BufferIntegrityMismatch(self.buffer_integrity, other,
                                              "a message with buffers was signed in the other mode")
        raise SignatureError("invalid signature (wrong key or tampered message)")


class ReplayGuard:
    """Rejects a signature seen before; bounded in memory and sound after eviction.

    A message is accepted only if (a) its header ``date`` lies within ``window_s`` of our clock
    (both directions: tolerates that much clock skew between hosts) and (b) its signature is not in
    the set of signatures accepted within the window. The set holds at most ``max_entries``; when
    full the oldest entry is evicted and ``floor`` is raised to its date, so anything dated at or
    before an evicted entry is refused: a replay can never slip through because of eviction.

    The memory lives in this process only. ``not_before`` (a POSIX time) closes the gap a restart
    would open: a message dated earlier is refused whatever the memory says, so a server passes
    its start time (minus a small clock-skew allowance) and nothing signed for its previous life
    is accepted again (docs/protocol.md §2, "Replay window").
    """

    def __init__(self, window_s: float = 300.0, max_entries: int = 100_000,
                 not_before: float | None = None) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.not_before = float("-inf") if not_before is None else not_before
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._floor = float("-inf")
        self._lock = threading.Lock()

    def check_and_record(self, signature: bytes, sent_at: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            if sent_at < now - self.window_s or sent_at > now + self.window_s:
                raise ReplayError(
                    f"message dated {sent_at - now:+.0f} s from now, outside the +-{self.window_s:.0f} s "
                    "replay window (replayed message, or clocks out of sync)"
                )
            if sent_at < self.not_before:
                raise ReplayError(
                    f"message dated {self.not_before - sent_at:.1f} s before this receiver started "
                    "(replayed from an earlier run, or this host's clock is behind)"
                )
            if sent_at <= self._floor:
                raise ReplayError("message older than the replay guard's memory")
            if signature in self._seen:
                raise ReplayError("replayed message (signature already seen)")
            self._expire(now)
            self._seen[signature] = sent_at
            while len(self._seen) > self.max_entries:
                _, evicted_date = self._seen.popitem(last=False)
                self._floor = max(self._floor, evicted_date)

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._seen:
            oldest_sig, oldest_date = next(iter(self._seen.items()))
            if oldest_date >= cutoff:
                break
            del self._seen[oldest_sig]

    def __len__(self) -> int:
        return len(self._seen)
