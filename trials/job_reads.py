"""Read queries over the jobs: what changed since a pass (the driver's cache), pages and the
best k (the API), the pruner's peers, the retrain, checkpoints, counts for /metrics."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from trials.files import CHECKPOINTS
from trials.jobs import (
    SLIM,
    JobCollection,
    job_id,
)
from trials.records import JobRecord
from trials.states import JobKind, JobState, Outcome

__all__ = ["JobReads"]


class JobReads(JobCollection):
    """Read queries and pages over the jobs."""

    def changed(self, sid: str, since: float | None) -> list[dict[str, Any]]:
        """The slim documents of a study's jobs changed at or after ``since`` (server seconds;
        None: all of them)."""
        q: dict[str, Any] = {"exp_key": sid}
        if since is not None:
            q["updated"] = {"$gte": since}
        return list(self._col.find(q, SLIM))

    def get(self, sid: str, tid: int) -> JobRecord | None:
        return self.by_id(job_id(sid, tid))

    def page(self, sid: str, *, state: JobState | None, kind: str | None, by_score: bool,
             offset: int, limit: int) -> list[JobRecord]:
        """One page of a study's jobs, filtered, sorted and cut by the database."""
        q: dict[str, Any] = {"exp_key": sid}
        if state is not None:
            q["state"] = int(state)
        if kind is not None:
            q["kind"] = kind
        order = ([("score", DESCENDING), ("tid", ASCENDING)] if by_score
                 else [("tid", ASCENDING)])
        return [JobRecord(d) for d in self._col.find(q).sort(order).skip(offset).limit(limit)]

    def best(self, sid: str, k: int) -> list[JobRecord]:
        """The ``k`` finished search trials with the highest validation accuracy."""
        q = {"exp_key": sid, "state": int(JobState.DONE), "kind": JobKind.TRIAL.value}
        docs = self._col.find(q).sort([("score", DESCENDING), ("tid", ASCENDING)]).limit(k)
        return [JobRecord(d) for d in docs]

    def retrain_of(self, sid: str, tid: int | None = None) -> JobRecord | None:
        """The study's retrain job: the chosen one when ``tid`` is known, else the first."""
        if tid is not None:
            return self.get(sid, tid)
        docs = self.page(sid, state=None, kind=JobKind.RETRAIN.value, by_score=False,
                         offset=0, limit=1)
        return docs[0] if docs else None

    def by_id(self, jid: str) -> JobRecord | None:
        doc = self._col.find_one({"_id": jid})
        return None if doc is None else JobRecord(doc)

    def load_checkpoint(self, job: JobRecord) -> bytes | None:
        return self.files.get(CHECKPOINTS, job.checkpoint)

    def by_ids(self, ids: list[str]) -> list[JobRecord]:
        return [JobRecord(d) for d in self._col.find({"_id": {"$in": ids}})] if ids else []

    def full_budget_tids(self, sid: str) -> list[str]:
        """Ids of a study's search trials that ran their whole budget (the pruner's peers)."""
        q = {"exp_key": sid, "kind": JobKind.TRIAL.value, "state": int(JobState.DONE),
             "outcome": Outcome.OK.value}
        return [d["_id"] for d in self._col.find(q, {"_id": 1})]

    def counts_by_state(self) -> dict[int, int]:
        """Jobs of every study by state (for /metrics)."""
        out: dict[int, int] = dict.fromkeys([int(s) for s in JobState], 0)
        for d in self._col.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}]):
            out[int(d["_id"])] = int(d["n"])
        return out

    def promotions_total(self) -> int:
        """ASHA promotions over every study (for /metrics)."""
        docs = list(self._col.aggregate([{"$group": {"_id": None, "n": {"$sum": "$promotions"}}}]))
        return int(docs[0]["n"]) if docs and docs[0].get("n") else 0
