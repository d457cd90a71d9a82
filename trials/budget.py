"""A study's compute budget: what is spent, what is committed, what a new piece of work may take.

A study may be sized by compute (``budget: {epochs: N}`` or ``{hours: H}``) as well as, or
instead of, by ``n_trials``. Epochs count the training epochs of search trials; hours their
training time (the ``seconds`` a trial reports for the epochs it trained).

- **committed** = the epochs every search trial has trained, with each queued or running trial
  counted at its target (its ``limit``, or ``trial_epochs``): what the study will have spent once
  everything in flight stops. Work is started only while it fits in ``limit - committed``, and a
  trial's target is cut to what is left, so a study never trains past its budget.
- **reserve** (ASHA, Hyperband): the epochs kept back so that the end of the search can take
  its best candidate to the top (``trial_epochs`` minus the highest rung any trial has reached;
  nothing once a trial reached or is headed to the top). New configurations stop when only the
  reserve is left; what is left then goes to promotions, highest rung first.
- **hours** become epochs at the study's own pace: hours × 3600 over the mean seconds per epoch
  of the segments reported so far (no limit before the first report, so the first wave of
  trials always starts).

Pure functions over the driver's cached job documents; the study driver applies them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trials.states import JobState

__all__ = ["Budget", "target", "trained"]

ACTIVE = (JobState.NEW, JobState.RUNNING)


def target(doc: Mapping[str, Any]) -> int:
    """The epoch a queued or running trial trains to."""
    return int(doc.get("limit") or doc["epochs"])


def trained(doc: Mapping[str, Any]) -> int:
    """The epochs a trial has reported training (its last result's ``epochs_run``)."""
    return int((doc.get("result") or {}).get("epochs_run") or 0)


def _seconds_per_epoch(docs: Iterable[Mapping[str, Any]]) -> float | None:
    seconds, epochs = 0.0, 0
    for d in docs:
        r = d.get("result") or {}
        n = int(r.get("epochs_run") or 0) - int(r.get("resumed_from") or 0)
        if n > 0 and r.get("seconds"):
            seconds, epochs = seconds + float(r["seconds"]), epochs + n
    return seconds / epochs if epochs else None


@dataclass(frozen=True)
class Budget:
    limit: float  # epochs the study may train (inf: sized by n_trials only)
    committed: int  # trained + the targets of queued and running trials
    spent: int  # epochs trained so far (reported)
    reserve: int  # kept back for the end of the search (see the module docstring)

    @classmethod
    def of(cls, study: Mapping[str, Any], trials: list[dict[str, Any]], grid: list[int]
           ) -> Budget:
        top = int(study["trial_epochs"])
        committed = spent = 0
        reached, to_top = 0, False
        for d in trials:
            done = trained(d)
            spent += done
            if d["state"] in ACTIVE:
                committed += max(target(d), done)
                to_top = to_top or target(d) >= top
            else:
                committed += done
            scores = (d.get("result") or {}).get("rung_scores") or {}
            reached = max([reached, *(int(e) for e in scores)])
        reserve = 0 if (not grid or to_top or reached >= top) else top - reached
        return cls(cls._limit(study, trials), committed, spent, reserve)

    @staticmethod
    def _limit(study: Mapping[str, Any], trials: list[dict[str, Any]]) -> float:
        budget = study.get("budget") or {}
        if budget.get("epochs") is not None:
            return float(budget["epochs"])
        if budget.get("hours") is not None:
            pace = _seconds_per_epoch(trials)
            return math.inf if pace is None else float(budget["hours"]) * 3600 / pace
        return math.inf

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.limit)

    @property
    def left(self) -> float:
        """Epochs not yet committed."""
        return max(0.0, self.limit - self.committed)

    def for_new(self) -> float:
        """Epochs a new configuration may take (what is left above the reserve)."""
        return max(0.0, self.left - self.reserve)

    def take(self, epochs: int) -> Budget:
        """The budget after committing ``epochs`` more."""
        return Budget(self.limit, self.committed + int(epochs), self.spent, self.reserve)
