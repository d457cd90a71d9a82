"""The job queue: how a trial is created, reserved, heartbeated, finished, released and requeued.

Job documents keep hyperopt's trial format (``tid, state, spec, result, misc, exp_key, owner,
book_time, refresh_time, version``) so ``tpe.suggest`` and hyperopt's plotting read them, plus
plain-JSON fields a worker needs: ``kind, params, epochs, pruning, priority, retries,
previous_owners, heartbeat`` (a counter), ``attempt`` (one per reservation), ``stop`` (a stop
request), ``snapshot``/``checkpoint`` (GridFS ids), ``outcome`` and ``error``. Each of those is
stored once: ``result`` holds the training's numbers and hyperopt's ``status``/``loss`` only.

``_id`` is ``"<study>:<tid>"``, so a trial is read and written by its primary key. ``updated``
(server clock) changes on every state change, never on a heartbeat, so the study driver reads
only what changed since its last pass (trials/cache.py).

Every write made for a running job is conditional on ``(_id, state running, attempt)``: a worker
that lost its job (requeued after a stall, cancelled, its study deleted) can no longer write
anything, and its refused files are deleted at once (see ``save_snapshot``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Required, TypedDict

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database

from search_spaces.params import Params
from trials.clock import ServerClock
from trials.curves import CurveStore
from trials.files import SNAPSHOTS, FileStore
from trials.records import RunReport
from trials.states import CONFIGURATION_OUTCOMES, FailureClass, JobKind, JobState, Outcome

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.12

__all__ = ["Job", "JobCollection", "JobQueue", "JobSpec", "job_id", "tid_of", "SLIM"]

#: The fields the study driver caches: what TPE, the counts and the summary need.
SLIM = {"tid": 1, "state": 1, "result": 1, "misc": 1, "spec": 1, "exp_key": 1, "owner": 1,
        "book_time": 1, "refresh_time": 1, "version": 1, "kind": 1, "params": 1, "outcome": 1,
        "error": 1, "epochs": 1, "updated": 1, "retries": 1, "limit": 1, "bracket": 1,
        "promotions": 1, "source": 1, "failures": 1, "seed_of": 1}


def job_id(sid: str, tid: int) -> str:
    """A job's ``_id``: ``"<study>:<tid>"``. Built only here, and read back only by ``tid_of``."""
    return f"{sid}:{tid}"


def tid_of(jid: str) -> int:
    """The trial id in a job id made by ``job_id``."""
    return int(jid.rsplit(":", 1)[1])


def cancelled_fields(result: RunReport | None = None) -> dict[str, Any]:
    """The fields that end a job as cancelled (``result`` keeps what it trained, if anything)."""
    return {"state": int(JobState.CANCELLED), "outcome": Outcome.CANCELLED.value,
            "result": {**(result or {}), "status": "fail"}}


def errored_fields(reason: str, where: str | None = None,
                   failure_class: FailureClass = FailureClass.CONFIGURATION) -> dict[str, Any]:
    return {"state": int(JobState.ERROR), "outcome": Outcome.ERROR.value, "error": reason,
            "error_at": where, "result": {"status": "fail"}, "failure_class": failure_class.value}


def requeue_update(doc: dict[str, Any], kind: str, reason: str, max_retries: int, now: float
                   ) -> tuple[dict[str, Any], str]:
    """What an infrastructure failure of the running job ``doc`` writes (``kind``: lost,
    stalled, crashed, oom, cuda, host; trials/states.py): back to new with a retry spent (it resumes from its
    snapshot), cancelled when its study asked it to stop, or error when its retries are spent.
    Returns (the update, "requeued" | "cancelled" | "error")."""
    history = list(doc.get("previous_owners") or []) + [doc.get("owner")]
    retries = int(doc.get("retries", 0))
    count = {"$inc": {f"failures.{kind}": 1}}
    if doc.get("stop") == "cancel":  # its study was cancelled: do not run it again
        fields, outcome = {**cancelled_fields(), "previous_owners": history}, "cancelled"
    elif retries < max_retries:
        fields = {"state": int(JobState.NEW), "owner": None, "book_time": None,
                  "retries": retries + 1, "previous_owners": history,
                  "last_requeue_reason": f"{kind}: {reason}"}
        outcome = "requeued"
    else:
        why = f"retries exhausted ({retries} of {max_retries}): {kind}: {reason}"
        fields = {**errored_fields(why, failure_class=FailureClass.INFRASTRUCTURE),
                  "previous_owners": history}
        outcome = "error"
    return {"$set": {**fields, "updated": now}, **count}, outcome


# -- what each operation writes: shared by JobQueue and the in-memory twin (trials/memory.py), so
# the two differ only in how they find the document, never in what they write.
def reserve_update(owner: str, now: float, token: str, heartbeat_interval: float
                   ) -> dict[str, Any]:
    return {"$set": {"state": int(JobState.RUNNING), "owner": owner, "book_time": now,
                     "refresh_time": now, "updated": now, "heartbeat": 0, "reservation": token,
                     "heartbeat_interval": heartbeat_interval},
            "$inc": {"attempt": 1}}


def end_fields(fields: dict[str, Any], now: float) -> dict[str, Any]:
    """What ends a running job: ``fields``, the snapshot detached, the stamps."""
    return {**fields, "snapshot": None, "snapshot_epoch": 0, "refresh_time": now, "updated": now}


def finished_fields(result: RunReport, outcome: str, checkpoint: Any) -> dict[str, Any]:
    """A finished training. An infeasible one (the parameters made the model raise) has no score
    and TPE's loss 0: no accuracy, the worst there is (trials/states.py)."""
    best = float(result.get("best_val_acc", 0.0))
    infeasible = outcome == Outcome.INFEASIBLE
    fields = {"state": int(JobState.DONE), "outcome": str(outcome), "checkpoint": checkpoint,
              "score": None if infeasible else best,
              "result": {**result, "status": "ok", "loss": 0.0 if infeasible else -best}}
    if outcome in CONFIGURATION_OUTCOMES:
        fields["failure_class"] = FailureClass.CONFIGURATION.value
    return fields


def paused_fields(result: RunReport, now: float) -> dict[str, Any]:
    best = float(result.get("best_val_acc", 0.0))
    return {"state": int(JobState.DONE), "outcome": Outcome.PAUSED.value, "score": best,
            "result": {**result, "status": "ok", "loss": -best}, "refresh_time": now,
            "updated": now}


def promote_update(limit: int, now: float, priority: int) -> dict[str, Any]:
    return {"$set": {"state": int(JobState.NEW), "outcome": None, "limit": int(limit),
                     "owner": None, "book_time": None, "priority": int(priority), "updated": now},
            "$inc": {"promotions": 1}}


def stopped_at_rung_fields(now: float) -> dict[str, Any]:
    return {"outcome": Outcome.STOPPED_AT_RUNG.value, "snapshot": None, "updated": now}


def released_fields(now: float) -> dict[str, Any]:
    return {"state": int(JobState.NEW), "owner": None, "book_time": None, "updated": now}


#: Reservation order: highest priority first (promoted trials, from the highest rung down; then
#: retrains and tests; then new trials), then the oldest, then the lowest tid.
RESERVE_ORDER = [("priority", -1), ("created", 1), ("tid", 1)]
PROMOTED = 2  # + the index of the rung a promoted trial leaves


class JobSpec(TypedDict, total=False):
    """What a new job is asked to do: ``job_fields``' arguments, as the driver builds them."""

    kind: Required[str]
    params: Required[Params]
    epochs: Required[int]
    pruning: dict[str, Any] | None  # {rule: "median", warmup, min_trials}
    priority: int | None
    limit: int | None
    rungs: list[int] | None
    bracket: int | None
    source: str | None
    timeout: float | None
    seed_of: str | None


def job_fields(**spec: Unpack[JobSpec]) -> dict[str, Any]:
    """The plain-JSON fields this project adds to a hyperopt trial document (``timeout``: the
    study's trial_timeout, seconds of training; ``seed_of``: a retrain of the winner with
    another seed, the winner's job id). ``JobSpec`` is the one list of what may be asked."""
    unknown = spec.keys() - JobSpec.__required_keys__ - JobSpec.__optional_keys__
    if unknown:
        raise TypeError(f"job_fields: unknown field(s) {sorted(unknown)}")
    kind, priority = spec["kind"], spec.get("priority")
    if priority is None:
        priority = 0 if kind == JobKind.TRIAL else 1
    return {"kind": str(kind), "params": spec["params"], "epochs": int(spec["epochs"]),
            "pruning": spec.get("pruning"), "priority": priority, "retries": 0,
            "previous_owners": [], "heartbeat": 0, "attempt": 0, "stop": None, "outcome": None,
            "error": None, "snapshot": None, "checkpoint": None, "score": None,
            "limit": spec.get("limit"), "rungs": spec.get("rungs"), "bracket": spec.get("bracket"),
            "promotions": 0, "source": spec.get("source"), "timeout": spec.get("timeout"),
            "seed_of": spec.get("seed_of"), "failures": {}}


def new_job_doc(sid: str, tid: int, **fields: Unpack[JobSpec]) -> dict[str, Any]:
    """A job document for a trial TPE did not suggest (a retrain, a test job)."""
    return {"state": int(JobState.NEW), "tid": tid, "spec": None, "result": {"status": "new"},
            "misc": {"tid": tid, "cmd": ["sru_hpo", str(fields.get("kind"))], "idxs": {},
                     "vals": {}, "workdir": None},
            "exp_key": sid, "owner": None, "version": 0, "book_time": None,
            "refresh_time": None, **job_fields(**fields)}


@dataclass
class Job:
    """What a worker reads from a reserved job: plain data only."""

    id: str
    sid: str
    tid: int
    kind: str
    params: dict[str, Any]
    epochs: int
    owner: str
    attempt: int
    pruning: dict[str, Any] | None = None
    snapshot: Any = None  # GridFS id of the training state to resume from
    snapshot_epoch: int = 0  # the epoch that snapshot ends with
    limit: int | None = None  # ASHA: train up to this rung epoch, then pause
    rungs: list[int] | None = None  # ASHA: the rung epochs whose scores the result records
    source: str | None = None  # a test job: the id of the retrain job whose checkpoint it tests
    timeout: float | None = None  # the study's trial_timeout: seconds of training at most

    @property
    def pauses(self) -> bool:
        return self.limit is not None and self.limit < self.epochs

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Job:
        return cls(id=doc["_id"], sid=doc["exp_key"], tid=int(doc["tid"]),
                   kind=doc.get("kind", "trial"), params=dict(doc.get("params") or {}),
                   epochs=int(doc["epochs"]), owner=doc["owner"], attempt=int(doc["attempt"]),
                   pruning=doc.get("pruning"), snapshot=doc.get("snapshot"),
                   snapshot_epoch=int(doc.get("snapshot_epoch") or 0), limit=doc.get("limit"),
                   rungs=doc.get("rungs"), source=doc.get("source"),
                   timeout=doc.get("timeout"))


class JobCollection:
    """The jobs collection and what every role over it needs. Each role is its own class over
    the same collection, so a caller holds only the operations of its role: ``JobQueue`` (the
    driver's, here), ``WorkerJobs`` (trials/job_protocol.py), ``JobReads``
    (trials/job_reads.py) and ``JobUpkeep`` (trials/job_upkeep.py)."""

    def __init__(self, db: Database, clock: ServerClock, curves: CurveStore, files: FileStore,
                 *, heartbeat_interval: float = 10.0, max_retries: int = 2) -> None:
        self._col = db["jobs"]
        self._counters = db["counters"]
        self.clock, self.curves, self.files = clock, curves, files
        self.heartbeat_interval = heartbeat_interval
        self.max_retries = max_retries

    @staticmethod
    def _mine(job: Job) -> dict[str, Any]:
        return {"_id": job.id, "state": int(JobState.RUNNING), "attempt": job.attempt}


class JobQueue(JobCollection):
    """The study driver's operations: create jobs, promote and stop paused ones, cancel a study."""

    def ensure_indexes(self) -> None:
        self._col.create_index([("exp_key", ASCENDING), ("tid", ASCENDING)], unique=True)
        self._col.create_index([("state", ASCENDING), ("priority", DESCENDING),
                                ("created", ASCENDING)])
        self._col.create_index([("exp_key", ASCENDING), ("updated", ASCENDING)])
        self._col.create_index([("exp_key", ASCENDING), ("state", ASCENDING),
                                ("score", DESCENDING)])
        self._col.create_index([("reservation", ASCENDING)])

    def next_tids(self, sid: str, n: int) -> list[int]:
        """``n`` fresh trial ids for ``sid``, allocated atomically (safe across processes)."""
        doc = self._counters.find_one_and_update(
            {"_id": f"tid:{sid}"}, {"$inc": {"seq": n}}, upsert=True,
            return_document=ReturnDocument.AFTER)
        assert doc is not None  # upsert=True always returns the document
        end = int(doc["seq"])
        return list(range(end - n, end))

    job_fields = staticmethod(job_fields)

    def new_job_doc(self, sid: str, tid: int, **fields: Unpack[JobSpec]) -> dict[str, Any]:
        """A job document for a trial TPE did not suggest (a retrain, a benchmark job)."""
        return new_job_doc(sid, tid, **fields)

    def insert(self, docs: list[dict[str, Any]]) -> None:
        """Insert complete job documents, their empty curves first: a job is reservable the
        moment it is inserted, and a worker that finds no curve to claim must drop the job (it
        was reserved between the two writes and then requeued as stale, a retry spent, before
        this order). A process killed between the two leaves curves with no job, which
        ``Store.collect_orphans`` removes."""
        now = self.clock.now()
        for d in docs:
            d.update(_id=job_id(d["exp_key"], d["tid"]), created=now, updated=now)
        if docs:
            self.curves.create(docs)
            self._col.insert_many(docs)

    def enqueue(self, sid: str, **fields: Unpack[JobSpec]) -> int:
        """Insert one job outside TPE; returns its tid."""
        (tid,) = self.next_tids(sid, 1)
        self.insert([self.new_job_doc(sid, tid, **fields)])
        return tid

    def promote(self, sid: str, tid: int, limit: int, priority: int = PROMOTED) -> bool:
        """Send a paused trial on to ``limit`` (its next rung, or the top): back to the queue
        ahead of new trials (``priority``: higher goes first). Conditional on it still being
        paused where it was."""
        res = self._col.update_one(
            {"_id": job_id(sid, tid), "state": int(JobState.DONE),
             "outcome": Outcome.PAUSED.value},
            promote_update(limit, self.clock.now(), priority))
        return res.matched_count == 1

    def stop_at_rung(self, sid: str, tid: int) -> bool:
        """The search ended with this trial still paused: it ends where it is."""
        before = self._col.find_one_and_update(
            {"_id": job_id(sid, tid), "state": int(JobState.DONE),
             "outcome": Outcome.PAUSED.value},
            {"$set": stopped_at_rung_fields(self.clock.now())},
            projection={"snapshot": 1}, return_document=ReturnDocument.BEFORE)
        if before is None:
            return False
        self.files.delete(SNAPSHOTS, before.get("snapshot"))
        return True

    def cancel_study(self, sid: str) -> tuple[int, int]:
        """Cancel a study's queued jobs now and ask its running ones to stop after their epoch.
        Returns (queued cancelled, running asked to stop).

        Running jobs are flagged first: a worker releasing its job after the flag cancels it
        (see release), and one releasing before it puts it back to new, which the second
        update then cancels. Either way nothing of the study is left to run."""
        now = self.clock.now()
        running = self._col.update_many(
            {"exp_key": sid, "state": int(JobState.RUNNING)},
            {"$set": {"stop": "cancel", "updated": now}}).modified_count
        queued = self._col.update_many(
            {"exp_key": sid, "state": int(JobState.NEW)},
            {"$set": {**cancelled_fields(), "updated": now}}).modified_count
        return queued, running
