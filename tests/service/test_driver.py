"""The study driver in-process, no workers: the test plays them. Most tests run twice, on the
real test database and on the in-memory twin (``any_store``), as contract tests of the storage
interface the driver is written against (trials/interface.py); those that need what only the
database has (GridFS files, threads, the lease on the server's clock) use it alone."""

from __future__ import annotations

import uuid

import pytest

from service.orchestrator.driver import StudyDriver
from service.studies.schemas import StudyCreate
from tests.conftest import assert_nothing_names, wait_for
from tests.service.test_api import STUDY
from trials.memory import MemoryStore
from trials.records import hyperopt_doc
from trials.states import JobState, StudyState


def make_study(store, **over) -> str:
    body = StudyCreate.model_validate({**STUDY, **over})
    fields = body.model_dump()
    fields["space"] = body.spec().model_dump()
    sid = f"s{uuid.uuid4().hex[:8]}"
    store.studies.create(sid, fields)
    return sid


def jobs(db, sid, state=None) -> int:
    q = {"exp_key": sid, **({"state": int(state)} if state is not None else {})}
    return db.jobs.count_documents(q)


@pytest.fixture(params=["mongo", "memory"])
def any_store(request):
    """The store on the real test database, then the in-memory twin."""
    if request.param == "mongo":
        return request.getfixturevalue("store")
    return MemoryStore(heartbeat_interval=0.5, max_retries=2)


def docs(store, sid, **where) -> list[dict]:
    """A study's job documents matching ``where`` (field: value), in tid order, read through
    the interface both stores have (each record's document as stored)."""
    found = [hyperopt_doc(store.job_reads.get(sid, d["tid"]))
             for d in store.job_reads.changed(sid, None)]
    return sorted((d for d in found if all(d.get(k) == v for k, v in where.items())),
                  key=lambda d: d["tid"])


def count(store, sid, state=None) -> int:
    return len(docs(store, sid, **({"state": int(state)} if state is not None else {})))


def test_two_drivers_never_top_up_the_same_study(any_store):
    store = any_store
    sid = make_study(store, parallelism=3, n_trials=10)
    a = StudyDriver(store, sid, holder="a", lease_seconds=60)
    b = StudyDriver(store, sid, holder="b", lease_seconds=60)
    for _ in range(5):
        a.step()
        b.step()
    assert count(store, sid) == 3 + 1  # parallelism + queue_ahead (1), not twice that
    assert store.studies.get(sid).driver == "a"


def test_a_lapsed_lease_is_taken_over(store, db):
    sid = make_study(store, parallelism=2)
    a = StudyDriver(store, sid, holder="a", lease_seconds=0.0)  # lapses at once: a "died"
    b = StudyDriver(store, sid, holder="b", lease_seconds=60)
    a.step()
    wait_for(lambda: b.step() is not None and db.studies.find_one({"_id": sid})["driver"] == "b",
             30, "b to take the lease over")
    assert jobs(db, sid) == 2 + 1


def test_cancel_during_a_pass_leaves_nothing_to_run(any_store):
    store = any_store
    sid = make_study(store, parallelism=2)
    d = StudyDriver(store, sid)
    real_suggest = d.search._suggest

    def suggest_then_cancel(*args):  # the API's cancel lands mid-pass
        store.studies.cancel(sid)
        store.jobs.cancel_study(sid)  # sees nothing yet
        real_suggest(*args)

    d.search._suggest = suggest_then_cancel
    for _ in range(3):
        if d.step():
            break
    assert count(store, sid, JobState.NEW) == 0


def test_delete_during_a_pass_leaves_nothing(store, db):
    sid = make_study(store, parallelism=3)
    d = StudyDriver(store, sid)
    real_insert = d.cache.insert
    calls = []

    def insert_then_delete(docs):
        real_insert(docs)
        calls.append(1)
        if len(calls) == 1:
            store.delete_study(sid)  # DELETE /studies/ID lands between two inserts

    d.cache.insert = insert_then_delete
    assert d.step() is True
    assert_nothing_names(store, sid)


def test_fail_fast_fails_the_study_with_the_grouped_error(any_store):
    store = any_store
    sid = make_study(store, parallelism=3, n_trials=30)
    d = StudyDriver(store, sid, fail_fast=3)
    d.step()
    import uuid as u

    for _ in range(3):
        j = store.work.reserve("w:1:cpu:x", token=u.uuid4().hex, sid=sid)
        store.work.fail(j, "DatasetUnavailable: MNIST is not in data/MNIST/raw", "data.py:1")
    # what a reader sees the moment the study turns failed (it once saw the summary of the pass
    # before, with 2 of the 3 errors)
    seen, end = [], store.studies.end

    def end_and_look(*a, **k):  # the stored summary right after the state turned
        ended = end(*a, **k)
        seen.append(store.studies.get(sid).summary)
        return ended

    store.studies.end = end_and_look
    d.step()
    assert seen[0]["counts"]["error"] == 3 and seen[0]["error_groups"][0]["count"] == 3
    study = store.studies.get(sid)
    assert study.state == StudyState.FAILED
    assert "MNIST is not in data/MNIST/raw" in study.error
    assert count(store, sid) == 3 + 1  # the rest of n_trials was not spent
    d.step()
    groups = store.studies.get(sid).summary["error_groups"]
    assert groups == [{"error": "DatasetUnavailable: MNIST is not in data/MNIST/raw", "count": 3,
                       "tids": [0, 1, 2]}]


def test_different_errors_do_not_fail_fast(any_store):
    store = any_store
    sid = make_study(store, parallelism=3, n_trials=30)
    d = StudyDriver(store, sid, fail_fast=3)
    d.step()
    import uuid as u

    for i in range(3):
        j = store.work.reserve("w:1:cpu:x", token=u.uuid4().hex, sid=sid)
        store.work.fail(j, f"error {i}")
    d.step()
    assert store.studies.get(sid).state == StudyState.RUNNING


def test_the_summary_follows_concurrent_writers(store, db):
    """Counts are kept from the incremental cache, never recounted; with writers racing the
    driver they still end equal to the jobs' real states."""
    import threading
    import uuid as u

    sid = make_study(store, parallelism=8, n_trials=40)
    d = StudyDriver(store, sid, fail_fast=0)

    def work(n):
        for _ in range(n):
            j = store.work.reserve(f"w:{n}:cpu:x", token=u.uuid4().hex, sid=sid)
            if j is not None:
                store.work.finish(j, {"best_val_acc": 0.5}, "ok")

    for _ in range(6):
        d.step()
        ts = [threading.Thread(target=work, args=(3,)) for _ in range(3)]
        for t in ts:
            t.start()
        d.step()
        for t in ts:
            t.join()
    d.cache.refresh(full=True)
    d.step()
    counts = store.studies.get(sid).summary["counts"]
    real = {s.label: db.jobs.count_documents({"exp_key": sid, "kind": "trial", "state": int(s)})
            for s in JobState}
    assert {k: counts[k] for k in real} == real
    assert counts["finished"] == real["done"] + real["error"]


def test_a_cancelled_asha_study_leaves_nothing_paused(store, db):
    import uuid as u

    sid = make_study(store, parallelism=2, n_trials=6, trial_epochs=9,
                     scheduler={"rule": "asha", "min_epochs": 1, "reduction": 3})
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    job = store.work.reserve("w:1:cpu:x", token=u.uuid4().hex, sid=sid)
    assert job.limit == 1 and job.rungs == [1, 3]
    assert store.work.save_snapshot(job, b"state at the rung", 1)
    assert store.work.pause(job, {"best_val_acc": 0.3, "rung_scores": {"1": 0.3}})
    store.studies.cancel(sid)
    for _ in range(3):
        if d.step():
            break
    doc = db.jobs.find_one({"_id": job.id})
    assert doc["outcome"] == "stopped_at_rung" and doc["snapshot"] is None
    assert store.files.all_files() == []  # its snapshot went with it


def test_a_cancelled_study_keeps_its_epochs_best_trial_and_says_the_retrain_did_not_run(
        any_store):
    """A trial had reached 0.7733 after 21 epochs when the study was cancelled; the study used
    to show epochs_spent 0, best null and "retrain: pending"."""
    store = any_store
    from service.studies.views import study_public

    sid = make_study(store, parallelism=1, queue_ahead=0, n_trials=4, trial_epochs=50)
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    job = store.work.reserve("w:1:cpu:x", token=uuid.uuid4().hex, sid=sid)
    assert store.curves.claim(job.id, job.attempt, [])
    for e in range(1, 22):
        assert store.curves.add(job.id, job.attempt, {"epoch": e, "val_acc": 0.7733 * e / 21})
    store.studies.cancel(sid)
    store.jobs.cancel_study(sid)
    assert store.work.stop_request(job) == "cancel"  # the worker stops after its epoch
    assert store.work.mark_cancelled(job, {"best_val_acc": 0.7733, "best_epoch": 21,
                                           "epochs_run": 21})
    wait_for(d.step, 30, "the study settles")
    s = study_public(store.studies.get(sid))
    assert s.state == StudyState.CANCELLED and s.counts.cancelled == 1
    assert s.epochs_spent == 21
    assert s.best is not None and s.best.tid == job.tid and s.best.best_val_acc == 0.7733
    assert s.retrain_state == "not run"
    assert len(store.curves.get(job.id)) == 21


def _work_all(store, sid, result) -> list:
    """Reserve and finish every queued job of ``sid`` with ``result(job)``; the jobs done."""
    done = []
    while (j := store.work.reserve("w:1:cpu:x", token=uuid.uuid4().hex, sid=sid)):
        assert store.work.finish(j, {"epochs_run": j.epochs, **result(j)}, "ok")
        done.append(j)
    return done


def _drive_to_retrain(store, sid) -> StudyDriver:
    d = StudyDriver(store, sid, fail_fast=0)
    for _ in range(10):
        d.step()
        if store.studies.get(sid).state == StudyState.RETRAINING:
            return d
        _work_all(store, sid, lambda j: {"best_val_acc": 0.5 + 0.01 * j.tid})
    raise AssertionError("the search did not end")


def test_retrain_seeds_retrain_the_winner_with_k_seeds_and_test_each_once(any_store):
    store = any_store
    from service.studies.views import study_public

    sid = make_study(store, n_trials=2, retrain_seeds=3)
    d = _drive_to_retrain(store, sid)
    retrains = docs(store, sid, kind="retrain")
    assert [r["params"]["seed"] for r in retrains] == [0, 1, 2]  # queued at once: top_k is 1
    assert [r["seed_of"] for r in retrains] == [None, retrains[0]["_id"], retrains[0]["_id"]]
    vals = {0: 0.80, 1: 0.84, 2: 0.88}
    _work_all(store, sid, lambda j: {"best_val_acc": vals[j.params["seed"]]})
    store.studies.release_lease(sid, d.holder)  # the service restarts: a new driver takes over
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    d.step()  # a second pass queues no test again
    tests = docs(store, sid, kind="test")
    assert sorted(t["source"] for t in tests) == sorted(r["_id"] for r in retrains)
    accs = {r["_id"]: a for r, a in zip(retrains, (0.75, 0.80, 0.85), strict=True)}
    _work_all(store, sid, lambda j: {"test_acc": accs[j.source], "test_loss": 0.5})
    wait_for(d.step, 30, "the study settles")
    s = study_public(store.studies.get(sid))
    assert s.state == StudyState.COMPLETED and s.retrain_state == "done"
    assert s.tests == 3 and abs(s.test_acc - 0.80) < 1e-9 and abs(s.test_acc_sd - 0.05) < 1e-9
    assert abs(s.retrain_val_acc - 0.84) < 1e-9 and abs(s.test_drop - 0.04) < 1e-9
    assert len(docs(store, sid, kind="test")) == 3


def test_with_top_k_the_seeds_follow_the_winner_only(any_store):
    store = any_store
    sid = make_study(store, n_trials=3, retrain_top_k=2, retrain_seeds=2)
    d = _drive_to_retrain(store, sid)
    candidates = docs(store, sid, kind="retrain")
    assert len(candidates) == 2 and all(c["params"]["seed"] == 0 for c in candidates)
    _work_all(store, sid, lambda j: {"best_val_acc": 0.9 if j.tid == candidates[1]["tid"]
                                     else 0.7})
    d.step()
    extra = [r for r in docs(store, sid, kind="retrain") if r.get("seed_of") is not None]
    assert [(e["seed_of"], e["params"]["seed"]) for e in extra] == [(candidates[1]["_id"], 1)]
    assert len(docs(store, sid, kind="test")) == 1  # the winner's run 1
    _work_all(store, sid, lambda j: {"best_val_acc": 0.88, "test_acc": 0.8})
    d.step()
    tests = docs(store, sid, kind="test")
    assert sorted(t["source"] for t in tests) == sorted([candidates[1]["_id"], extra[0]["_id"]])
    _work_all(store, sid, lambda j: {"test_acc": 0.8})
    wait_for(d.step, 30, "the study settles")
    study = store.studies.get(sid)
    assert study.state == StudyState.COMPLETED and study.retrain_tid == candidates[1]["tid"]
    assert study.summary["tests"] == 2


def test_a_failed_seed_run_leaves_the_others_tested(any_store):
    store = any_store
    sid = make_study(store, n_trials=2, retrain_seeds=2)
    d = _drive_to_retrain(store, sid)
    for j in iter(lambda: store.work.reserve("w:1:cpu:x", token=uuid.uuid4().hex,
                                             sid=sid), None):
        if j.params["seed"] == 1:
            store.work.fail(j, "CUDA error: an illegal memory access")
        else:
            store.work.finish(j, {"best_val_acc": 0.8, "epochs_run": 2}, "ok")
    d.step()
    _work_all(store, sid, lambda j: {"test_acc": 0.7})
    wait_for(d.step, 30, "the study settles")
    s = store.studies.get(sid)
    assert s.state == StudyState.COMPLETED and s.summary["tests"] == 1
    assert s.summary["test_acc_sd"] is None
