"""Curves fenced by attempt, the study repository's compare-and-set transitions and lease,
the server clock, and deletion that leaves nothing behind."""

from __future__ import annotations

import time

from tests.conftest import assert_nothing_names
from tests.trials.test_jobs import enqueue, reserve
from trials.states import StudyState

POINT = {"train_loss": 0.1, "val_loss": 0.1, "lr": 0.01, "seconds": 0.1}


def test_only_the_claiming_attempt_writes_the_curve(store):
    enqueue(store, epochs=5)
    a = reserve(store, "h:1:cpu")
    assert store.curves.claim(a.id, a.attempt, [])
    for e in (1, 2, 3):
        assert store.curves.add(a.id, a.attempt, {**POINT, "epoch": e, "val_acc": 0.1 * e})
    store.work.release(a)
    b = reserve(store, "h:2:cpu")
    carried = [p for p in store.curves.get(b.id) if p["epoch"] <= 2]  # b's snapshot: epoch 2
    assert store.curves.claim(b.id, b.attempt, carried)
    assert not store.curves.add(a.id, a.attempt, {**POINT, "epoch": 4, "val_acc": 0.9})  # late
    assert store.curves.add(b.id, b.attempt, {**POINT, "epoch": 3, "val_acc": 0.5})
    assert [(p["epoch"], p["val_acc"]) for p in store.curves.get(b.id)] == [
        (1, 0.1), (2, 0.2), (3, 0.5)]
    assert not store.curves.claim(a.id, a.attempt, [])  # an older attempt can not take it back


def test_a_resent_epoch_replaces_its_point(store):
    enqueue(store, epochs=2)
    j = reserve(store)
    store.curves.claim(j.id, j.attempt, [])
    store.curves.add(j.id, j.attempt, {**POINT, "epoch": 1, "val_acc": 0.1})
    store.curves.add(j.id, j.attempt, {**POINT, "epoch": 1, "val_acc": 0.3})
    assert [(p["epoch"], p["val_acc"]) for p in store.curves.get(j.id)] == [(1, 0.3)]


def test_changed_curves_follow_a_cursor(store):
    for _ in range(3):
        enqueue(store, epochs=2)
    jobs = [reserve(store, f"h:{i}:cpu") for i in range(3)]
    for j in jobs:
        store.curves.claim(j.id, j.attempt, [])
    cursor = max(c.updated for c in store.curves.changed("s", -1.0, 100))
    store.curves.add(jobs[1].id, jobs[1].attempt, {**POINT, "epoch": 1, "val_acc": 0.5})
    changed = store.curves.changed("s", cursor, 100)
    assert [c.tid for c in changed] == [jobs[1].tid]


def new_study(store, sid: str = "st") -> str:
    store.studies.create(sid, {"name": "x", "n_trials": 3})
    return sid


def test_transitions_are_compare_and_set(store):
    sid = new_study(store)
    assert store.studies.transition(sid, [StudyState.QUEUED], StudyState.RUNNING)
    assert not store.studies.transition(sid, [StudyState.QUEUED], StudyState.RUNNING)
    assert store.studies.end(sid, [StudyState.RUNNING], StudyState.COMPLETED)
    # a cancel that read "running" a moment ago can not overwrite the completion
    assert not store.studies.end(sid, [StudyState.RUNNING], StudyState.CANCELLED)
    assert store.studies.cancel(sid) == StudyState.COMPLETED
    assert store.studies.get(sid).state == "completed"


def test_the_driver_lease_is_exclusive_until_it_lapses(store):
    sid = new_study(store)
    assert store.studies.lease(sid, "a", 60)
    assert not store.studies.lease(sid, "b", 60)
    assert store.studies.lease(sid, "a", 60)  # renewal
    store.studies.release_lease(sid, "a")
    assert store.studies.lease(sid, "b", 0.0)  # released (an explicit null) is free
    deadline = time.monotonic() + 30  # a 0 s lease lapses at the server's next millisecond
    while not store.studies.lease(sid, "a", 60):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not store.studies.write_summary(sid, "b", {"counts": {}})  # only the holder writes
    assert store.studies.write_summary(sid, "a", {"counts": {"done": 1}})


def test_the_server_clock_is_the_servers(store):
    """hello.localTime is answered by MongoDB and nx-27017; our clock follows it."""
    hello = store.db.client.admin.command("hello")
    assert "localTime" in hello
    now = store.clock.now()
    assert abs(now - time.time()) < 5  # same machine here: the offset is only the RTT
    assert store.clock.now() >= now


def test_delete_study_leaves_nothing_that_names_it(store, db):
    sid = new_study(store, "gone")
    enqueue(store, sid, epochs=3)
    j = reserve(store)
    store.curves.claim(j.id, j.attempt, [])
    store.curves.add(j.id, j.attempt, {**POINT, "epoch": 1, "val_acc": 0.2})
    store.work.save_snapshot(j, b"state", 1)
    assert store.delete_study(sid)
    assert store.studies.get(sid) is None and not store.delete_study(sid)
    # the worker's late writes are refused and leave nothing
    assert not store.curves.add(j.id, j.attempt, {**POINT, "epoch": 2, "val_acc": 0.3})
    assert not store.work.save_snapshot(j, b"late", 2)
    assert not store.work.finish(j, {"best_val_acc": 0.3}, "ok", checkpoint=b"late")
    assert_nothing_names(store, sid)
    assert store.files.all_files() == []
