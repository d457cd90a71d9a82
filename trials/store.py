"""The job queue on MongoDB: how a trial is created, reserved, heartbeated, finished and requeued.

Collections (one database, ``SRU_HPO_DB_NAME``):

- ``jobs``: hyperopt trial documents (``tid, state, spec, result, misc, exp_key, owner,
  book_time, refresh_time, version``) plus plain-JSON fields a worker needs: ``study``, ``kind``,
  ``params``, ``epochs``, ``pruning``, ``priority``, ``retries``, ``previous_owners``,
  ``heartbeat`` (a counter), ``stop`` (a stop request: "cancel"), ``outcome``, ``error``.
- ``curves``: one document per (exp_key, tid, epoch); unique index, re-sent epochs replace.
- ``counters``: atomic trial-id allocation per exp_key.
- ``workers``: live workers (host, pid, device, current job, last_seen).
- GridFS bucket ``checkpoints``: retrained weights (torch.save, loaded with weights_only=True).
- GridFS bucket ``snapshots``: the training state of running trials, for resume after a requeue.

Every write that changes a running job is conditional on ``owner`` (and state), so a worker that
lost its job (requeued after it stalled, or cancelled) can no longer write its result over
someone else's. Times are float UNIX seconds: nx-27017 stores datetimes as strings, and numbers
compare the same on both servers.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import gridfs
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from trials.states import JobKind, JobState, Outcome

__all__ = ["Job", "JobStore", "make_owner"]


def make_owner(device: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{device}"


def _cancelled(result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields that end a job as cancelled (``result`` keeps what it trained, if anything)."""
    return {"state": int(JobState.CANCELLED), "outcome": Outcome.CANCELLED.value,
            "result": {**(result or {}), "status": "fail", "outcome": "cancelled"}}


def _errored(reason: str) -> dict[str, Any]:
    """The fields that end a job as error with ``reason``."""
    return {"state": int(JobState.ERROR), "outcome": Outcome.ERROR.value, "error": reason,
            "result": {"status": "fail", "error": reason}}


@dataclass
class Job:
    """What a worker reads from a reserved job: plain data only."""

    id: ObjectId
    exp_key: str
    tid: int
    kind: str
    params: dict[str, Any]
    epochs: int
    owner: str
    pruning: dict[str, Any] | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Job:
        return cls(
            id=doc["_id"], exp_key=doc["exp_key"], tid=int(doc["tid"]), kind=doc.get("kind", "trial"),
            params=dict(doc.get("params") or {}), epochs=int(doc["epochs"]), owner=doc["owner"],
            pruning=doc.get("pruning"),
        )


class JobStore:
    """Queue operations over the ``jobs``, ``curves``, ``counters`` and ``workers`` collections."""

    def __init__(self, db: Database, *, heartbeat_interval: float = 10.0, max_retries: int = 2):
        self.db = db
        self.jobs = db["jobs"]
        self.curves = db["curves"]
        self.counters = db["counters"]
        self.workers = db["workers"]
        self.heartbeat_interval = heartbeat_interval
        self.max_retries = max_retries

    # -- set-up ---------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        """Create the indexes (idempotent; run once by whoever starts first)."""
        self.jobs.create_index([("exp_key", ASCENDING), ("tid", ASCENDING)], unique=True)
        self.jobs.create_index([("state", ASCENDING), ("priority", DESCENDING)])
        self.curves.create_index(
            [("exp_key", ASCENDING), ("tid", ASCENDING), ("epoch", ASCENDING)], unique=True
        )

    # -- creating jobs --------------------------------------------------------------------
    def next_tids(self, exp_key: str, n: int) -> list[int]:
        """``n`` fresh trial ids for ``exp_key``, allocated atomically (safe across processes)."""
        doc = self.counters.find_one_and_update(
            {"_id": f"tid:{exp_key}"}, {"$inc": {"seq": n}}, upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert=True always returns the document
        end = int(doc["seq"])
        return list(range(end - n, end))

    def job_fields(self, *, kind: str, params: dict, epochs: int,
                   pruning: dict | None = None) -> dict[str, Any]:
        """The plain-JSON fields this project adds to a hyperopt trial document (the study id
        is the document's ``exp_key``)."""
        return {
            "kind": kind, "params": params, "epochs": int(epochs),
            "pruning": pruning, "priority": 1 if kind == JobKind.RETRAIN else 0,
            "retries": 0, "previous_owners": [], "heartbeat": 0, "stop": None,
            "outcome": None, "error": None, "created": time.time(),
        }

    def new_job_doc(self, exp_key: str, tid: int, *, kind: str, params: dict, epochs: int,
                    pruning: dict | None = None) -> dict[str, Any]:
        """A job document for a trial TPE did not suggest (a retrain, a benchmark job)."""
        return {
            "state": int(JobState.NEW), "tid": tid, "spec": None, "result": {"status": "new"},
            "misc": {"tid": tid, "cmd": ["sru_hpo", kind], "idxs": {}, "vals": {}, "workdir": None},
            "exp_key": exp_key, "owner": None, "version": 0, "book_time": None,
            "refresh_time": None,
            **self.job_fields(kind=kind, params=params, epochs=epochs, pruning=pruning),
        }

    def enqueue(self, exp_key: str, *, kind: str, params: dict, epochs: int,
                pruning: dict | None = None) -> int:
        """Insert one job outside TPE; returns its tid."""
        (tid,) = self.next_tids(exp_key, 1)
        self.jobs.insert_one(self.new_job_doc(exp_key, tid, kind=kind, params=params,
                                              epochs=epochs, pruning=pruning))
        return tid

    # -- a worker's side --------------------------------------------------------------------
    def reserve(self, owner: str, *, exp_key: str | None = None) -> Job | None:
        """Atomically move the oldest new job (retrains first) to running, owned by ``owner``."""
        query: dict[str, Any] = {"state": int(JobState.NEW)}
        if exp_key is not None:
            query["exp_key"] = exp_key
        now = time.time()
        doc = self.jobs.find_one_and_update(
            query,
            {"$set": {"state": int(JobState.RUNNING), "owner": owner, "book_time": now,
                      "refresh_time": now, "heartbeat": 0,
                      "heartbeat_interval": self.heartbeat_interval}},
            sort=[("priority", DESCENDING), ("created", ASCENDING), ("tid", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return Job.from_doc(doc) if doc else None

    def _mine(self, job: Job) -> dict[str, Any]:
        return {"_id": job.id, "state": int(JobState.RUNNING), "owner": job.owner}

    def heartbeat(self, job: Job) -> bool:
        """Refresh the job's heartbeat; False when the job is no longer ours."""
        res = self.jobs.update_one(
            self._mine(job), {"$inc": {"heartbeat": 1}, "$set": {"refresh_time": time.time()}}
        )
        return res.matched_count == 1

    def stop_request(self, job: Job) -> str | None:
        """"cancel" when the study asked this job to stop; "lost" when it is not ours anymore."""
        doc = self.jobs.find_one({"_id": job.id}, {"stop": 1, "state": 1, "owner": 1})
        if doc is None or doc.get("owner") != job.owner or doc.get("state") != JobState.RUNNING:
            return "lost"
        return doc.get("stop")

    def finish(self, job: Job, result: dict[str, Any], outcome: str) -> bool:
        """Record a finished training (ok, pruned, diverged). False when the job was lost."""
        loss = -float(result.get("best_val_acc", 0.0))
        res = self.jobs.update_one(self._mine(job), {"$set": {
            "state": int(JobState.DONE), "outcome": outcome, "refresh_time": time.time(),
            "result": {**result, "status": "ok", "loss": loss, "outcome": outcome},
        }})
        return res.matched_count == 1

    def fail(self, job: Job, reason: str) -> bool:
        res = self.jobs.update_one(self._mine(job), {"$set": {
            **_errored(reason), "refresh_time": time.time()}})
        return res.matched_count == 1

    def mark_cancelled(self, job: Job, result: dict[str, Any] | None = None) -> bool:
        res = self.jobs.update_one(self._mine(job), {"$set": {
            **_cancelled(result), "refresh_time": time.time()}})
        return res.matched_count == 1

    def release(self, job: Job) -> bool:
        """Put a running job back to new (graceful worker stop): not lost, not failed, no retry
        counted; the next worker resumes from its last snapshot. A job whose study asked it to
        stop is cancelled instead of requeued."""
        if self.jobs.update_one({**self._mine(job), "stop": "cancel"},
                                {"$set": _cancelled()}).matched_count:
            return True
        res = self.jobs.update_one(self._mine(job), {
            "$set": {"state": int(JobState.NEW), "owner": None, "book_time": None},
            "$inc": {"releases": 1},
        })
        return res.matched_count == 1

    # -- requeue of stale jobs (see trials/requeue.py for who decides staleness) --------------
    def requeue_stale(self, doc: dict[str, Any], reason: str) -> str | None:
        """Requeue (or, with retries exhausted, fail) the running job ``doc`` — only if it is
        still exactly as observed (same owner and heartbeat count). Returns "requeued", "cancelled",
        "error", or None when something else changed it first (idempotent, race-safe)."""
        observed = {"_id": doc["_id"], "state": int(JobState.RUNNING), "owner": doc["owner"],
                    "heartbeat": doc.get("heartbeat", 0)}
        history = list(doc.get("previous_owners") or []) + [doc["owner"]]
        retries = int(doc.get("retries", 0))
        update: dict[str, Any]
        if doc.get("stop") == "cancel":  # its study was cancelled: do not run it again
            update = {**_cancelled(), "previous_owners": history}
            outcome = "cancelled"
        elif retries < self.max_retries:
            update = {"state": int(JobState.NEW), "owner": None, "book_time": None,
                      "retries": retries + 1, "previous_owners": history,
                      "last_requeue_reason": reason}
            outcome = "requeued"
        else:
            why = f"{reason}; retries exhausted ({retries} of {self.max_retries})"
            update = {**_errored(why), "previous_owners": history}
            outcome = "error"
        res = self.jobs.update_one(observed, {"$set": update})
        return outcome if res.matched_count == 1 else None

    # -- the study's side ---------------------------------------------------------------------
    def cancel(self, exp_key: str) -> tuple[int, int]:
        """Cancel a study's queued jobs now and ask its running ones to stop after their epoch.
        Returns (queued cancelled, running asked to stop).

        Running jobs are flagged first: a worker releasing its job after the flag cancels it
        (see release), and one releasing before it puts it back to new, which the second
        update then cancels. Either way nothing of the study is left to run."""
        running = self.jobs.update_many(
            {"exp_key": exp_key, "state": int(JobState.RUNNING)}, {"$set": {"stop": "cancel"}}
        ).modified_count
        queued = self.jobs.update_many(
            {"exp_key": exp_key, "state": int(JobState.NEW)}, {"$set": _cancelled()}
        ).modified_count
        return queued, running

    def count(self, exp_key: str, states: list[JobState] | None = None,
              kind: str | None = None) -> int:
        q: dict[str, Any] = {"exp_key": exp_key}
        if states is not None:
            q["state"] = {"$in": [int(s) for s in states]}
        if kind is not None:
            q["kind"] = kind
        return self.jobs.count_documents(q)

    def trial_counts(self, exp_key: str) -> dict[str, int]:
        """Search trials of a study by state label (new, running, done, error, cancelled) and
        by the outcomes done hides (pruned, diverged): one query."""
        counts = dict.fromkeys([s.label for s in JobState] + ["pruned", "diverged"], 0)
        for d in self.jobs.find({"exp_key": exp_key, "kind": JobKind.TRIAL.value},
                                {"state": 1, "outcome": 1}):
            counts[JobState(d["state"]).label] += 1
            if d.get("outcome") in ("pruned", "diverged"):
                counts[d["outcome"]] += 1
        return counts

    def best_trials(self, exp_key: str, k: int | None = None) -> list[dict[str, Any]]:
        """Finished search trials, best (lowest loss = highest validation accuracy) first."""
        docs = [d for d in self.jobs.find({"exp_key": exp_key, "kind": JobKind.TRIAL.value,
                                           "state": int(JobState.DONE)})
                if (d.get("result") or {}).get("loss") is not None]
        docs.sort(key=lambda d: (d["result"]["loss"], d["tid"]))
        return docs[:k]

    def delete(self, exp_key: str) -> None:
        for d in self.jobs.find({"exp_key": exp_key}, {"tid": 1}):
            self._remove("snapshots", f"{exp_key}:{d['tid']}")
        self.jobs.delete_many({"exp_key": exp_key})
        self.curves.delete_many({"exp_key": exp_key})
        self.counters.delete_one({"_id": f"tid:{exp_key}"})
        self.delete_checkpoint(exp_key)

    # -- curves -------------------------------------------------------------------------------
    def add_curve_point(self, job: Job, point: dict[str, Any]) -> None:
        key = {"exp_key": job.exp_key, "tid": job.tid, "epoch": int(point["epoch"])}
        self.curves.replace_one(key, {**key, "kind": job.kind, **point}, upsert=True)

    def trim_curve(self, job: Job, last_epoch: int) -> None:
        """Drop points past ``last_epoch``: left by an earlier owner of a requeued job."""
        self.curves.delete_many({"exp_key": job.exp_key, "tid": job.tid,
                                 "epoch": {"$gt": last_epoch}})

    def curve(self, exp_key: str, tid: int) -> list[dict[str, Any]]:
        cur = self.curves.find({"exp_key": exp_key, "tid": tid}, {"_id": 0, "exp_key": 0})
        return sorted(cur, key=lambda p: p["epoch"])

    def study_curves(self, exp_key: str, tids: list[int] | None = None,
                     up_to_epoch: int | None = None) -> dict[int, list[dict[str, Any]]]:
        """Curves of a study by tid; only ``tids`` and epochs <= ``up_to_epoch`` when given."""
        q: dict[str, Any] = {"exp_key": exp_key}
        if tids is not None:
            q["tid"] = {"$in": tids}
        if up_to_epoch is not None:
            q["epoch"] = {"$lte": up_to_epoch}
        out: dict[int, list[dict[str, Any]]] = {}
        for p in self.curves.find(q, {"_id": 0, "exp_key": 0}):
            out.setdefault(int(p["tid"]), []).append(p)
        for pts in out.values():
            pts.sort(key=lambda p: p["epoch"])
        return out

    # -- workers ------------------------------------------------------------------------------
    def register_worker(self, owner: str, device: str) -> None:
        host, pid, _ = owner.split(":", 2)
        now = time.time()
        self.workers.replace_one({"_id": owner}, {
            "_id": owner, "host": host, "pid": int(pid), "device": device, "started": now,
            "last_seen": now, "job": None, "jobs_done": 0,
        }, upsert=True)

    def touch_worker(self, owner: str, job: Job | None = None, done: bool = False) -> None:
        update: dict[str, Any] = {"$set": {
            "last_seen": time.time(),
            "job": {"exp_key": job.exp_key, "tid": job.tid, "kind": job.kind} if job else None,
        }}
        if done:
            update["$inc"] = {"jobs_done": 1}
        self.workers.update_one({"_id": owner}, update)

    def unregister_worker(self, owner: str) -> None:
        self.workers.delete_one({"_id": owner})

    def live_workers(self, within: float | None = None) -> list[dict[str, Any]]:
        """Workers seen in the last ``within`` seconds (default 3 heartbeats), by this clock."""
        horizon = time.time() - (within if within is not None else 3 * self.heartbeat_interval)
        return list(self.workers.find({"last_seen": {"$gte": horizon}}))

    # -- files in GridFS: snapshots of running trials (resume) and retrained checkpoints ----------
    def _put(self, bucket: str, name: str, data: bytes) -> None:
        """Store ``data`` as the only file called ``name`` (written first, old copies removed)."""
        fs = gridfs.GridFS(self.db, collection=bucket)
        new_id = fs.put(data, filename=name)
        for f in fs.find({"filename": name}):
            if f._id != new_id:
                fs.delete(f._id)

    def _get(self, bucket: str, name: str) -> bytes | None:
        f = gridfs.GridFS(self.db, collection=bucket).find_one({"filename": name})
        return f.read() if f is not None else None

    def _remove(self, bucket: str, name: str) -> None:
        fs = gridfs.GridFS(self.db, collection=bucket)
        for f in fs.find({"filename": name}):
            fs.delete(f._id)

    def save_snapshot(self, job: Job, data: bytes) -> None:
        self._put("snapshots", f"{job.exp_key}:{job.tid}", data)

    def load_snapshot(self, job: Job) -> bytes | None:
        return self._get("snapshots", f"{job.exp_key}:{job.tid}")

    def delete_snapshot(self, job: Job) -> None:
        self._remove("snapshots", f"{job.exp_key}:{job.tid}")

    def save_checkpoint(self, exp_key: str, data: bytes) -> None:
        self._put("checkpoints", f"{exp_key}.pt", data)

    def load_checkpoint(self, exp_key: str) -> bytes | None:
        return self._get("checkpoints", f"{exp_key}.pt")

    def delete_checkpoint(self, exp_key: str) -> None:
        self._remove("checkpoints", f"{exp_key}.pt")
