"""Progress reporting shared by the stages: a callback that may raise to cancel."""

from __future__ import annotations

from collections.abc import Callable

# report(stage, fraction_of_stage_in_[0,1], message). Raising inside it (e.g. JobCancelled) aborts
# the stage at the next step: stages call it every iteration, so cancelling is prompt.
ProgressFn = Callable[[str, float, str], None]


def no_progress(stage: str, fraction: float, message: str) -> None:
    """The default: report nothing."""
