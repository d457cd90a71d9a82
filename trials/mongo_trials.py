"""``MongoTrials``: a ``hyperopt.base.Trials`` over a study's jobs, read through its cache.

hyperopt's own MongoTrials calls APIs pymongo 4 removed; this one reads the study driver's
incremental cache (trials/cache.py) and writes new trials through the job queue.
``tpe.suggest``, ``trials.best_trial``, ``trials.losses()`` and ``hyperopt.plotting`` work on
it. Only search trials (kind "trial") are visible; retrain jobs are not search history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hyperopt.base import JOB_STATES, JOB_VALID_STATES, Trials

from trials.cache import TrialCache
from trials.records import JobRecord, hyperopt_doc
from trials.states import JobKind

__all__ = ["MongoTrials"]


class MongoTrials(Trials):
    asynchronous = True

    def __init__(self, cache: TrialCache, refresh: bool = True,
                 view: Callable[[list[JobRecord]], list[dict[str, Any]]] | None = None
                 ) -> None:
        """``view`` gives the documents TPE sees (ASHA: each trial's loss at one rung)."""
        self.cache, self.view = cache, view
        super().__init__(exp_key=cache.sid, refresh=refresh)

    def refresh(self) -> None:
        records = self.cache.of_kind(JobKind.TRIAL)
        docs: list[Any] = ([hyperopt_doc(r) for r in records] if self.view is None
                           else self.view(records))
        self._dynamic_trials = docs
        self._trials = [d for d in docs if d["state"] in JOB_VALID_STATES]
        self._ids.update(d["tid"] for d in docs)

    def new_trial_ids(self, n: int) -> list[int]:
        tids = self.cache.jobs.next_tids(self._exp_key, n)
        self._ids.update(tids)
        return tids

    def _insert_trial_docs(self, docs: list[dict[str, Any]]) -> list[int]:
        self.cache.insert(docs)
        return [d["tid"] for d in docs]

    def count_by_state_unsynced(self, arg: Any) -> int:
        states = [arg] if arg in JOB_STATES else list(arg)
        return sum(1 for r in self.cache.of_kind(JobKind.TRIAL) if r.state in states)

    def delete_all(self) -> None:
        raise NotImplementedError("delete the study instead (DELETE /studies/ID)")
