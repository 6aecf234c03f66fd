"""torch's intra-op thread count for a block of work, restored after (one home for every pipeline)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work on ``n`` threads inside the block, then restore.

    The per-frame ops of the pipelines touch at most a few hundred thousand elements: splitting
    them across threads gains little, and on a shared, oversubscribed CPU every parallel op waits
    for a descheduled thread (bench/render.py measured 1169 ms/frame with 2 threads vs 43 ms with 1
    at load ~9 on 2 cores). A pipeline owns its process (job worker or CLI), so it may set this.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
