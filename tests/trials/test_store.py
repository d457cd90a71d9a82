"""The job store on a real server: ids, reservation, heartbeats, requeue, curves, hyperopt."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
from hyperopt import Domain, hp, tpe
from pymongo import MongoClient

from trials.mongo_trials import MongoTrials
from trials.requeue import StaleJobSweeper
from trials.states import JobKind, JobState
from trials.store import JobStore


def test_tids_are_allocated_atomically_and_per_study(store):
    assert store.next_tids("a", 3) == [0, 1, 2]
    assert store.next_tids("a", 2) == [3, 4]
    assert store.next_tids("b", 1) == [0]


def _reserve_all(url: str, db_name: str, q) -> None:
    s = JobStore(MongoClient(url)[db_name])
    got = []
    while (job := s.reserve(f"h:{mp.current_process().pid}:cpu")) is not None:
        got.append(job.tid)
    q.put(got)


@pytest.mark.slow
def test_race_four_processes_reserve_each_job_exactly_once(store, mongo_url, db_name):
    for _ in range(200):
        store.enqueue("race", kind="trial", params={}, epochs=1)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_reserve_all, args=(mongo_url, db_name, q)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    everything = [t for r in results for t in r]
    assert len(everything) == 200 and sorted(everything) == list(range(200))
    assert sum(1 for r in results if r) >= 2  # they really raced
    assert store.count("race", [JobState.RUNNING]) == 200


def test_reserve_takes_retrain_first_then_oldest(store):
    store.enqueue("s", kind="trial", params={"x": 1}, epochs=3)
    store.enqueue("s", kind="trial", params={"x": 2}, epochs=3)
    store.enqueue("s", kind="retrain", params={"x": 9}, epochs=30)
    jobs = [store.reserve("h:1:cpu") for _ in range(3)]
    assert [j.kind for j in jobs] == ["retrain", "trial", "trial"]
    assert [j.params["x"] for j in jobs] == [9, 1, 2]
    assert store.reserve("h:1:cpu") is None


def test_only_the_owner_can_finish(store):
    store.enqueue("s", kind="trial", params={}, epochs=1)
    job = store.reserve("h:1:cpu")
    impostor = type(job)(**{**job.__dict__, "owner": "h:2:cpu"})
    assert not store.finish(impostor, {"best_val_acc": 0.9}, "ok")
    assert not store.heartbeat(impostor)
    assert store.heartbeat(job)
    assert store.finish(job, {"best_val_acc": 0.5}, "ok")
    doc = store.jobs.find_one({"_id": job.id})
    assert doc["state"] == JobState.DONE and doc["result"]["loss"] == -0.5
    assert doc["result"]["status"] == "ok" and doc["outcome"] == "ok"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_stale_job_is_requeued_then_errors_after_max_retries(store):
    store.enqueue("s", kind="trial", params={}, epochs=1)
    clock = FakeClock()
    sweepers = [StaleJobSweeper(store, clock=clock) for _ in range(3)]
    owners = []
    for attempt in range(3):
        job = store.reserve(f"h:{attempt}:cpu")
        owners.append(job.owner)
        for sw in sweepers:
            assert sw.sweep() == []  # first sight: nothing judged yet
        clock.t += 0.9  # < 2 x 0.5 s: not stale
        assert all(sw.sweep() == [] for sw in sweepers)
        clock.t += 0.2  # > 2 x interval with no heartbeat
        acted = [a for sw in sweepers for a in sw.sweep()]
        assert len(acted) == 1  # three sweepers, one requeue (race-safe, idempotent)
        doc = store.jobs.find_one({"_id": job.id})
        if attempt < 2:
            assert acted[0][2] == "requeued"
            assert doc["state"] == JobState.NEW and doc["retries"] == attempt + 1
            assert doc["previous_owners"] == owners
    assert acted[0][2] == "error"
    assert doc["state"] == JobState.ERROR and "retries exhausted" in doc["error"]
    assert doc["previous_owners"] == owners


def test_heartbeats_keep_a_job_alive(store):
    store.enqueue("s", kind="trial", params={}, epochs=1)
    clock, job = FakeClock(), store.reserve("h:1:cpu")
    sw = StaleJobSweeper(store, clock=clock)
    for _ in range(10):
        sw.sweep()
        clock.t += 0.8
        assert store.heartbeat(job)
    assert sw.sweep() == []
    assert store.jobs.find_one({"_id": job.id})["state"] == JobState.RUNNING


def test_curve_resend_replaces_the_point(store):
    store.enqueue("s", kind="trial", params={}, epochs=2)
    job = store.reserve("h:1:cpu")
    store.add_curve_point(job, {"epoch": 1, "val_acc": 0.1})
    store.add_curve_point(job, {"epoch": 2, "val_acc": 0.2})
    store.add_curve_point(job, {"epoch": 1, "val_acc": 0.3})  # a retry re-sends epoch 1
    curve = store.curve("s", job.tid)
    assert [(p["epoch"], p["val_acc"]) for p in curve] == [(1, 0.3), (2, 0.2)]
    assert store.study_curves("s") == {job.tid: curve}


def test_release_puts_job_back_without_a_retry(store):
    store.enqueue("s", kind="trial", params={}, epochs=2)
    job = store.reserve("h:1:cpu")
    store.add_curve_point(job, {"epoch": 1, "val_acc": 0.1})
    assert store.release(job)
    doc = store.jobs.find_one({"_id": job.id})
    assert doc["state"] == JobState.NEW and doc["retries"] == 0 and doc["owner"] is None
    assert len(store.curve("s", job.tid)) == 1  # kept: the next worker resumes after it


def test_cancel_cancels_queued_and_flags_running(store):
    for _ in range(3):
        store.enqueue("s", kind="trial", params={}, epochs=2)
    running = store.reserve("h:1:cpu")
    assert store.cancel("s") == (2, 1)
    assert store.count("s", [JobState.CANCELLED]) == 2
    assert store.stop_request(running) == "cancel"


def test_checkpoint_round_trip(store):
    blob = bytes(range(256)) * 5000  # > one GridFS chunk
    store.save_checkpoint("s", blob)
    store.save_checkpoint("s", blob[:10] + blob)  # replaces
    assert store.load_checkpoint("s") == blob[:10] + blob
    store.delete("s")
    assert store.load_checkpoint("s") is None


def test_mongo_trials_works_with_tpe(store):
    space = {"x": hp.uniform("x", -5, 5), "k": hp.choice("k", [1, 2])}
    domain = Domain(lambda p: 0.0, space)
    trials = MongoTrials(store, "study")
    for i in range(25):  # a finished history, more than TPE's startup count
        (tid,) = trials.new_trial_ids(1)
        docs = tpe.suggest([tid], domain, trials, seed=i)
        for d in docs:
            d.update(store.job_fields(kind=JobKind.TRIAL, params={}, epochs=1))
        trials.insert_trial_docs(docs)
        job = store.reserve("h:1:cpu", exp_key="study")
        x = store.jobs.find_one({"_id": job.id})["misc"]["vals"]["x"][0]
        store.finish(job, {"best_val_acc": float(np.exp(-x * x))}, "ok")  # best at x = 0
        trials.refresh()
    assert len(trials) == 25
    losses = trials.losses()
    assert all(loss is not None for loss in losses)
    assert trials.best_trial["result"]["loss"] == min(losses)
    assert trials.count_by_state_unsynced(JobState.DONE) == 25
    # TPE's suggestions after its 20 random start-up trials sit nearer the optimum x = 0 than
    # uniform sampling on [-5, 5] does (mean |x| = 2.5)
    xs = [t["misc"]["vals"]["x"][0] for t in trials.trials]
    assert np.mean(np.abs(xs[-5:])) < 1.5
    # hyperopt's own plotting reads it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hyperopt import plotting

    plotting.main_plot_history(trials, do_show=False)
    ys = plt.gca().collections[0].get_offsets()[:, 1]
    assert sorted(ys) == sorted(losses)
    plt.close("all")
    # a retrain job of the same study is not part of the search history
    store.enqueue("study", kind="retrain", params={}, epochs=5)
    trials.refresh()
    assert len(trials) == 25


def test_nx27017_datetimes_are_why_times_are_floats(db):
    """Pins the embedded server's behaviour that made us store times as float seconds: a
    datetime may come back as a string there. Floats round-trip on both servers."""
    import datetime

    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    db.pin.insert_one({"_id": 1, "dt": when, "f": 1.5})
    doc = db.pin.find_one({"_id": 1})
    assert doc["f"] == 1.5
    if isinstance(doc["dt"], str):  # nx-27017: the same instant, as text
        assert doc["dt"].startswith("2026-01-02") and "03:04:05.678" in doc["dt"]
    else:  # MongoDB: a datetime
        assert doc["dt"] == when
    assert db.pin.count_documents({"f": {"$lt": 2.0}}) == 1


def test_floats_set_at_top_level_keep_at_least_15_digits(db):
    """Pins nx-27017 0.8.1: ``$set`` of a top-level float keeps ~15 significant digits (an
    inserted or nested float keeps all 17). Real MongoDB keeps all; code compares with a
    tolerance or reads the nested copy (job ``result``) where exactness matters."""
    v = 0.11388888888888889
    db.pin.insert_one({"_id": 1, "a": v, "n": {"a": v}})
    db.pin.update_one({"_id": 1}, {"$set": {"b": v}})
    doc = db.pin.find_one({"_id": 1})
    assert doc["a"] == v and doc["n"]["a"] == v
    assert abs(doc["b"] - v) < 1e-14


def test_a_cancelled_study_job_is_not_requeued(store):
    store.enqueue("s", kind="trial", params={}, epochs=1)
    store.enqueue("s", kind="trial", params={}, epochs=1)
    dead, stopping = store.reserve("h:1:cpu"), store.reserve("h:2:cpu")
    store.cancel("s")
    clock = FakeClock()
    sw = StaleJobSweeper(store, clock=clock)
    sw.sweep()
    clock.t += 5
    assert store.heartbeat(stopping)  # alive
    assert [a[2] for a in sw.sweep()] == ["cancelled"]  # the dead one
    assert store.jobs.find_one({"_id": dead.id})["state"] == JobState.CANCELLED
    assert store.release(stopping)  # a SIGTERMed worker of a cancelled study
    assert store.jobs.find_one({"_id": stopping.id})["state"] == JobState.CANCELLED
    assert store.count("s", [JobState.NEW]) == 0


def test_id_with_or_is_written_as_and(db):
    """Pins nx-27017 0.8.1: in an update, a top-level ``_id`` next to ``$or`` is ignored (the
    update can hit another document). The ``$and`` form used by the GPU and driver leases
    selects correctly on both servers."""
    db.pin.insert_many([{"_id": "a", "owner": "x"}, {"_id": "b", "owner": None}])
    miss = {"$and": [{"_id": "a"}, {"$or": [{"owner": None}, {"owner": "me"}]}]}
    assert db.pin.find_one_and_update(miss, {"$set": {"owner": "me"}}) is None
    hit = {"$and": [{"_id": "b"}, {"$or": [{"owner": None}, {"owner": "me"}]}]}
    assert db.pin.find_one_and_update(hit, {"$set": {"owner": "me"}})["_id"] == "b"
    assert {d["_id"]: d["owner"] for d in db.pin.find()} == {"a": "x", "b": "me"}
