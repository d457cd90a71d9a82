"""``MemoryStore``: an in-memory twin of the store's study, job and curve parts, on a clock the
caller moves.

**What it is for.** The replay benchmark (``benchmarks/replay/``) drives the real study driver
(``service/orchestrator/driver.py``), its cache, TPE and the ASHA rules with simulated workers on a virtual
clock. A database round trip per call would make its thousands of simulated trials take hours;
here a call is a dictionary lookup, and time is whatever the simulation says it is.

**What it covers**: every call the study driver, its cache and ``MongoTrials`` make, and a
worker's reserve, curve claim and points, pause, finish, fail and release, the median pruner's
reads, cancel. What each operation *writes* is built by the same functions ``JobQueue`` and
``StudyRepo`` use (``reserve_update``, ``finished_fields``, ``promote_update``, ...,
``new_study_doc``); only how the document is found is written again, and
``tests/trials/test_memory.py`` runs one scenario against this and a real server and compares
every document. Not covered (an AttributeError): GridFS files (snapshots, checkpoints), GPU
leases, the worker registry and the API's pages.

**Rules.** One thread. Job and curve documents handed out are shared and never changed in place
(every write replaces the document, copy on write), so readers must not change them either;
study documents are handed out as copies, as a database would.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from trials.curves import points_of
from trials.interface import DriverStore
from trials.jobs import (
    PROMOTED,
    SLIM,
    Job,
    cancelled_fields,
    end_fields,
    errored_fields,
    finished_fields,
    job_fields,
    job_id,
    new_job_doc,
    paused_fields,
    promote_update,
    released_fields,
    reserve_update,
    stopped_at_rung_fields,
)
from trials.records import JobRecord, Point, RunReport, Study
from trials.states import JobKind, JobState, Outcome, StudyState
from trials.studies import new_study_doc
from trials.summary_doc import Summary

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from trials.jobs import JobSpec

__all__ = ["MemoryStore", "ManualClock", "apply_update"]


class ManualClock:
    """``now()`` is what the caller last ``set`` (seconds; it never goes back)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        if t < self.t:
            raise ValueError(f"the clock does not go back: {t} < {self.t}")
        self.t = float(t)


def apply_update(doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new document: ``doc`` with a MongoDB ``$set`` (top-level keys, or ``a.b`` one level
    down) and ``$inc`` applied."""
    new = dict(doc)
    for key, value in update.get("$set", {}).items():
        head, _, tail = key.partition(".")
        new[head] = {**(new.get(head) or {}), tail: value} if tail else value
    for key, value in update.get("$inc", {}).items():
        new[key] = new.get(key, 0) + value
    return new


class MemoryStudies:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._docs: dict[str, dict[str, Any]] = {}
        self._seq = 0

    def create(self, sid: str, fields: dict[str, Any]) -> Study:
        if sid in self._docs:
            raise KeyError(f"duplicate study id {sid!r}")
        doc = new_study_doc(sid, copy.deepcopy(fields), self.clock.now())
        self._docs[sid] = doc
        return Study.from_doc(doc)

    def get(self, sid: str) -> Study | None:
        doc = self._doc(sid)
        # no copy: from_doc copies what it keeps, and a stored document is replaced, never
        # changed in place (``_set``)
        return None if doc is None else Study.from_doc(doc)

    def _doc(self, sid: str) -> dict[str, Any] | None:
        doc = self._docs.get(sid)
        return None if doc is None or doc["deleted"] else doc

    def exists(self, sid: str) -> bool:
        return self._doc(sid) is not None

    def _set(self, sid: str, fields: dict[str, Any]) -> None:
        self._docs[sid] = {**self._docs[sid], **fields}

    def transition(self, sid: str, frm: Iterable[StudyState], to: StudyState,
                   **fields: Any) -> bool:
        doc = self._doc(sid)
        if doc is None or doc["state"] not in {s.value for s in frm}:
            return False
        self._set(sid, {"state": to.value, **fields})
        return True

    def end(self, sid: str, frm: Iterable[StudyState], to: StudyState, **fields: Any) -> bool:
        return self.transition(sid, frm, to, finished=self.clock.now(), settled=False, **fields)

    def cancel(self, sid: str) -> StudyState | None:
        study = self.get(sid)
        if study is None:
            return None
        state = study.state
        if state.active:
            self.end(sid, [state], StudyState.CANCELLED)
        return state

    def mark_settled(self, sid: str) -> None:
        if sid in self._docs:
            self._set(sid, {"settled": True})

    def lease(self, sid: str, holder: str, seconds: float) -> bool:
        doc, now = self._doc(sid), self.clock.now()
        if doc is None or not (doc["driver"] in (None, holder) or doc["driver_until"] < now):
            return False
        self._set(sid, {"driver": holder, "driver_until": now + seconds})
        return True

    def release_lease(self, sid: str, holder: str) -> None:
        if sid in self._docs and self._docs[sid]["driver"] == holder:
            self._set(sid, {"driver": None})

    def write_summary(self, sid: str, holder: str, summary: Summary, **fields: Any) -> bool:
        doc = self._doc(sid)
        if doc is None or doc["driver"] != holder:
            return False
        self._set(sid, {"summary": summary, **fields})
        return True

    def nudge(self) -> None:
        self._seq += 1

    def wake_seq(self) -> int:
        return self._seq

    def remove(self, sid: str) -> None:
        self._docs.pop(sid, None)


class MemoryCurves:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._docs: dict[str, dict[str, Any]] = {}

    def create(self, jobs: Iterable[dict[str, Any]]) -> None:
        now = self.clock.now()
        for j in jobs:
            self._docs[j["_id"]] = {"_id": j["_id"], "exp_key": j["exp_key"], "tid": j["tid"],
                                    "kind": j["kind"], "attempt": 0, "points": {},
                                    "updated": now}

    def claim(self, job_id: str, attempt: int, points: list[Point]) -> bool:
        doc = self._docs.get(job_id)
        if doc is None or not doc["attempt"] < attempt:
            return False
        self._docs[job_id] = {**doc, "attempt": attempt, "updated": self.clock.now(),
                              "points": {str(int(p["epoch"])): p for p in points}}
        return True

    def add(self, job_id: str, attempt: int, point: Point) -> bool:
        doc = self._docs.get(job_id)
        if doc is None or doc["attempt"] != attempt:
            return False
        self._docs[job_id] = apply_update(doc, {"$set": {f"points.{int(point['epoch'])}": point,
                                                         "updated": self.clock.now()}})
        return True

    def get(self, job_id: str) -> list[Point]:
        return points_of(self._docs.get(job_id))

    def of_jobs(self, job_ids: list[str], up_to_epoch: int | None = None
                ) -> dict[str, list[Point]]:
        return {j: points_of(self._docs[j], up_to_epoch=up_to_epoch)
                for j in job_ids if j in self._docs}

    def purge(self, sid: str) -> None:
        self._docs = {k: d for k, d in self._docs.items() if d["exp_key"] != sid}


class MemoryJobs:
    """The job queue's operations over dictionaries: the same writes as ``JobQueue``."""

    job_fields = staticmethod(job_fields)

    def __init__(self, clock: ManualClock, curves: MemoryCurves, *,
                 heartbeat_interval: float = 10.0, max_retries: int = 2) -> None:
        self.clock, self.curves = clock, curves
        self.heartbeat_interval, self.max_retries = heartbeat_interval, max_retries
        self._docs: dict[str, dict[str, Any]] = {}
        self._slim: dict[str, dict[str, Any]] = {}  # the cached projection of each document
        self._log: dict[str, list[tuple[float, int, str]]] = {}  # per study: (updated, n, _id)
        self._new: set[str] = set()  # reservable ids, so a reserve does not scan the study
        self._full: dict[str, set[str]] = {}  # per study: the median pruner's peers
        self._counters: dict[str, int] = {}
        self._writes = itertools.count()

    # -- storing a document ------------------------------------------------------------------------
    def _put(self, doc: dict[str, Any]) -> None:
        jid, sid = doc["_id"], doc["exp_key"]
        old = self._docs.get(jid)
        self._docs[jid] = doc
        self._slim[jid] = {"_id": jid, **{k: doc[k] for k in SLIM if k in doc}}
        if old is None or old.get("updated") != doc.get("updated"):
            self._log.setdefault(sid, []).append((doc["updated"], next(self._writes), jid))
        (self._new.add if doc["state"] == JobState.NEW else self._new.discard)(jid)
        peers = self._full.setdefault(sid, set())
        full = (doc["kind"] == JobKind.TRIAL.value and doc["state"] == JobState.DONE
                and doc.get("outcome") == Outcome.OK.value)
        (peers.add if full else peers.discard)(jid)

    def _update(self, jid: str, update: dict[str, Any], **where: Any) -> dict[str, Any] | None:
        """Apply ``update`` to ``jid`` if every ``where`` field matches; the document before."""
        before = self._docs.get(jid)
        if before is None or any(before.get(k) != v for k, v in where.items()):
            return None
        self._put(apply_update(before, update))
        return before

    def _mine(self, job: Job, update: dict[str, Any]) -> dict[str, Any] | None:
        return self._update(job.id, update, state=int(JobState.RUNNING), attempt=job.attempt)

    # -- creating jobs ------------------------------------------------------------------------------
    def next_tids(self, sid: str, n: int) -> list[int]:
        key = f"tid:{sid}"
        end = self._counters.get(key, 0) + n
        self._counters[key] = end
        return list(range(end - n, end))

    def new_job_doc(self, sid: str, tid: int, **fields: Unpack[JobSpec]) -> dict[str, Any]:
        return new_job_doc(sid, tid, **fields)

    def insert(self, docs: list[dict[str, Any]]) -> None:
        now = self.clock.now()
        for d in docs:
            d.update(_id=job_id(d["exp_key"], d["tid"]), created=now, updated=now)
            if d["_id"] in self._docs:
                raise KeyError(f"duplicate job id {d['_id']!r}")
        self.curves.create(docs)
        for d in docs:
            self._put(copy.deepcopy(d))

    def enqueue(self, sid: str, **fields: Unpack[JobSpec]) -> int:
        (tid,) = self.next_tids(sid, 1)
        self.insert([self.new_job_doc(sid, tid, **fields)])
        return tid

    # -- a worker's side ----------------------------------------------------------------------------
    def reserve(self, owner: str, *, token: str, sid: str | None = None,
                retried: bool = False) -> Job | None:
        cands = [self._docs[j] for j in self._new
                 if sid is None or self._docs[j]["exp_key"] == sid]
        if not cands:
            return None
        first = min(cands, key=lambda d: (-d["priority"], d["created"], d["tid"]))
        self._put(apply_update(first, reserve_update(owner, self.clock.now(), token,
                                                     self.heartbeat_interval)))
        return Job.from_doc(self._docs[first["_id"]])

    def stop_request(self, job: Job) -> str | None:
        doc = self._docs.get(job.id)
        if doc is None or doc.get("attempt") != job.attempt or doc["state"] != JobState.RUNNING:
            return "lost"
        return doc.get("stop")

    def _end(self, job: Job, fields: dict[str, Any]) -> bool:
        return self._mine(job, {"$set": end_fields(fields, self.clock.now())}) is not None

    def finish(self, job: Job, result: RunReport, outcome: str,
               checkpoint: bytes | None = None) -> bool:
        if checkpoint is not None:
            raise NotImplementedError("the in-memory store keeps no files")
        return self._end(job, finished_fields(result, outcome, None))

    def fail(self, job: Job, reason: str, where: str | None = None) -> bool:
        return self._end(job, errored_fields(reason, where))

    def mark_cancelled(self, job: Job, result: RunReport | None = None) -> bool:
        return self._end(job, cancelled_fields(result))

    def pause(self, job: Job, result: RunReport) -> bool:
        return self._mine(job, {"$set": paused_fields(result, self.clock.now())}) is not None

    def promote(self, sid: str, tid: int, limit: int, priority: int = PROMOTED) -> bool:
        return self._update(job_id(sid, tid), promote_update(limit, self.clock.now(), priority),
                            state=int(JobState.DONE), outcome=Outcome.PAUSED.value) is not None

    def stop_at_rung(self, sid: str, tid: int) -> bool:
        return self._update(job_id(sid, tid), {"$set": stopped_at_rung_fields(self.clock.now())},
                            state=int(JobState.DONE), outcome=Outcome.PAUSED.value) is not None

    def release(self, job: Job) -> bool:
        now = self.clock.now()
        doc = self._docs.get(job.id)
        if doc is not None and doc.get("stop") == "cancel":
            return self._mine(job, {"$set": {**cancelled_fields(), "updated": now}}) is not None
        return self._mine(job, {"$set": released_fields(now), "$inc": {"releases": 1}}) is not None

    # -- the study's side -----------------------------------------------------------------------------
    def cancel_study(self, sid: str) -> tuple[int, int]:
        now, queued, running = self.clock.now(), 0, 0
        for jid in [j for j, d in self._docs.items() if d["exp_key"] == sid]:
            if self._update(jid, {"$set": {"stop": "cancel", "updated": now}},
                            state=int(JobState.RUNNING)):
                running += 1
        for jid in [j for j in self._new if self._docs[j]["exp_key"] == sid]:
            self._update(jid, {"$set": {**cancelled_fields(), "updated": now}})
            queued += 1
        return queued, running

    def changed(self, sid: str, since: float | None) -> list[dict[str, Any]]:
        """The slim documents changed at or after ``since`` (None: all), as ``JobQueue``'s."""
        log = self._log.get(sid, [])
        start = 0 if since is None else bisect.bisect_left(log, (since, -1, ""))
        ids = dict.fromkeys(jid for _, _, jid in log[start:])
        return [self._slim[j] for j in ids if j in self._slim]

    def get(self, sid: str, tid: int) -> JobRecord | None:
        return self.by_id(job_id(sid, tid))

    def by_id(self, jid: str) -> JobRecord | None:
        doc = self._docs.get(jid)  # replaced on every write, never changed in place
        return None if doc is None else JobRecord(doc)

    def full_budget_tids(self, sid: str) -> list[str]:
        return sorted(self._full.get(sid, ()))

    def existing(self, ids: list[str]) -> set[str]:
        return {j for j in ids if j in self._docs}

    def purge(self, sid: str) -> None:
        for jid in [j for j, d in self._docs.items() if d["exp_key"] == sid]:
            del self._docs[jid], self._slim[jid]
            self._new.discard(jid)
        self._log.pop(sid, None)
        self._full.pop(sid, None)
        self._counters.pop(f"tid:{sid}", None)


class MemoryStore:
    """The parts of ``trials.store.Store`` the study driver and a worker's trial use."""

    def __init__(self, clock: ManualClock | None = None, *, heartbeat_interval: float = 10.0,
                 max_retries: int = 2) -> None:
        self.clock = clock or ManualClock()
        self.heartbeat_interval = heartbeat_interval
        self.studies = MemoryStudies(self.clock)
        self.curves = MemoryCurves(self.clock)
        self.jobs = MemoryJobs(self.clock, self.curves, heartbeat_interval=heartbeat_interval,
                               max_retries=max_retries)
        # The store's four job roles (jobs, work, job_reads, upkeep: trials/store.py) are one
        # object here: the twin covers the 20 calls the simulator makes, over one dictionary.
        self.work = self.job_reads = self.upkeep = self.jobs

    def ensure_indexes(self) -> None:
        """Nothing to index in memory."""

    def purge_study(self, sid: str) -> None:
        self.jobs.purge(sid)
        self.curves.purge(sid)

    def delete_study(self, sid: str) -> bool:
        if not self.studies.exists(sid):
            return False
        self.jobs.cancel_study(sid)
        self.purge_study(sid)
        self.studies.remove(sid)
        return True

    def close(self) -> None:
        """Nothing to close."""



if TYPE_CHECKING:  # mypy: the twin satisfies the interface the driver is written against
    _twin: DriverStore = MemoryStore()
