"""Fetch a finished job's artifacts without blocking: a few ``get_artifact`` requests in flight,
each reply written to disk as it arrives during a pump. Arrays are saved as ``.npy`` (and kept in
memory for the importer), files are checked against their sha256 and written atomically."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .wire import artifact_names

MAX_IN_FLIGHT = 4


class DownloadError(RuntimeError):
    pass


def safe_relative(name: str) -> PurePosixPath:
    try:
        return artifact_names.artifact_path(name)  # the protocol's one rule
    except artifact_names.ArtifactNameError as exc:
        raise DownloadError(str(exc)) from None


def array_key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


@dataclass
class DownloadTask:
    job_id: str
    out_dir: Path
    records: list[dict[str, Any]]
    queue: list[dict[str, Any]] = field(default_factory=list)
    in_flight: dict[str, Any] = field(default_factory=dict)  # artifact name -> PendingRequest
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    error: str = ""

    def __post_init__(self) -> None:
        self.queue = [r for r in self.records if isinstance(r.get("name"), str)]

    @property
    def done(self) -> bool:
        return bool(self.error) or (not self.queue and not self.in_flight)

    @property
    def total(self) -> int:
        return len(self.records)

    def step(self, client: Any, get_artifact_type: str) -> None:
        """Collect finished requests and send new ones (never waits)."""
        for name, pending in list(self.in_flight.items()):
            if not pending.done:
                continue
            del self.in_flight[name]
            if pending.error is not None:
                self.error = f"downloading {name}: {pending.error}"
                return
            try:
                self._store(name, pending.reply.content)
            except (DownloadError, OSError) as exc:
                self.error = f"storing {name}: {exc}"
                return
        while self.queue and len(self.in_flight) < MAX_IN_FLIGHT:
            record = self.queue.pop(0)
            name = record["name"]
            cached = self._cached(record)
            if cached:
                continue
            self.in_flight[name] = client.request_nowait(
                get_artifact_type, {"job_id": self.job_id, "name": name}
            )

    def _record(self, name: str) -> dict[str, Any]:
        return next((r for r in self.records if r.get("name") == name), {})

    def _cached(self, record: dict[str, Any]) -> bool:
        """Reuse a file already on disk with the right hash (a re-import after a file reload)."""
        name = record["name"]
        relative = safe_relative(name)
        if record.get("kind") == "array":
            target = self.out_dir / (str(relative) if name.endswith(".npy") else f"{relative}.npy")
            if target.is_file():
                self.arrays[array_key(name)] = np.load(target, allow_pickle=False)
                return True
            return False
        target = self.out_dir / relative
        expected = record.get("sha256")
        if target.is_file() and isinstance(expected, str) and _sha256(target) == expected.lower():
            self.files[name] = target
            return True
        return False

    def _store(self, name: str, content: dict[str, Any]) -> None:
        relative = safe_relative(name)
        array = content.get("array")
        if isinstance(array, np.ndarray):
            target = self.out_dir / (str(relative) if name.endswith(".npy") else f"{relative}.npy")
            target.parent.mkdir(parents=True, exist_ok=True)
            value = np.array(array)  # own the memory: the frame buffer goes away after this pump
            np.save(target, value, allow_pickle=False)
            self.arrays[array_key(name)] = value
            return
        data = content.get("data")
        if not isinstance(data, memoryview | bytes):
            raise DownloadError("the reply holds neither an array nor file bytes")
        expected = self._record(name).get("sha256")
        if isinstance(expected, str) and hashlib.sha256(data).hexdigest() != expected.lower():
            raise DownloadError("content does not match its sha256")
        target = self.out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
        self.files[name] = target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
