"""The job queue on a real server: ids, reservation, heartbeats, requeue, fenced writes."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from pymongo import MongoClient

from trials.jobs import Job
from trials.records import JobRecord
from trials.requeue import StaleJobSweeper
from trials.states import JobState
from trials.store import Store


def enqueue(store: Store, sid: str = "s", kind: str = "trial", **fields) -> int:
    return store.jobs.enqueue(sid, kind=kind, **{"params": {}, "epochs": 1, **fields})


def reserve(store: Store, owner: str = "h:1:cpu", **kw) -> Job | None:
    import uuid

    return store.work.reserve(owner, token=uuid.uuid4().hex, **kw)


def doc(db, sid: str, tid: int) -> dict:
    return db.jobs.find_one({"_id": f"{sid}:{tid}"})


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_tids_are_allocated_atomically_and_per_study(store):
    assert store.jobs.next_tids("a", 3) == [0, 1, 2]
    assert store.jobs.next_tids("a", 2) == [3, 4]
    assert store.jobs.next_tids("b", 1) == [0]


def _reserve_all(url: str, db_name: str, q) -> None:
    s = Store(MongoClient(url)[db_name])
    got = []
    while (job := reserve(s, f"h:{mp.current_process().pid}:cpu")) is not None:
        got.append(job.tid)
    q.put(got)


@pytest.mark.slow
def test_four_processes_reserve_each_job_exactly_once(store, db, mongo_url, db_name):
    """Exclusivity proved by counting: every job reserved once, none twice, whoever got them
    (the first process may drain the queue before the others start; that is fine)."""
    for _ in range(200):
        enqueue(store, "race")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_reserve_all, args=(mongo_url, db_name, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    everything = [t for r in results for t in r]
    assert sorted(everything) == list(range(200))  # each once, none twice
    assert db.jobs.count_documents({"exp_key": "race", "state": int(JobState.RUNNING)}) == 200


def test_reserve_takes_retrain_first_then_oldest(store):
    enqueue(store, params={"x": 1})
    enqueue(store, params={"x": 2})
    enqueue(store, kind="retrain", params={"x": 9})
    jobs = [reserve(store) for _ in range(3)]
    assert [j.kind for j in jobs] == ["retrain", "trial", "trial"]
    assert [j.params["x"] for j in jobs] == [9, 1, 2]
    assert reserve(store) is None


def test_a_retried_reserve_gets_its_own_job_back(store, db):
    """A reserve whose reply was lost: the retry with the same token returns that job, no
    ghost is left running and no retry is spent."""
    enqueue(store)
    enqueue(store)
    first = store.work.reserve("h:1:cpu", token="tok")  # the reply that "got lost"
    again = store.work.reserve("h:1:cpu", token="tok", retried=True)
    assert again is not None and again.id == first.id and again.attempt == first.attempt
    assert db.jobs.count_documents({"state": int(JobState.RUNNING)}) == 1
    assert doc(db, "s", first.tid)["retries"] == 0
    # a fresh token reserves the next job as usual
    assert store.work.reserve("h:1:cpu", token="other", retried=True).tid != first.tid


def test_only_the_current_attempt_can_write(store, db):
    enqueue(store)
    job = reserve(store)
    old = Job(**{**job.__dict__, "attempt": job.attempt - 1})
    assert not store.work.finish(old, {"best_val_acc": 0.9}, "ok")
    assert not store.work.heartbeat(old)
    assert store.work.stop_request(old) == "lost"
    assert store.work.heartbeat(job)
    assert store.work.finish(job, {"best_val_acc": 0.5}, "ok")
    d = doc(db, "s", job.tid)
    assert d["state"] == JobState.DONE and d["result"]["loss"] == -0.5
    assert d["result"]["status"] == "ok" and d["outcome"] == "ok" and d["score"] == 0.5
    assert "outcome" not in d["result"] and "error" not in d["result"]  # stored once


def test_stale_job_is_requeued_then_errors_after_max_retries(store, db):
    enqueue(store)
    clock = FakeClock()
    sweepers = [StaleJobSweeper(store.upkeep, clock=clock) for _ in range(3)]
    owners = []
    for attempt in range(3):
        job = reserve(store, f"h:{attempt}:cpu")
        owners.append(job.owner)
        for sw in sweepers:
            assert sw.sweep() == []  # first sight: nothing judged yet
        clock.t += 0.9  # < 2 x 0.5 s: not stale
        assert all(sw.sweep() == [] for sw in sweepers)
        clock.t += 0.2  # > 2 x interval with no heartbeat
        acted = [a for sw in sweepers for a in sw.sweep()]
        assert len(acted) == 1  # three sweepers, one requeue (race-safe, idempotent)
        d = doc(db, "s", job.tid)
        if attempt < 2:
            assert acted[0][2] == "requeued"
            assert d["state"] == JobState.NEW and d["retries"] == attempt + 1
            assert d["previous_owners"] == owners
    assert acted[0][2] == "error"
    assert d["state"] == JobState.ERROR and "retries exhausted" in d["error"]
    assert d["previous_owners"] == owners


def test_heartbeats_keep_a_job_alive(store, db):
    enqueue(store)
    clock, job = FakeClock(), reserve(store)
    sw = StaleJobSweeper(store.upkeep, clock=clock)
    for _ in range(10):
        sw.sweep()
        clock.t += 0.8
        assert store.work.heartbeat(job)
    assert sw.sweep() == []
    assert doc(db, "s", job.tid)["state"] == JobState.RUNNING


def test_release_puts_job_back_without_a_retry(store, db):
    enqueue(store, epochs=2)
    job = reserve(store)
    assert store.curves.claim(job.id, job.attempt, [])
    assert store.curves.add(job.id, job.attempt, {"epoch": 1, "val_acc": 0.1})
    assert store.work.release(job)
    d = doc(db, "s", job.tid)
    assert d["state"] == JobState.NEW and d["retries"] == 0 and d["owner"] is None
    assert len(store.curves.get(job.id)) == 1  # kept: the next worker resumes after it


def test_cancel_cancels_queued_and_flags_running(store, db):
    for _ in range(3):
        enqueue(store, epochs=2)
    running = reserve(store)
    assert store.jobs.cancel_study("s") == (2, 1)
    assert db.jobs.count_documents({"state": int(JobState.CANCELLED)}) == 2
    assert store.work.stop_request(running) == "cancel"


def test_a_cancelled_study_job_is_not_requeued(store, db):
    enqueue(store)
    enqueue(store)
    dead, stopping = reserve(store, "h:1:cpu"), reserve(store, "h:2:cpu")
    store.jobs.cancel_study("s")
    clock = FakeClock()
    sw = StaleJobSweeper(store.upkeep, clock=clock)
    sw.sweep()
    clock.t += 5
    assert store.work.heartbeat(stopping)  # alive
    assert [a[2] for a in sw.sweep()] == ["cancelled"]  # the dead one
    assert doc(db, "s", dead.tid)["state"] == JobState.CANCELLED
    assert store.work.release(stopping)  # a SIGTERMed worker of a cancelled study
    assert doc(db, "s", stopping.tid)["state"] == JobState.CANCELLED
    assert db.jobs.count_documents({"state": int(JobState.NEW)}) == 0


def test_snapshots_replace_each_other_and_a_lost_job_leaves_none(store, db):
    enqueue(store, epochs=5)
    job = reserve(store)
    assert store.work.save_snapshot(job, b"one", 1)
    assert store.work.save_snapshot(job, b"two", 2)
    assert store.work.load_snapshot(job) == b"two"
    assert store.files.count("snapshots") == 1  # the first was replaced
    store.work.release(job)
    mine = reserve(store, "h:2:cpu")
    assert mine.snapshot_epoch == 2 and store.work.load_snapshot(mine) == b"two"
    # the first worker wakes up: its writes are refused and leave nothing behind
    assert not store.work.save_snapshot(job, b"late", 3)
    assert not store.work.finish(job, {"best_val_acc": 1.0}, "ok", checkpoint=b"late ckpt")
    assert store.files.count("snapshots") == 1
    assert store.files.count("checkpoints") == 0
    assert store.work.load_snapshot(mine) == b"two"
    assert store.work.finish(mine, {"best_val_acc": 0.5}, "ok", checkpoint=b"ckpt")
    assert store.files.count("snapshots") == 0  # finished: its snapshot went
    assert store.job_reads.load_checkpoint(JobRecord(doc(db, "s", mine.tid))) == b"ckpt"


def test_orphan_files_are_collected(store, db):
    enqueue(store)
    job = reserve(store)
    from trials.files import SNAPSHOTS

    # a worker killed between writing a file and attaching it
    store.files.put(SNAPSHOTS, b"orphan", sid="s", tid=job.tid, attempt=job.attempt)
    assert store.work.save_snapshot(job, b"kept", 1)
    assert store.collect_orphans(min_age=3600) == 0  # too young to judge
    assert store.collect_orphans(min_age=-1) == 1
    assert store.work.load_snapshot(job) == b"kept"
    assert store.files.count("snapshots") == 1


def test_a_file_whose_writer_was_killed_mid_write_is_collected(store, db):
    """GridFS writes chunks first and the file document last. A worker SIGKILLed in between
    leaves chunks with no file on MongoDB, and a file with no metadata on nx-27017 (it makes
    one for chunks it has not seen a file for): found in CI, a killed worker left one."""
    from bson import ObjectId

    enqueue(store)
    job = reserve(store)
    assert store.work.save_snapshot(job, b"kept", 1)
    killed = ObjectId()
    db["snapshots.chunks"].insert_one({"files_id": killed, "n": 0, "data": b"half a snapsh"})
    assert store.collect_orphans(min_age=3600) == 0  # too young to judge
    assert store.collect_orphans(min_age=-1) == 1
    assert [f[1] for f in store.files.all_files()] == [job.snapshot]
    assert db["snapshots.chunks"].find_one({"files_id": killed}) is None
    assert store.work.load_snapshot(job) == b"kept"


def test_a_job_is_never_reservable_before_its_curve_exists(store):
    """A worker that reserves a job claims its curve first, and drops the job when there is
    none. Jobs used to be inserted before their curves: a worker that reserved in between
    dropped the job, which sat running until the stale sweep requeued it (a retry spent; found
    in the ASHA test on a loaded machine)."""
    looked: list[bool] = []
    create = store.curves.create

    def a_worker_reserves_first(jobs):  # a worker's reserve, between the two writes
        job = reserve(store)
        looked.append(job is None or store.curves.claim(job.id, job.attempt, []))
        create(jobs)

    store.curves.create = a_worker_reserves_first
    tid = enqueue(store)
    assert looked == [True]
    job = reserve(store)
    assert job is not None and job.tid == tid and store.curves.claim(job.id, job.attempt, [])


def test_a_curve_whose_job_was_never_inserted_is_collected(store, db):
    """A driver killed between a curve and its job leaves a curve no job owns."""
    tid = enqueue(store)
    store.curves.create([{"_id": "s:99", "exp_key": "s", "tid": 99, "kind": "trial"}])
    assert store.collect_orphans(min_age=3600) == 0  # too young to judge
    assert store.collect_orphans(min_age=-1) == 1
    assert db.curves.find_one({"_id": "s:99"}) is None
    assert db.curves.find_one({"_id": f"s:{tid}"}) is not None  # a queued job keeps its own
