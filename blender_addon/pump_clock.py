"""How long a pump took: wall time, CPU time, and the part of it Python's cyclic garbage
collector took.

A collection of the oldest generation scans every container object of the process (in a test
process 40+ ms) and runs inside whatever allocation triggers it, so it can land in any pump.
Its length follows the size of the whole process's heap, not the pump's work; so it is measured
apart (through ``gc.callbacks``) and reported beside the pump's own time, never folded into it
unnoticed.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcClock:
    """Total CPU seconds spent in collections since it was installed (process-wide)."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self.longest_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        elif self._started:
            spent = time.process_time() - self._started
            self.total_s += spent
            self.longest_s = max(self.longest_s, spent)
            self._started = 0.0

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class PumpClock:
    """Times each pump; keeps the last and the largest of each measure."""

    def __init__(self) -> None:
        self.gc = GcClock()
        self.last_wall_s = self.max_wall_s = 0.0
        self.last_cpu_s = self.max_cpu_s = 0.0  # process CPU (all threads), collections included
        self.last_gc_s = self.max_gc_s = 0.0  # collections that ran inside a pump
        self.max_work_cpu_s = 0.0  # CPU minus collections: what the pump's own work cost
        self._wall = self._cpu = self._gc = 0.0

    def start(self) -> None:
        self._wall, self._cpu, self._gc = time.perf_counter(), time.process_time(), self.gc.total_s

    def stop(self) -> None:
        self.last_wall_s = time.perf_counter() - self._wall
        self.last_cpu_s = time.process_time() - self._cpu
        self.last_gc_s = self.gc.total_s - self._gc
        self.max_wall_s = max(self.max_wall_s, self.last_wall_s)
        self.max_cpu_s = max(self.max_cpu_s, self.last_cpu_s)
        self.max_gc_s = max(self.max_gc_s, self.last_gc_s)
        self.max_work_cpu_s = max(self.max_work_cpu_s, self.last_cpu_s - self.last_gc_s)
