"""Job params that hold arrays or bytes (e.g. reference images sent with ``submit``).

The job table stores params as JSON, and the worker gets them through a pipe. Arrays and raw
bytes in the received params are therefore put in the artifact store once, and replaced in the
stored params by small descriptors naming their content hash; the worker turns the descriptors
back into (memory-mapped, read-only) arrays and bytes. Because the descriptor holds the hash, the
idempotency check (same key + same params) works for params with arrays too.

The descriptor keys are the server's own: a client that puts one in its params (to make the worker
load some stored blob by hash, e.g. another client's upload) is refused with :class:`ParamsError`,
and the worker re-checks every descriptor it reads (a full-string hash match: ``$`` would let a
trailing newline through).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .artifacts import ArtifactStore, Staged

STORED_ARRAY = "__stored_array__"
STORED_BYTES = "__stored_bytes__"
RESERVED_KEYS = frozenset({STORED_ARRAY, STORED_BYTES})
_SHA256 = re.compile(r"[0-9a-f]{64}")  # used with fullmatch only


class ParamsError(ValueError):
    """Params that the server refuses (a reserved key, a malformed stored descriptor)."""


def check_sha256(value: object) -> str:
    """``value`` if it is exactly 64 lowercase hex digits (no trailing newline), else ParamsError."""
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise ParamsError(f"stored descriptor has a malformed sha256 {str(value)[:80]!r}")
    return value


def refuse_reserved_keys(params: Any) -> None:
    """ParamsError when a client's params use a stored-descriptor key anywhere: those descriptors
    are the server's own (one would make the worker load any stored blob by its hash). Checked
    first, before the contract, so the refusal says why whatever the kind."""
    if isinstance(params, dict):
        forged = RESERVED_KEYS.intersection(params)
        if forged:
            raise ParamsError(f"the key {sorted(forged)[0]!r} is reserved for the server's own use")
        for value in params.values():
            refuse_reserved_keys(value)
    elif isinstance(params, list | tuple):
        for value in params:
            refuse_reserved_keys(value)


def externalize(params: Any, store: ArtifactStore, staged: list[Staged] | None = None) -> Any:
    """A JSON-able copy of ``params`` with arrays/bytes stored and replaced by descriptors.

    With ``staged``, the blobs are only staged (temp files, listed there) for the caller to commit
    once the job is recorded, or discard when the submit is refused (see ``backend.server.inputs``).
    """
    if isinstance(params, dict):
        forged = RESERVED_KEYS.intersection(params)
        if forged:
            raise ParamsError(f"the key {sorted(forged)[0]!r} is reserved for the server's own use")
        return {key: externalize(value, store, staged) for key, value in params.items()}
    if isinstance(params, list | tuple):
        return [externalize(value, store, staged) for value in params]
    if isinstance(params, np.ndarray):
        sha256 = _keep(store, staged, params)
        return {STORED_ARRAY: {"sha256": sha256, "dtype": params.dtype.str, "shape": list(params.shape)}}
    if isinstance(params, bytes | bytearray | memoryview):
        data = memoryview(params)
        sha256 = _keep(store, staged, data)
        return {STORED_BYTES: {"sha256": sha256, "size": data.nbytes}}
    return params


def _keep(store: ArtifactStore, staged: list[Staged] | None, value: np.ndarray | memoryview) -> str:
    if staged is None:
        return (store.put_array(value) if isinstance(value, np.ndarray) else store.put_bytes(value))[0]
    blob = store.stage_array(value) if isinstance(value, np.ndarray) else store.stage_bytes(value)
    staged.append(blob)
    return blob.sha256


def internalize(params: Any, store: ArtifactStore) -> Any:
    """Inverse of :func:`externalize` (in the worker): descriptors become arrays and bytes."""
    if isinstance(params, dict):
        if len(params) == 1 and STORED_ARRAY in params:
            return store.load_array(check_sha256(_descriptor(params, STORED_ARRAY).get("sha256")))
        if len(params) == 1 and STORED_BYTES in params:
            return store.read_bytes(check_sha256(_descriptor(params, STORED_BYTES).get("sha256")))
        return {key: internalize(value, store) for key, value in params.items()}
    if isinstance(params, list):
        return [internalize(value, store) for value in params]
    return params


def _descriptor(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = params[key]
    if not isinstance(value, dict):
        raise ParamsError(f"{key} must be an object")
    return value
