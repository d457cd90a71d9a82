"""Maintenance of the jobs: requeue the stale jobs of dead workers (trials/requeue.py decides
staleness), release every running job at a launcher's restart, purge a deleted study's jobs, and
find the jobs orphaned files belong to."""

from __future__ import annotations

from typing import Any

from trials.jobs import (
    JobCollection,
    cancelled_fields,
    released_fields,
    requeue_update,
)
from trials.states import JobState

__all__ = ["JobUpkeep"]


class JobUpkeep(JobCollection):
    """Maintenance of the jobs: requeue, release at a restart, purge, orphans."""

    def running(self, sid: str | None = None) -> list[dict[str, Any]]:
        q: dict[str, Any] = {"state": int(JobState.RUNNING)}
        if sid is not None:
            q["exp_key"] = sid
        fields = {"owner": 1, "heartbeat": 1, "heartbeat_interval": 1, "retries": 1,
                  "previous_owners": 1, "exp_key": 1, "tid": 1, "stop": 1, "attempt": 1}
        return list(self._col.find(q, fields))

    def requeue_stale(self, doc: dict[str, Any], reason: str) -> str | None:
        """Requeue (or, with retries exhausted, fail) the running job ``doc``, only if it is
        still exactly as observed (same attempt and heartbeat count). Returns "requeued",
        "cancelled", "error", or None when something else changed it first (race-safe)."""
        observed = {"_id": doc["_id"], "state": int(JobState.RUNNING), "attempt": doc["attempt"],
                    "heartbeat": doc.get("heartbeat", 0)}
        update, outcome = requeue_update(doc, "lost", reason, self.max_retries, self.clock.now())
        res = self._col.update_one(observed, update)
        return outcome if res.matched_count == 1 else None

    def release_all_running(self) -> int:
        """Put every running job back to new with no retry spent, as a graceful stop would
        (``release``): only for a database no live worker can hold a job in, i.e. the embedded
        one at its launcher's start, after the launcher that ran it was killed. A job its study
        asked to stop is cancelled instead. Returns the jobs released."""
        now = self.clock.now()
        self._col.update_many({"state": int(JobState.RUNNING), "stop": "cancel"},
                              {"$set": {**cancelled_fields(), "updated": now}})
        return self._col.update_many({"state": int(JobState.RUNNING)},
                                     {"$set": released_fields(now), "$inc": {"releases": 1}}
                                     ).modified_count

    def purge(self, sid: str) -> None:
        self._col.delete_many({"exp_key": sid})
        self._counters.delete_one({"_id": f"tid:{sid}"})

    def existing(self, ids: list[str]) -> set[str]:
        """Which of the job ids ``ids`` exist."""
        if not ids:
            return set()
        return {d["_id"] for d in self._col.find({"_id": {"$in": ids}}, {"_id": 1})}

    def snapshot_ids(self, ids: list[str]) -> dict[str, Any]:
        return {d["_id"]: (d.get("snapshot"), d.get("checkpoint"))
                for d in self._col.find({"_id": {"$in": ids}}, {"snapshot": 1, "checkpoint": 1})}
