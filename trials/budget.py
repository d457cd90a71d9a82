"""A study's compute budget: what is spent, what is committed, what a new piece of work may take.

A study may be sized by compute (``budget: {epochs: N}`` or ``{hours: H}``) as well as, or
instead of, by ``n_trials``. Epochs count the training epochs of search trials; hours their
training time (the ``seconds`` a trial reports for the epochs it trained).

- **committed** = the epochs every search trial has trained, with each queued or running trial
  counted at its target (its ``limit``, or ``trial_epochs``): what the study will have spent once
  everything in flight stops. Work is started only while it fits in ``limit - committed``, so a
  study never trains past its budget.
- **the reserve** (ASHA, Hyperband): ``high`` is the furthest epoch the search has reached with
  a trial that can still go on (a paused trial's rung, a running trial's last report;
  ``trial_epochs`` once a trial finished there or is headed there). The **reserve** =
  ``trial_epochs - high`` is kept back from *new configurations* so that the end of the search
  can take its best candidate to the top. A new configuration's first segment **fits** when its
  epochs plus the reserve *after* it are within what is left: a first segment shrinks the
  reserve by what it trains, so the first configuration of a study whose budget is one
  ``trial_epochs`` starts (before, the reserve of a whole trial blocked it and the study failed).
  Promotions are not held to the reserve: a promotion of a good candidate is worth more than
  keeping epochs for the front-runner (measured on the replay benchmark at 2 R; README "Search
  quality"), so at budgets below a few ``trial_epochs`` the search may end below the top.
- **No segment is cut between rungs** during the search: a first segment or a promotion either
  fits whole or waits (a segment cut between rungs would pause where no rung promotes it). Only
  the end of the search cuts, to spend what is left on the best candidate.
- **hours** become epochs at the study's own pace: hours × 3600 over the mean seconds per epoch
  of the segments reported so far (no limit before the first report, so the first wave of
  trials always starts).

Pure functions over the driver's cached job records; the study driver applies them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from trials.records import JobRecord, Study
from trials.states import JobState

__all__ = ["Budget"]


def _seconds_per_epoch(trials: Iterable[JobRecord]) -> float | None:
    seconds, epochs = 0.0, 0
    for t in trials:
        r = t.result
        n = (r.epochs_run or 0) - r.resumed_from
        if n > 0 and r.seconds:
            seconds, epochs = seconds + r.seconds, epochs + n
    return seconds / epochs if epochs else None


def _front(t: JobRecord, top: int) -> int:
    """How far ``t`` has gone, if it can still go on (the top if it is headed there)."""
    if t.active:
        return top if t.target >= top else t.trained
    if t.paused:
        return t.trained
    return top if t.state == JobState.DONE and t.trained >= top else 0


@dataclass(frozen=True)
class Budget:
    limit: float  # epochs the study may train (inf: sized by n_trials only)
    committed: int  # trained + the targets of queued and running trials
    spent: int  # epochs trained so far (reported)
    high: int = 0  # the furthest epoch a trial that can go on reached (the module docstring)
    top: int = 0  # trial_epochs, when the study has rungs (0: no reserve is kept)

    @classmethod
    def of(cls, study: Study, trials: Sequence[JobRecord], grid: list[int]) -> Budget:
        top = study.trial_epochs
        committed = spent = high = 0
        for t in trials:
            done = t.trained
            spent += done
            committed += max(t.target, done) if t.active else done
            high = max(high, _front(t, top))
        return cls(cls._limit(study, trials), committed, spent, high, top if grid else 0)

    @staticmethod
    def _limit(study: Study, trials: Sequence[JobRecord]) -> float:
        budget = study.budget
        if budget is None:
            return math.inf
        if budget.epochs is not None:
            return float(budget.epochs)
        if budget.hours is not None:
            pace = _seconds_per_epoch(trials)
            return math.inf if pace is None else budget.hours * 3600 / pace
        return math.inf

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.limit)

    @property
    def left(self) -> float:
        """Epochs not yet committed."""
        return max(0.0, self.limit - self.committed)

    def fits_new(self, to: int) -> bool:
        """A new configuration's first segment, to epoch ``to``, fits: its epochs and the
        reserve after it (it may become the furthest trial) are within what is left."""
        if not self.bounded:
            return True
        return to + max(0, self.top - max(self.high, to)) <= self.left

    def fits(self, start: int, to: int) -> bool:
        """A promotion from ``start`` to ``to`` fits whole in what is left."""
        return not self.bounded or to - start <= self.left

    def take(self, start: int, to: int) -> Budget:
        """The budget after committing the segment from ``start`` to ``to`` (a segment that
        goes to the top ends the reserve)."""
        high = self.top if self.top and to >= self.top else self.high
        return replace(self, committed=self.committed + int(to - start), high=high)
