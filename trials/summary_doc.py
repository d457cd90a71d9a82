"""The shape of a study's published summary, as the study document stores it.

The driver computes it (service/orchestrator/summary.py) and writes it under its lease
(trials/studies.py ``write_summary``); the API maps it onto its response model
(service/studies/views.py ``study_public``). These are TypedDicts, not record classes, because
the summary *is* a document: it is stored, compared (a pass writes it only when it changed) and
read back as it is. A summary written by an older version may lack keys (``total=False``):
readers take the default the API documents with ``.get``.
"""

from __future__ import annotations

from typing import TypedDict

from search_spaces.params import Params

__all__ = ["Summary", "BestTrialDoc", "ErrorGroupDoc", "FailureCounts", "RungFidelityDoc",
           "TestStats"]


class BestTrialDoc(TypedDict):
    """The trial the driver ranks first (the API's ``BestTrial``)."""

    tid: int
    best_val_acc: float | None
    best_epoch: int | None
    outcome: str | None
    epochs_run: int | None
    params: Params
    peak_rss_mb: float | None
    peak_gpu_mb: float | None


class ErrorGroupDoc(TypedDict):
    """Failed trials that raised the same message (the API's ``ErrorGroup``)."""

    error: str
    count: int
    tids: list[int]  # the first 10


class FailureCounts(TypedDict):
    """Failures by class (trials/states.py; the API's ``Failures``)."""

    infrastructure: int  # runs lost to the fleet: each retry, and a last one
    configuration: int  # trials whose parameters failed
    by_kind: dict[str, int]  # lost, stalled, crashed, oom, cuda; diverged, infeasible, timeout


class RungFidelityDoc(TypedDict):
    """How well a rung's score ranks trials by their top score (the API's ``RungFidelity``)."""

    epoch: int
    pairs: int
    spearman: float | None  # None below 3 pairs


class TestStats(TypedDict, total=False):
    """The final evaluation's numbers (service/orchestrator/evaluation.py ``stats``)."""

    test_acc: float | None  # the mean over the seeds tested
    test_acc_sd: float | None  # sample sd; None below 2 seeds
    tests: int
    val_acc: float | None  # the mean best validation accuracy of the same runs
    test_drop: float | None  # val_acc - test_acc
    n_params: int | None  # of the retrained winner


class Summary(TestStats, total=False):
    """Counts, the best trial, epochs, the budget, the final evaluation, the anytime curve and
    the rungs' fidelity: what ``GET /studies/ID`` reports without reading a job."""

    counts: dict[str, int]  # trials by state and outcome (trials/states.py count_trials)
    best: BestTrialDoc | None
    error_groups: list[ErrorGroupDoc]
    failures: FailureCounts
    epochs_spent: int
    epochs_saved: int  # against running every configuration to trial_epochs
    epochs_committed: int
    budget_epochs: float | None  # None: no budget
    epochs_left: float | None
    promotions: int
    retrain_state: str
    trial_hours: float
    anytime: list[list[float]]  # [cumulative epochs, best validation accuracy so far]
    rank_correlation: float | None
    fidelity: list[RungFidelityDoc]
    advice: list[str]
