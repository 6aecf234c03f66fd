"""Peak bytes of the tensors torch allocates inside a block, counted at the dispatcher (any device;
CUDA has ``torch.cuda.max_memory_allocated``, the CPU has nothing like it). Used by the tests and
``bench/generate.py`` to check the cross-frame attention's memory claim.

Every op's outputs are recorded by storage; a storage counts from the op that made it until the
last Python tensor on it is gone. Storages made before the block (inputs, weights) and views of
them are not counted. Kernel-internal scratch buffers are invisible (the CPU flash-attention
kernel's are a few blocks per thread, independent of the batch).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._size: dict[int, int] = {}

    def _drop(self, ptr: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            self.live -= self._size.pop(ptr)
            del self._refs[ptr]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                  if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr in self._refs:
                self._refs[ptr] += 1
            elif ptr in inputs or storage.nbytes() == 0:
                continue  # a view of memory made before the block
            else:
                self._refs[ptr] = 1
                self._size[ptr] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._drop, ptr)
        return out
