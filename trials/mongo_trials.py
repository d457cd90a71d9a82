"""``MongoTrials``: a ``hyperopt.base.Trials`` whose documents live in the ``jobs`` collection.

hyperopt's own MongoTrials calls APIs pymongo 4 removed; this one uses only pymongo 4 calls and
reads/writes through :class:`trials.store.JobStore`. ``tpe.suggest``, ``trials.best_trial``,
``trials.losses()`` and ``hyperopt.plotting`` work on it. Only search trials (kind "trial") of
one study are visible; the retrain job is not part of the search history.
"""

from __future__ import annotations

from typing import Any

from hyperopt.base import JOB_STATES, JOB_VALID_STATES, Trials

from trials.states import JobKind
from trials.store import JobStore

__all__ = ["MongoTrials"]


class MongoTrials(Trials):
    asynchronous = True

    def __init__(self, store: JobStore, exp_key: str, refresh: bool = True) -> None:
        self.store = store
        super().__init__(exp_key=exp_key, refresh=refresh)

    def _query(self) -> dict[str, Any]:
        return {"exp_key": self._exp_key, "kind": JobKind.TRIAL.value}

    def refresh(self) -> None:
        docs = list(self.store.jobs.find(self._query()))
        docs.sort(key=lambda d: d["tid"])
        self._dynamic_trials = docs
        self._trials = [d for d in docs if d["state"] in JOB_VALID_STATES]
        self._ids.update(d["tid"] for d in docs)

    def new_trial_ids(self, n: int) -> list[int]:
        tids = self.store.next_tids(self._exp_key, n)
        self._ids.update(tids)
        return tids

    def _insert_trial_docs(self, docs: list[dict[str, Any]]) -> list[int]:
        if docs:
            self.store.jobs.insert_many(docs)
        return [d["tid"] for d in docs]

    def count_by_state_unsynced(self, arg: Any) -> int:
        states = [arg] if arg in JOB_STATES else list(arg)
        return self.store.jobs.count_documents({**self._query(), "state": {"$in": states}})

    def delete_all(self) -> None:
        self.store.jobs.delete_many(self._query())
        self.refresh()
