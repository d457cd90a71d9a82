"""One pass of a study's search phase: promotions, new configurations, the end of the search.

``Search(store, sid, cache).step(study)`` returns True once the search is over. In order:

1. **Promotions** (ASHA, Hyperband): every paused trial now in the top 1/η of its rung goes on,
   highest rung first and ahead of new trials in the queue (trials/scheduling.py), when the
   segment to its next rung fits whole in what the budget has left.
2. **New configurations** while the study may create them: fewer than ``n_trials`` exist and
   the budget fits a first segment with the reserve after it (trials/budget.py
   ``Budget.fits_new``; the first rung with rungs, a whole ``trial_epochs`` without). A
   Hyperband configuration whose bracket's first segment does not fit joins the highest
   bracket whose first rung does. The queue is kept at ``parallelism + queue_ahead``
   queued or running trials, so a worker that finishes finds its next trial waiting; TPE's
   constant liar makes the extra suggestions safe (service/orchestrator/suggest.py).
3. **The end** (nothing more to create, nothing queued or running, nothing promoted): while no
   trial has reached ``trial_epochs``, the best paused trial of each rung is promoted, highest
   rung first, each cut to what the budget has left; a study that ran out of budget spends
   what is left so, then stops. With a budget of ten ``trial_epochs`` or more every study that
   completes has a trial trained to the top; below a few, promotions may have spent the reserve
   and the best trial ends where the budget did (trials/budget.py). The retrain starts from
   the best of them either way (the highest rung reached first).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from trials.budget import Budget
from trials.cache import TrialCache
from trials.interface import DriverStore
from trials.jobs import PROMOTED
from trials.records import Study
from trials.scheduling import best_paused, promotions, search_rank
from trials.states import JobKind, JobState, StudyState

if TYPE_CHECKING:
    from service.orchestrator.suggest import Suggester

__all__ = ["Search"]

log = logging.getLogger("sru_hpo.driver")


class Search:
    def __init__(self, store: DriverStore, sid: str, cache: TrialCache) -> None:
        self.store, self.sid, self.cache = store, sid, cache
        self._suggester: Suggester | None = None

    def step(self, study: Study) -> bool:
        grid = study.grid
        trials = self.cache.of_kind(JobKind.TRIAL)
        budget = Budget.of(study, trials, grid)
        todo = promotions(trials, grid, study.trial_epochs, study.scheduler.reduction,
                          study.seed) if grid else []
        promoted, budget = self._promote(grid, budget, todo)
        counts = self.cache.counts()
        created = sum(counts[s.label] for s in JobState)
        active = counts["new"] + counts["running"]
        if self._may_create(study, grid, budget, created):
            room = study.parallelism + study.queue_ahead - active
            if room > 0:
                self._suggest(study, created, room, grid, budget)
            return False
        if promoted or active:
            return False
        return not (grid and self._end_round(study, grid, budget, created))

    # -- what may start -------------------------------------------------------------------------------
    @staticmethod
    def _cap(study: Study) -> float:
        return math.inf if study.n_trials is None else study.n_trials

    def _may_create(self, study: Study, grid: list[int], budget: Budget,
                    created: int) -> bool:
        """Another configuration may be created: under ``n_trials``, and a first segment fits
        in the budget (the first rung with rungs; a whole trial without)."""
        if created >= self._cap(study):
            return False
        return budget.fits_new(grid[0] if grid else study.trial_epochs)

    # -- promotions -----------------------------------------------------------------------------------
    def _promote(self, grid: list[int], budget: Budget, todo: list[tuple[int, int, int]],
                 cut: bool = False) -> tuple[int, Budget]:
        """Promote ``todo`` ((tid, rung epoch, next limit), highest rung first) whose segment
        fits whole in what the budget has left; with ``cut`` (the end of the search) cut each
        to what is left instead. Returns how many went and the budget after them."""
        n = 0
        for tid, epoch, nxt in todo:
            if cut and budget.bounded:
                nxt = min(nxt, epoch + math.floor(budget.left))
                if nxt <= epoch:
                    break
            elif not budget.fits(epoch, nxt):
                continue  # a cheaper one below may still fit
            if self.store.jobs.promote(self.sid, tid, nxt, priority=PROMOTED + grid.index(epoch)):
                n += 1
                budget = budget.take(epoch, nxt)
                log.info("study %s: trial %d promoted from epoch %d to %d", self.sid, tid, epoch,
                         nxt)
        if n:
            self.cache.refresh()
        return n, budget

    def _end_round(self, study: Study, grid: list[int], budget: Budget,
                   created: int) -> bool:
        """The fleet is idle and nothing more will be created: promote the best paused trial
        of each rung while no trial has reached the top (and, when the budget ended the
        search, while budget is left). False when there is nothing left to do."""
        trials = self.cache.of_kind(JobKind.TRIAL)
        top = study.trial_epochs
        at_top = any(search_rank(t, grid, top)[0] >= top for t in trials
                     if t.state == JobState.DONE)
        budget_ended = budget.bounded and created < self._cap(study)
        if at_top and not budget_ended:
            return False
        n, _ = self._promote(grid, budget, best_paused(trials, grid, top, study.seed), cut=True)
        return n > 0

    # -- new configurations ----------------------------------------------------------------------------
    def _suggest(self, study: Study, created: int, room: int, grid: list[int],
                 budget: Budget) -> None:
        if self._suggester is None:
            # imported on the first suggestion: hyperopt pulls in SciPy (~2 s of the API's start)
            from service.orchestrator.suggest import Suggester

            self._suggester = Suggester(study, self.cache)
        n = 0
        for i in range(room):
            if not self._may_create(study, grid, budget, created + i):
                break
            # A cancel or delete may land while this pass inserts: look before every insert.
            now = self.store.studies.get(self.sid)
            if now is None or now.state != StudyState.RUNNING:
                break
            first = self._suggester.new_trial(created + i, self.store.jobs.job_fields,
                                              budget.fits_new)
            budget = budget.take(0, first)
            n += 1
        if n:
            log.info("study %s: queued %d trial(s)", self.sid, n)

