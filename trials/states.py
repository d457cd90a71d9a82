"""Job states (hyperopt's integer codes), trial outcomes, job kinds and study states.

A job's ``state`` is hyperopt's: 0 new, 1 running, 2 done, 3 error, 4 cancelled. How a finished
training ended is its ``outcome``. Pruned, diverged and stopped-at-rung trials are state DONE with
``result.status == "ok"`` and ``loss = -best validation accuracy reached`` so that TPE learns
from them (a diverged trial usually scores near chance and teaches TPE to avoid its region).

**Failure classes** (:class:`FailureClass`). *Infrastructure*: the run was lost through no fault
of its parameters (its worker or host vanished: ``lost``; its trainer made no progress:
``stalled``; the trainer died: ``crashed``; out of memory: ``oom``; a CUDA fault: ``cuda``; an
OSError on the host, such as its dataset files missing: ``host``). The
job is requeued with a retry spent and resumes from its snapshot; counted per kind in the job's
``failures``. *Configuration*: the parameters themselves failed. ``diverged`` (NaN/inf or
exploding loss; TPE sees the best accuracy it reached, usually chance), ``infeasible`` (the model
raised for these parameters; TPE sees loss 0, no accuracy, the worst there is) and ``timeout``
(trained past the study's ``trial_timeout``; TPE sees what it reached). Never retried.

"Finished" has one meaning here: a search trial in a state that counts toward the study's
``n_trials`` (:data:`FINISHED`: done or error). Cancelled jobs are terminal but do not count.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["JobState", "Outcome", "JobKind", "StudyState", "FailureClass", "FINISHED", "TERMINAL",
           "CONFIGURATION_OUTCOMES"]


class JobState(IntEnum):
    NEW = 0
    RUNNING = 1
    DONE = 2
    ERROR = 3
    CANCELLED = 4

    def is_terminal(self) -> bool:
        """No worker will touch the job again."""
        return self in TERMINAL

    def is_finished(self) -> bool:
        """Counts toward the study's ``n_trials``."""
        return self in FINISHED

    @property
    def label(self) -> str:
        return self.name.lower()


FINISHED = frozenset({JobState.DONE, JobState.ERROR})
TERMINAL = frozenset({JobState.DONE, JobState.ERROR, JobState.CANCELLED})


class Outcome(StrEnum):
    OK = "ok"  # ran its whole epoch budget
    PRUNED = "pruned"  # stopped early by the median rule
    PAUSED = "paused"  # ASHA: waiting at a rung to be promoted (state done for now)
    STOPPED_AT_RUNG = "stopped_at_rung"  # ASHA: paused at a rung and never promoted
    DIVERGED = "diverged"  # NaN/inf or exploding loss
    INFEASIBLE = "infeasible"  # the model raised for these parameters (never retried)
    TIMEOUT = "timeout"  # trained past the study's trial_timeout
    ERROR = "error"  # an exception in training, or retries exhausted
    CANCELLED = "cancelled"  # its study was cancelled


class FailureClass(StrEnum):
    INFRASTRUCTURE = "infrastructure"  # retried from the snapshot
    CONFIGURATION = "configuration"  # the parameters failed: never retried


#: Outcomes that are configuration failures (state done: TPE learns from them).
CONFIGURATION_OUTCOMES = frozenset({Outcome.DIVERGED, Outcome.INFEASIBLE, Outcome.TIMEOUT})


class JobKind(StrEnum):
    TRIAL = "trial"  # a search trial (trial_epochs)
    RETRAIN = "retrain"  # a final retrain of one of the best configurations (retrain_epochs)
    TEST = "test"  # the one test-set evaluation of the chosen retrain's checkpoint


class StudyState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # searching
    RETRAINING = "retraining"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (StudyState.QUEUED, StudyState.RUNNING, StudyState.RETRAINING)

    @classmethod
    def actives(cls) -> list[str]:
        return [s.value for s in cls if s.active]

