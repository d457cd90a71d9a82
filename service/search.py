"""One pass of a study's search phase: promotions, new configurations, the end of the search.

``Search(store, sid, cache).step(study)`` returns True once the search is over. In order:

1. **Promotions** (ASHA, Hyperband): every paused trial now in the top 1/η of its rung goes on,
   highest rung first and ahead of new trials in the queue (trials/scheduling.py), its target
   cut to what the budget has left.
2. **New configurations** while the study may create them: fewer than ``n_trials`` exist and
   the budget pays their first segment above the reserve (trials/budget.py; without rungs a
   whole ``trial_epochs``). The queue is kept at ``parallelism + queue_ahead`` queued or running
   trials, so a worker that finishes finds its next trial waiting; TPE's constant liar makes the
   extra suggestions safe (service/suggest.py).
3. **The end** (nothing more to create, nothing queued or running, nothing promoted): while no
   trial has reached ``trial_epochs``, the best paused trial of each rung is promoted, highest
   rung first; a study that ran out of budget spends what is left so, then stops. So every
   study that completes has a trial trained to the top, and the retrain starts from the best of
   them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from trials.budget import Budget
from trials.cache import TrialCache
from trials.jobs import PROMOTED
from trials.scheduling import best_paused, grid_of, promotions, search_rank
from trials.states import JobKind, JobState, StudyState
from trials.store import Store

if TYPE_CHECKING:
    from service.suggest import Suggester

__all__ = ["Search"]

log = logging.getLogger("sru_hpo.driver")


class Search:
    def __init__(self, store: Store, sid: str, cache: TrialCache) -> None:
        self.store, self.sid, self.cache = store, sid, cache
        self._suggester: Suggester | None = None

    def step(self, study: dict[str, Any]) -> bool:
        grid = grid_of(study)
        trials = self.cache.of_kind(JobKind.TRIAL)
        budget = Budget.of(study, trials, grid)
        todo = promotions(trials, grid, study["trial_epochs"], study["scheduler"]["reduction"],
                          study["seed"]) if grid else []
        promoted, budget = self._promote(grid, budget, todo)
        counts = self.cache.counts()
        created = sum(counts[s.label] for s in JobState)
        active = counts["new"] + counts["running"]
        if self._may_create(study, grid, budget, created):
            room = study["parallelism"] + int(study.get("queue_ahead") or 0) - active
            if room > 0:
                self._suggest(study, created, room, grid, budget)
            return False
        if promoted or active:
            return False
        return not (grid and self._end_round(study, grid, budget, created))

    # -- what may start -------------------------------------------------------------------------------
    @staticmethod
    def _cap(study: dict[str, Any]) -> float:
        n = study.get("n_trials")
        return math.inf if n is None else int(n)

    def _may_create(self, study: dict[str, Any], grid: list[int], budget: Budget,
                    created: int) -> bool:
        """Another configuration may be created: under ``n_trials``, and its first segment fits
        in the budget (one epoch with rungs, cut to fit; a whole trial without)."""
        if created >= self._cap(study):
            return False
        return budget.for_new() >= (1 if grid else int(study["trial_epochs"]))

    # -- promotions -----------------------------------------------------------------------------------
    def _promote(self, grid: list[int], budget: Budget, todo: list[tuple[int, int, int]]
                 ) -> tuple[int, Budget]:
        """Promote ``todo`` ((tid, rung epoch, next limit), highest rung first), each cut to
        what the budget has left; returns how many went and the budget after them."""
        n = 0
        for tid, epoch, nxt in todo:
            limit = min(nxt, epoch + math.floor(budget.left)) if budget.bounded else nxt
            if limit <= epoch:
                break
            if self.store.jobs.promote(self.sid, tid, limit, priority=PROMOTED + grid.index(epoch)):
                n += 1
                budget = budget.take(limit - epoch)
                log.info("study %s: trial %d promoted from epoch %d to %d", self.sid, tid, epoch,
                         limit)
        if n:
            self.cache.refresh()
        return n, budget

    def _end_round(self, study: dict[str, Any], grid: list[int], budget: Budget,
                   created: int) -> bool:
        """The fleet is idle and nothing more will be created: promote the best paused trial
        of each rung while no trial has reached the top (and, when the budget ended the
        search, while budget is left). False when there is nothing left to do."""
        trials = self.cache.of_kind(JobKind.TRIAL)
        top = int(study["trial_epochs"])
        at_top = any(search_rank(d, grid, top)[0] >= top for d in trials
                     if d["state"] == JobState.DONE)
        budget_ended = budget.bounded and created < self._cap(study)
        if at_top and not budget_ended:
            return False
        n, _ = self._promote(grid, budget, best_paused(trials, grid, top, study["seed"]))
        return n > 0

    # -- new configurations ----------------------------------------------------------------------------
    def _suggest(self, study: dict[str, Any], created: int, room: int, grid: list[int],
                 budget: Budget) -> None:
        if self._suggester is None:
            # imported on the first suggestion: hyperopt pulls in SciPy (~2 s of the API's start)
            from service.suggest import Suggester

            self._suggester = Suggester(study, self.cache)
        n = 0
        for i in range(room):
            if not self._may_create(study, grid, budget, created + i):
                break
            # A cancel or delete may land while this pass inserts: look before every insert.
            now = self.store.studies.get(self.sid)
            if now is None or now["state"] != StudyState.RUNNING:
                break
            cap = math.floor(budget.for_new()) if budget.bounded else None
            first = self._suggester.new_trial(created + i, self.store.jobs.job_fields, cap)
            budget = budget.take(first)
            n += 1
        if n:
            log.info("study %s: queued %d trial(s)", self.sid, n)

