"""A submit's arrays and bytes: staged, then kept only if the job is recorded.

``externalize`` writes the blobs of a submit's params under temp names; :class:`StagedInputs`
checks them against the artifact quota, and commits them to their content addresses only when
the block that records the job ends without an exception. A submit refused for any reason
(queue full, quota, idempotency conflict, a value SQLite cannot store, validation...) leaves no
bytes behind, and since a staged blob has no content address yet, neither a job nor the garbage
collector can see it half-way.
"""

from __future__ import annotations

from types import TracebackType

from .artifacts import ArtifactStore, DiskQuotaExceeded, Staged
from .quotas import E_DISK_QUOTA, Refusal


class StagedInputs:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.blobs: list[Staged] = []

    def admit(self) -> None:
        """Refuse (:class:`Refusal`, ``DiskQuotaExceeded``) inputs that would exceed the quota."""
        new: dict[str, int] = {}
        for blob in self.blobs:
            if blob.sha256 not in new and not self.store.exists(blob.sha256):
                new[blob.sha256] = blob.size
        try:
            self.store.check_quota(sum(new.values()), "this submit's arrays and bytes")
        except DiskQuotaExceeded as exc:
            raise Refusal(E_DISK_QUOTA, str(exc)) from None

    def __enter__(self) -> StagedInputs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            for blob in self.blobs:
                self.store.commit(blob)
        else:
            for blob in self.blobs:
                self.store.discard(blob)
        self.blobs.clear()
