"""Real worker processes against the real test database: train, die, stall, stop, fail, reconnect.

Timing rules (these run on a loaded 2-core CI machine): heartbeats are 3 s (a job is stale
after 6 silent seconds, so a 2 s stall requeues nothing), every wait is for a condition with a
generous deadline, and no assertion depends on which worker got which job.
"""

from __future__ import annotations

import io
import signal

import pytest
import torch

from service.launcher.embedded_db import EmbeddedMongo, free_port
from tests.conftest import assert_nothing_names, proc_env, read_log, wait_for
from tests.trials.test_jobs import enqueue
from trials.states import JobState
from trials.store import Store

TINY = {"model": "sru", "dataset": "digits", "phi_size": 8, "r_size": 2, "out_size": 8,
        "batch_size": 256, "lr": 0.01}
SNAP = {"SRU_HPO_SNAPSHOT_SECONDS": "0"}  # a snapshot after every epoch

pytestmark = pytest.mark.slow


def doc(db, tid, sid="s"):
    return db.jobs.find_one({"_id": f"{sid}:{tid}"})


def epochs(store, tid, sid="s") -> list[int]:
    return [p["epoch"] for p in store.curves.get(f"{sid}:{tid}")]


def test_two_burst_workers_drain_the_queue(store, db, spawn, mongo_url, db_name):
    tids = [enqueue(store, params={**TINY, "seed": i}, epochs=6) for i in range(8)]
    env = proc_env(mongo_url, db_name)
    workers = [spawn(["worker", "--burst", "--device", "cpu"], env, f"w{i}") for i in range(2)]
    for w in workers:
        assert w.wait(300) == 0, read_log(w)
    for tid in tids:
        d = doc(db, tid)
        assert d["state"] == JobState.DONE, d
        assert d["result"]["status"] == "ok" and d["result"]["epochs_run"] == 6
        assert epochs(store, tid) == list(range(1, 7))
        assert d["attempt"] == 1  # reserved once: no job was run twice
    assert db.workers.count_documents({}) == 0  # unregistered on exit


def test_killed_worker_job_is_requeued_and_finished_by_another(store, db, spawn, mongo_url,
                                                                db_name):
    tid = enqueue(store, params=TINY, epochs=25)
    env = proc_env(mongo_url, db_name, **SNAP)
    a = spawn(["worker", "--device", "cpu"], env, "a")
    wait_for(lambda: len(epochs(store, tid)) >= 3, 180, "three epochs of worker a")
    owner_a = doc(db, tid)["owner"]
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    b = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "b")
    assert b.wait(300) == 0, read_log(b)
    d = doc(db, tid)
    assert d["state"] == JobState.DONE, d
    assert d["retries"] == 1 and d["previous_owners"] == [owner_a] and d["owner"] != owner_a
    assert d["result"]["resumed_from"] >= 2  # b continued from a's snapshot, not from epoch 1
    assert epochs(store, tid) == list(range(1, 26))
    # finished: b's snapshot is deleted. What a's SIGKILL may leave is a half-written snapshot
    # that no job points to (killed between GridFS's chunks and its file document); it is an
    # orphan, and the orphan collector removes it once it is old enough to judge.
    left = store.files.all_files()
    assert len(left) <= 1 and all(meta.get("attempt") in (None, 1) for _, _, meta, _ in left), left
    assert store.collect_orphans(min_age=-1) == len(left)
    assert store.files.all_files() == []


def test_a_killed_retrain_leaves_no_scratch_folder_once_a_worker_starts(store, spawn, mongo_url,
                                                                        db_name, tmp_path,
                                                                        monkeypatch):
    """A retrain writes its best weights to a scratch folder; a SIGKILL leaves the folder, and the
    next worker to start removes it, but not the folder of a worker that still runs. A trial
    makes no folder. (These folders piled up in /tmp under the suite's killed workers.)"""
    import tempfile

    from workers.scratch import PREFIX, Scratch

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = proc_env(mongo_url, db_name, TMPDIR=str(tmp))
    trial = enqueue(store, params=TINY, epochs=2)
    a = spawn(["worker", "--device", "cpu"], env, "a")
    wait_for(lambda: doc(store.db, trial)["state"] == JobState.DONE, 180, "the trial")
    assert list(tmp.glob(f"{PREFIX}*")) == []
    tid = enqueue(store, kind="retrain", params=TINY, epochs=500)
    wait_for(lambda: len(epochs(store, tid)) >= 2, 180, "two epochs of the retrain")
    (left,) = tmp.glob(f"{PREFIX}*")  # the retrain's, and none of the trial's
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    with Scratch() as live:  # a folder whose worker (this test) lives
        b = spawn(["worker", "--burst", "--device", "cpu", "--study", "none"], env, "b")
        assert b.wait(120) == 0, read_log(b)
        assert list(tmp.glob(f"{PREFIX}*")) == [live] and not left.exists()
        assert "removed 1 scratch folder(s)" in read_log(b)
    assert list(tmp.glob(f"{PREFIX}*")) == []  # (torch keeps its own cache folder here)


def test_a_stalled_worker_that_lost_its_job_writes_nothing(store, db, spawn, mongo_url, db_name):
    """SIGSTOP a worker mid-trial; another worker takes the requeued job over and resumes it;
    SIGCONT the first: its curve points, snapshots and result are all refused."""
    tid = enqueue(store, params=TINY, epochs=40)
    env = proc_env(mongo_url, db_name, **SNAP)
    a = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "a")
    wait_for(lambda: len(epochs(store, tid)) >= 3, 180, "three epochs of worker a")
    a.send_signal(signal.SIGSTOP)
    try:
        b = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "b")
        wait_for(lambda: (d := doc(db, tid))["attempt"] == 2 and d["state"] == JobState.RUNNING,
                 120, "worker b to take the job over")
        wait_for(lambda: len(epochs(store, tid)) >= 6, 180, "b's progress")
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(120) == 0, read_log(a)
    assert "no longer ours" in read_log(a) or "taken over" in read_log(a)
    assert b.wait(300) == 0, read_log(b)
    d = doc(db, tid)
    assert d["state"] == JobState.DONE and d["attempt"] == 2 and d["retries"] == 1
    assert epochs(store, tid) == list(range(1, 41))
    assert db.curves.find_one({"_id": f"s:{tid}"})["attempt"] == 2
    assert store.files.all_files() == []  # a's late snapshots were deleted, b's with the finish


def test_a_stalled_worker_of_a_deleted_study_leaves_nothing(store, db, spawn, mongo_url,
                                                           db_name):
    store.studies.create("del", {"name": "x"})
    tid = enqueue(store, "del", params=TINY, epochs=40)
    env = proc_env(mongo_url, db_name, **SNAP)
    a = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "a")
    wait_for(lambda: len(epochs(store, tid, "del")) >= 2, 180, "two epochs")
    a.send_signal(signal.SIGSTOP)
    try:
        assert store.delete_study("del")
    finally:
        a.send_signal(signal.SIGCONT)
    assert a.wait(120) == 0, read_log(a)
    assert_nothing_names(store, "del:")
    assert store.files.all_files() == []


def test_sigterm_puts_the_job_back_at_once(store, db, spawn, mongo_url, db_name):
    tid = enqueue(store, params=TINY, epochs=200)
    env = proc_env(mongo_url, db_name, **SNAP)
    w = spawn(["worker", "--device", "cpu"], env, "w")
    wait_for(lambda: len(epochs(store, tid)) >= 1, 180, "first epoch")
    w.send_signal(signal.SIGTERM)
    assert w.wait(120) == 0, read_log(w)
    d = doc(db, tid)
    assert d["state"] == JobState.NEW and d["owner"] is None
    assert d["retries"] == 0 and d["releases"] == 1
    done = len(epochs(store, tid))
    # the next worker resumes where this one stopped
    w2 = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "w2")
    wait_for(lambda: len(epochs(store, tid)) > done, 180, "the resumed run's next epoch")
    w2.send_signal(signal.SIGTERM)
    assert w2.wait(120) == 0
    assert epochs(store, tid) == list(range(1, len(epochs(store, tid)) + 1))
    job = doc(db, tid)
    snap = torch.load(io.BytesIO(store.files.get("snapshots", job["snapshot"])),
                      weights_only=True)
    assert snap["epoch"] > done  # w2 went on from w's epoch, it did not start again at 1
    assert db.workers.count_documents({}) == 0


def test_a_configuration_error_ends_the_trial_infeasible_and_the_worker_goes_on(
        store, db, spawn, mongo_url, db_name):
    """The model raised for these parameters: infeasible (a configuration failure), never
    retried, TPE's worst loss; the next job runs in the same trainer."""
    bad = enqueue(store, params={**TINY, "phi_size": -4}, epochs=1)
    good = enqueue(store, params=TINY, epochs=1)
    w = spawn(["worker", "--burst", "--device", "cpu"], proc_env(mongo_url, db_name), "w")
    assert w.wait(180) == 0, read_log(w)
    d = doc(db, bad)
    assert d["state"] == JobState.DONE and d["outcome"] == "infeasible"
    assert "ParamError: phi_size" in d["error"] and "params.py" in d["error_at"]
    assert d["failure_class"] == "configuration" and d["retries"] == 0 and d["attempt"] == 1
    assert d["result"]["loss"] == 0.0 and d["score"] is None
    assert doc(db, good)["state"] == JobState.DONE
    assert read_log(w).count("trainer ") == 1  # "trainer N started": one child for both jobs


def test_cancel_stops_a_running_job_after_its_epoch(store, db, spawn, mongo_url, db_name):
    tid = enqueue(store, params=TINY, epochs=200)
    w = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], proc_env(mongo_url, db_name), "w")
    wait_for(lambda: len(epochs(store, tid)) >= 1, 180, "first epoch")
    store.jobs.cancel_study("s")
    assert w.wait(120) == 0, read_log(w)
    d = doc(db, tid)
    assert d["state"] == JobState.CANCELLED and d["result"]["epochs_run"] < 200


def test_workers_survive_a_database_restart(tmp_path, spawn, db_name):
    """The outage lands mid-trial whatever the machine's speed: the trial is long, the database
    goes away once it is running and has written points, and comes back once the worker has
    met the outage."""
    port = free_port()
    server = EmbeddedMongo(tmp_path / "db", port=port).start()
    try:
        s = Store.connect(server.url, db_name, heartbeat_interval=3)
        s.ensure_indexes()
        tid = enqueue(s, params=TINY, epochs=400)
        env = proc_env(server.url, db_name, SRU_HPO_CONNECT_TIMEOUT="120")
        w = spawn(["worker", "--device", "cpu", "--max-jobs", "1"], env, "w")
        wait_for(lambda: len(epochs(s, tid)) >= 2, 180, "training under way")
        server.stop()
        # down until the worker has met the outage (a quick restart could fall between two of
        # its calls on a slow machine and prove nothing)
        wait_for(lambda: "database unreachable" in read_log(w), 120, "the worker to notice")
        server = EmbeddedMongo(tmp_path / "db", port=port).start()  # same folder, same port
        s = Store.connect(server.url, db_name, heartbeat_interval=3)
        seen = len(epochs(s, tid))
        wait_for(lambda: len(epochs(s, tid)) > seen + 2, 180, "training going on after it")
        w.send_signal(signal.SIGTERM)
        assert w.wait(120) == 0, read_log(w)
        got = epochs(s, tid)
        assert got == list(range(1, len(got) + 1))  # no epoch lost or repeated
        assert s.db.jobs.find_one({"tid": tid})["state"] == JobState.NEW  # released, resumable
    finally:
        server.stop()
