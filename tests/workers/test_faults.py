"""Worker-side faults: a lost reserve reply, a database blip in the pruner, a broken heartbeat,
stale worker documents, and the launcher's thread setting."""

from __future__ import annotations

from pymongo.errors import AutoReconnect

from service.launcher.embedded_db import EmbeddedMongo
from tests.netfault import LossyProxy
from tests.trials.test_jobs import enqueue, reserve
from trials.states import JobState
from trials.store import Store
from workers.trial import Heartbeat, TrialRun
from workers.worker import Worker


def test_a_lost_reserve_reply_leaves_no_ghost(tmp_path, db_name):
    """The reply to findAndModify is lost on the wire: the worker retries with the same token
    and gets the job that first try reserved. Nothing is left running without a worker, and no
    retry of the job is spent."""
    with EmbeddedMongo(tmp_path / "db") as server:
        direct = Store.connect(server.url, db_name)
        direct.ensure_indexes()
        for _ in range(3):
            enqueue(direct)
        proxy = LossyProxy(server.port)
        try:
            via = Store.connect(proxy.url, db_name)
            w = Worker(via, device="cpu", db_timeout=30)
            proxy.lose_reply_to(b"findAndModify")
            job = w.reserve()
            assert proxy.lost == 1 and job is not None
            running = list(direct.db.jobs.find({"state": int(JobState.RUNNING)}))
            assert [d["_id"] for d in running] == [job.id]  # exactly one: the one we hold
            assert running[0]["owner"] == w.owner and running[0]["retries"] == 0
        finally:
            proxy.close()


def test_a_database_blip_in_the_pruner_is_retried(store, monkeypatch):
    """An outage while the pruner read its peers used to mark a good trial error for good."""
    enqueue(store, params={"model": "sru"}, epochs=5, pruning={"rule": "median"})
    job = reserve(store)
    worker = Worker(store, device="cpu", db_timeout=30)
    run = TrialRun(worker, job)
    real, calls = store.job_reads.full_budget_tids, []

    def flaky(sid):
        calls.append(1)
        if len(calls) == 1:
            raise AutoReconnect("connection reset")
        return real(sid)

    monkeypatch.setattr(store.job_reads, "full_budget_tids", flaky)
    run.curve = [{"epoch": 6, "val_acc": 0.5}]
    assert run._prune() is False and len(calls) == 2


def test_any_heartbeat_error_ends_the_trial_cleanly(store):
    enqueue(store, params={"model": "sru"}, epochs=5)
    job = reserve(store)

    def broken() -> bool:
        raise ValueError("a bug in the heartbeat")

    hb = Heartbeat(broken, 0.01, "hb")
    with hb:
        hb._thread.join(30)  # it stops on the error instead of dying silently
    assert isinstance(hb.failed, ValueError)
    run = TrialRun(Worker(store, device="cpu"), job)
    run.hb = hb
    assert run.should_stop() and run.why == "heartbeat"


def test_stale_worker_documents_are_removed(store, db):
    store.workers.register("h:1:cpu:aa", "cpu")
    store.workers.register("h:2:cpu:bb", "cpu")
    db.workers.update_one({"_id": "h:1:cpu:aa"}, {"$set": {"last_seen": store.clock.now() - 600}})
    assert store.workers.remove_stale(older_than=60) == 1
    assert [w["_id"] for w in db.workers.find()] == ["h:2:cpu:bb"]


def test_worker_ids_are_unique_on_one_host():
    from trials.registry import make_owner

    assert make_owner("cpu") != make_owner("cpu")  # same host, same pid: still two ids
