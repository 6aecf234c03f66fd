"""Importers as steps, so no timer call of the bridge holds Blender for long.

An importer is a generator: it does one small piece of work (a few milliseconds: one bpy call
on a whole mesh at most, a few vertex groups, one frame of correctives) between ``yield``s and
yields the name of the stage it is in; its ``return`` value is its result. :class:`StepRunner`
runs such a generator until a deadline and keeps the stage for the Jobs panel; :func:`run`
drives one to the end (scripts and tests that may block).

A step that is one bpy call too big to split (e.g. ``normals_split_custom_set_from_vertices``)
is announced by yielding :data:`FRESH_PUMP` first: the runner then stops for this pump if it has
already worked in it, so the big call starts with a whole budget.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")
Steps = Generator[str, None, T]

FRESH_PUMP = "\x00fresh pump"  # yielded before a step that needs a whole pump's budget


def run(steps: Generator[str, None, T]) -> T:
    """Drive ``steps`` to the end and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


class StepRunner:
    """Runs a step generator a little at a time; see the module docstring."""

    def __init__(self, steps: Generator[str, None, Any], stages: tuple[str, ...] = (),
                 gc_clock: Any = None) -> None:
        self._steps = steps
        # Something with ``total_s``: seconds of garbage collection so far (pump_clock.GcClock);
        # a step's CPU cost is given without the collections that ran inside it.
        self._gc_clock = gc_clock
        self.stages = stages  # the stage names in order, for "importing 3/7: vertex groups"
        self.stage = ""
        self.done = False
        self.value: Any = None
        self.steps_run = 0
        self.longest_step_s = 0.0
        self.costs: list[tuple[str, float, float]] = []  # (stage after the step, wall s, CPU s)

    def step(self, deadline: float) -> bool:
        """Run steps until ``deadline`` (``time.perf_counter()``) passes; returns :attr:`done`.
        Exceptions from the importer propagate (the caller reports them)."""
        worked = False
        while not self.done and time.perf_counter() < deadline:
            started, started_cpu, started_gc = time.perf_counter(), time.thread_time(), self._gc_s()
            label = "(end)"
            try:
                label = next(self._steps)
            except StopIteration as stop:
                self.done, self.value = True, stop.value
                break
            finally:
                wall = time.perf_counter() - started
                self.longest_step_s = max(self.longest_step_s, wall)
                cpu = time.thread_time() - started_cpu - (self._gc_s() - started_gc)
                self.costs.append((label, wall, cpu))
            self.steps_run += 1
            if label == FRESH_PUMP:
                if worked:
                    break
                continue
            worked = True
            self.stage = label
        return self.done

    def _gc_s(self) -> float:
        return self._gc_clock.total_s if self._gc_clock is not None else 0.0

    def progress_text(self) -> str:
        """``importing 3/7: vertex groups`` (stage numbers when the importer declared its stages)."""
        base = self.stage.split(" (", 1)[0]
        if base in self.stages:
            return f"importing {self.stages.index(base) + 1}/{len(self.stages)}: {self.stage}"
        return f"importing: {self.stage}" if self.stage else "importing"

    def close(self) -> None:
        """Stop early (cancel): the generator's ``finally``/``GeneratorExit`` handlers clean up."""
        self._steps.close()
        self.done = True
