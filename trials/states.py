"""Job states (hyperopt's integer codes) and trial outcomes.

A job's ``state`` is hyperopt's: 0 new, 1 running, 2 done, 3 error, 4 cancelled. How a finished
training ended is its ``outcome``. Pruned and diverged trials are state DONE with
``result.status == "ok"`` and ``loss = -best validation accuracy reached`` so that TPE learns
from them (a diverged trial usually scores near chance and teaches TPE to avoid its region);
``result.outcome`` tells them apart from trials that ran their whole budget.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["JobState", "Outcome", "JobKind"]


class JobState(IntEnum):
    NEW = 0
    RUNNING = 1
    DONE = 2
    ERROR = 3
    CANCELLED = 4

    def is_finished(self) -> bool:
        return self in (JobState.DONE, JobState.ERROR, JobState.CANCELLED)

    @property
    def label(self) -> str:
        return self.name.lower()


class Outcome(StrEnum):
    OK = "ok"  # ran its whole epoch budget
    PRUNED = "pruned"  # stopped early by the pruner
    DIVERGED = "diverged"  # NaN/inf or exploding loss
    ERROR = "error"  # an exception in training, or retries exhausted
    CANCELLED = "cancelled"  # its study was cancelled


class JobKind(StrEnum):
    TRIAL = "trial"  # a search trial (trial_epochs)
    RETRAIN = "retrain"  # the final retrain of the best configuration (retrain_epochs)
