"""Real worker processes against the real test database: train, die, stop, fail, reconnect."""

from __future__ import annotations

import io
import signal

import pytest
import torch

from service.embedded_db import EmbeddedMongo, free_port
from tests.conftest import proc_env, read_log, wait_for
from trials.states import JobState
from trials.store import JobStore

TINY = {"model": "sru", "dataset": "digits", "phi_size": 8, "r_size": 2, "out_size": 8,
        "batch_size": 256, "lr": 0.01}
FAST = {"SRU_HPO_HEARTBEAT_INTERVAL": "0.5", "SRU_HPO_SNAPSHOT_SECONDS": "0"}

pytestmark = pytest.mark.slow


def doc(store, tid, exp_key="s"):
    return store.jobs.find_one({"exp_key": exp_key, "tid": tid})


def test_two_burst_workers_drain_the_queue(store, spawn, mongo_url, db_name):
    tids = [store.enqueue("s", kind="trial", params={**TINY, "seed": i}, epochs=6) for i in range(8)]
    env = proc_env(mongo_url, db_name, **FAST)
    workers = [spawn(["worker", "--burst", "--device", "cpu"], env, f"w{i}") for i in range(2)]
    for w in workers:
        assert w.wait(180) == 0, read_log(w)
    for tid in tids:
        d = doc(store, tid)
        assert d["state"] == JobState.DONE, d
        assert d["result"]["status"] == "ok" and d["result"]["epochs_run"] == 6
        assert [p["epoch"] for p in store.curve("s", tid)] == list(range(1, 7))
    owners = {doc(store, t)["owner"] for t in tids}
    assert len(owners) == 2  # both workers took jobs
    assert store.workers.count_documents({}) == 0  # unregistered on exit


def test_killed_worker_job_is_requeued_and_finished_by_another(store, spawn, mongo_url, db_name):
    tid = store.enqueue("s", kind="trial", params=TINY, epochs=25)
    env = proc_env(mongo_url, db_name, **FAST)
    a = spawn(["worker", "--device", "cpu"], env, "a")
    wait_for(lambda: len(store.curve("s", tid)) >= 3, 120, "three epochs of worker a")
    owner_a = doc(store, tid)["owner"]
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    b = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "b")
    assert b.wait(240) == 0, read_log(b)
    d = doc(store, tid)
    assert d["state"] == JobState.DONE, d
    assert d["retries"] == 1 and d["previous_owners"] == [owner_a]
    assert d["owner"] != owner_a
    assert d["result"]["resumed_from"] >= 2  # b continued from a's snapshot, not from epoch 1
    assert [p["epoch"] for p in store.curve("s", tid)] == list(range(1, 26))
    assert store._get("snapshots", f"s:{tid}") is None  # finished: its snapshot is deleted


def test_sigterm_puts_the_job_back_at_once(store, spawn, mongo_url, db_name):
    tid = store.enqueue("s", kind="trial", params=TINY, epochs=200)
    env = proc_env(mongo_url, db_name, **FAST)
    w = spawn(["worker", "--device", "cpu"], env, "w")
    wait_for(lambda: len(store.curve("s", tid)) >= 1, 120, "first epoch")
    w.send_signal(signal.SIGTERM)
    assert w.wait(60) == 0, read_log(w)
    d = doc(store, tid)
    assert d["state"] == JobState.NEW and d["owner"] is None
    assert d["retries"] == 0 and d["releases"] == 1
    done = len(store.curve("s", tid))
    # the next worker resumes where this one stopped
    w2 = spawn(["worker", "--device", "cpu", "--max-jobs", "1"],
               proc_env(mongo_url, db_name, **FAST), "w2")
    wait_for(lambda: len(store.curve("s", tid)) > done, 120, "the resumed run's next epoch")
    w2.send_signal(signal.SIGTERM)
    assert w2.wait(60) == 0
    pts = [p["epoch"] for p in store.curve("s", tid)]
    assert pts == list(range(1, len(pts) + 1))
    snap = torch.load(io.BytesIO(store._get("snapshots", f"s:{tid}")), weights_only=True)
    assert snap["epoch"] > done  # w2 went on from w's epoch, it did not start again at 1
    assert store.workers.count_documents({}) == 0


def test_training_exception_marks_error_and_the_worker_goes_on(store, spawn, mongo_url, db_name):
    bad = store.enqueue("s", kind="trial", params={**TINY, "phi_size": -4}, epochs=1)
    good = store.enqueue("s", kind="trial", params=TINY, epochs=1)
    w = spawn(["worker", "--burst", "--device", "cpu"], proc_env(mongo_url, db_name), "w")
    assert w.wait(120) == 0, read_log(w)
    d = doc(store, bad)
    assert d["state"] == JobState.ERROR and "phi_size" in d["error"]
    assert d["result"]["status"] == "fail"
    assert doc(store, good)["state"] == JobState.DONE


def test_cancel_stops_a_running_job_after_its_epoch(store, spawn, mongo_url, db_name):
    tid = store.enqueue("s", kind="trial", params=TINY, epochs=200)
    w = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], proc_env(mongo_url, db_name), "w")
    wait_for(lambda: len(store.curve("s", tid)) >= 1, 120, "first epoch")
    store.cancel("s")
    assert w.wait(60) == 0, read_log(w)
    d = doc(store, tid)
    assert d["state"] == JobState.CANCELLED and d["result"]["epochs_run"] < 200


def test_workers_survive_a_database_restart(tmp_path, spawn, db_name):
    from pymongo import MongoClient

    port = free_port()
    server = EmbeddedMongo(tmp_path / "db", port=port).start()
    try:
        s = JobStore(MongoClient(server.url)[db_name], heartbeat_interval=0.5)
        s.ensure_indexes()
        tids = [s.enqueue("s", kind="trial", params=TINY, epochs=8) for _ in range(2)]
        env = proc_env(server.url, db_name, SRU_HPO_CONNECT_TIMEOUT="60", **FAST)
        w = spawn(["worker", "--burst", "--device", "cpu"], env, "w")
        wait_for(lambda: len(s.curve("s", tids[0])) >= 2, 120, "training under way")
        server.stop()
        server = EmbeddedMongo(tmp_path / "db", port=port).start()  # same folder, same port
        s = JobStore(MongoClient(server.url)[db_name], heartbeat_interval=0.5)
        assert w.wait(180) == 0, read_log(w)
        assert "database unreachable" in read_log(w)  # it really lost the database
        for tid in tids:
            assert s.jobs.find_one({"tid": tid})["state"] == JobState.DONE
            assert [p["epoch"] for p in s.curve("s", tid)] == list(range(1, 9))
    finally:
        server.stop()
