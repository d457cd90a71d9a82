"""The worker's side of the job protocol: reserve a job, heartbeat it, ask whether to stop, save
snapshots, and end it (finish, pause at a rung, fail, infeasible, retry, cancelled, released).

Every write is conditional on ``(_id, state running, attempt)`` (``JobCollection._mine``): a
worker that lost its job can no longer write anything, and its refused files are deleted at once.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument

from trials.files import CHECKPOINTS, SNAPSHOTS
from trials.jobs import (
    RESERVE_ORDER,
    Job,
    JobCollection,
    cancelled_fields,
    end_fields,
    errored_fields,
    finished_fields,
    paused_fields,
    released_fields,
    requeue_update,
    reserve_update,
)
from trials.records import RunReport
from trials.states import JobState, Outcome

__all__ = ["WorkerJobs"]


class WorkerJobs(JobCollection):
    """The worker protocol: what a worker does with the jobs it reserves."""

    def reserve(self, owner: str, *, token: str, sid: str | None = None,
                retried: bool = False) -> Job | None:
        """Atomically move the oldest new job (highest priority first) to running for ``owner``.

        Idempotent per ``token``: a worker whose first try's reply was lost (the database
        stalled) retries with the same token and ``retried=True`` and gets the job that try
        reserved, instead of leaving it running with nobody working on it."""
        if retried:
            doc = self._col.find_one({"reservation": token})
            if doc is not None:
                mine = doc["state"] == JobState.RUNNING and doc.get("owner") == owner
                return Job.from_doc(doc) if mine else None
        query: dict[str, Any] = {"state": int(JobState.NEW)}
        if sid is not None:
            query["exp_key"] = sid
        doc = self._col.find_one_and_update(
            query, reserve_update(owner, self.clock.now(), token, self.heartbeat_interval),
            sort=RESERVE_ORDER, return_document=ReturnDocument.AFTER)
        return Job.from_doc(doc) if doc else None

    def heartbeat(self, job: Job) -> bool:
        """Refresh the job's heartbeat; False when the job is no longer ours."""
        res = self._col.update_one(self._mine(job), {"$inc": {"heartbeat": 1},
                                                     "$set": {"refresh_time": self.clock.now()}})
        return res.matched_count == 1

    def stop_request(self, job: Job) -> str | None:
        """"cancel" when the study asked this job to stop; "lost" when it is not ours anymore."""
        doc = self._col.find_one({"_id": job.id}, {"stop": 1, "state": 1, "attempt": 1})
        if doc is None or doc.get("attempt") != job.attempt or doc.get("state") != JobState.RUNNING:
            return "lost"
        return doc.get("stop")

    def _end(self, job: Job, fields: dict[str, Any]) -> bool:
        """End a running job of ours with ``fields``; its snapshot file is deleted once the
        write is in (a late writer's refused end deletes nothing)."""
        before = self._col.find_one_and_update(
            self._mine(job), {"$set": end_fields(fields, self.clock.now())},
            projection={"snapshot": 1}, return_document=ReturnDocument.BEFORE)
        if before is None:
            return False
        self.files.delete(SNAPSHOTS, before.get("snapshot"))
        return True

    def finish(self, job: Job, result: RunReport, outcome: str,
               checkpoint: bytes | None = None) -> bool:
        """Record a finished training (ok, pruned, diverged, stopped at a rung). With a
        retrain's ``checkpoint`` the file is written first and deleted again if the job turned
        out not to be ours. False when the job was lost."""
        fid = None
        if checkpoint is not None:
            fid = self.files.put(CHECKPOINTS, checkpoint, sid=job.sid, tid=job.tid,
                                 attempt=job.attempt)
        ok = self._end(job, finished_fields(result, outcome, fid))
        if not ok:
            self.files.delete(CHECKPOINTS, fid)
        return ok

    def fail(self, job: Job, reason: str, where: str | None = None) -> bool:
        """End the job as error: ``reason`` is the exception's message (what the study groups
        errors by), ``where`` the last frames it came from."""
        return self._end(job, errored_fields(reason, where))

    def infeasible(self, job: Job, result: RunReport, reason: str,
                   where: str | None = None) -> bool:
        """The model raised for this trial's parameters: done with outcome infeasible and the
        exception's message (never retried; TPE sees it as the worst observation)."""
        return self._end(job, {**finished_fields(result, Outcome.INFEASIBLE.value, None),
                               "error": reason, "error_at": where})

    def retry(self, job: Job, kind: str, reason: str) -> str | None:
        """An infrastructure failure of our running job (the trainer stalled, crashed, ran out
        of memory): requeue it with a retry spent, as the stale sweep does for a lost worker
        (see :func:`requeue_update`). None when the job is no longer ours."""
        doc = self._col.find_one(self._mine(job), {"retries": 1, "previous_owners": 1,
                                                   "stop": 1, "owner": 1})
        if doc is None:
            return None
        update, outcome = requeue_update(doc, kind, reason, self.max_retries, self.clock.now())
        return outcome if self._col.update_one(self._mine(job), update).matched_count else None

    def mark_cancelled(self, job: Job, result: RunReport | None = None) -> bool:
        return self._end(job, cancelled_fields(result))

    def pause(self, job: Job, result: RunReport) -> bool:
        """ASHA: the job reached its rung (``job.limit``). It keeps its snapshot and waits,
        state done with outcome ``paused``, for the driver to promote it. No retry is spent."""
        res = self._col.update_one(self._mine(job),
                                   {"$set": paused_fields(result, self.clock.now())})
        return res.matched_count == 1

    def release(self, job: Job) -> bool:
        """Put a running job back to new (graceful worker stop): not lost, not failed, no retry
        counted; the next worker resumes from its snapshot. A job whose study asked it to stop
        is cancelled instead."""
        now = self.clock.now()
        if self._col.update_one({**self._mine(job), "stop": "cancel"},
                                {"$set": {**cancelled_fields(), "updated": now}}).matched_count:
            return True
        res = self._col.update_one(self._mine(job), {"$set": released_fields(now),
                                                     "$inc": {"releases": 1}})
        return res.matched_count == 1

    def save_snapshot(self, job: Job, data: bytes, epoch: int) -> bool:
        """Write the training state after ``epoch``, then attach it to the job if the job is
        still ours; otherwise delete it again. The replaced snapshot is deleted after the
        attach, so a job always has one whole snapshot or none."""
        fid = self.files.put(SNAPSHOTS, data, sid=job.sid, tid=job.tid,
                             attempt=job.attempt)
        before = self._col.find_one_and_update(
            self._mine(job), {"$set": {"snapshot": fid, "snapshot_epoch": int(epoch)}},
            projection={"snapshot": 1}, return_document=ReturnDocument.BEFORE)
        if before is None:
            self.files.delete(SNAPSHOTS, fid)
            return False
        self.files.delete(SNAPSHOTS, before.get("snapshot"))
        job.snapshot, job.snapshot_epoch = fid, int(epoch)
        return True

    def load_snapshot(self, job: Job) -> bytes | None:
        return self.files.get(SNAPSHOTS, job.snapshot)
