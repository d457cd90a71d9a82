"""The in-memory store is the real store's twin: one scenario of the operations the study driver
and a worker's trial make, run against both (a real server over TCP and ``MemoryStore``), must
leave the same documents and give the same answers (as Optuna runs one storage test suite
against every backend)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trials.jobs import SLIM
from trials.memory import ManualClock, MemoryStore, apply_update
from trials.records import hyperopt_doc
from trials.states import JobState, StudyState
from trials.store import Store

TIMES = {"created", "updated", "book_time", "refresh_time", "finished", "started",
         "driver_until", "at"}


def _plain(v: Any) -> Any:
    """Times dropped (the clocks differ), booleans as ints (nx-27017 stores them so)."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items() if k not in TIMES}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return int(v) if isinstance(v, bool) else v


def _trial(store, sid: str, tid: int, **fields) -> dict:
    doc = store.jobs.new_job_doc(sid, tid, kind="trial", params={"lr": 0.01 * (tid + 1)},
                                 epochs=9, **fields)
    return doc


def scenario(store, tick) -> dict[str, Any]:  # noqa: ANN001 - either backend
    """What the driver and two workers do to a study; returns every answer and document."""
    seen: dict[str, Any] = {}
    store.studies.create("s", {"name": "x", "n_trials": 3, "parallelism": 2})
    seen["lease"] = [store.studies.lease("s", "me", 10), store.studies.lease("s", "you", 10)]
    seen["transition"] = [store.studies.transition("s", [StudyState.QUEUED], StudyState.RUNNING),
                          store.studies.transition("s", [StudyState.QUEUED], StudyState.RUNNING)]
    seen["summary"] = [store.studies.write_summary("s", "me", {"n": 1}),
                       store.studies.write_summary("s", "you", {"n": 2})]
    tids = store.jobs.next_tids("s", 3)
    store.jobs.insert([_trial(store, "s", t, limit=1, rungs=[1, 3]) for t in tids])
    seen["retrain"] = store.jobs.enqueue("s", kind="retrain", params={"lr": 1}, epochs=2)
    first = store.work.reserve("w1", token="a")  # the retrain: priority 1 before trials' 0
    second = store.work.reserve("w2", token="b")
    seen["reserved"] = [(first.tid, first.kind, first.attempt), (second.tid, second.attempt)]
    seen["claim"] = [store.curves.claim(second.id, second.attempt, []),
                     store.curves.claim(second.id, 0, [])]
    point = {"epoch": 1, "val_acc": 0.5, "val_loss": 1.0}
    seen["add"] = [store.curves.add(second.id, second.attempt, point),
                   store.curves.add(second.id, second.attempt + 1, point)]
    tick()
    mid = store.clock.now()
    tick()
    seen["pause"] = store.work.pause(second, {"best_val_acc": 0.5, "rung_scores": {"1": 0.5}})
    seen["promote"] = [store.jobs.promote("s", second.tid, 3), store.jobs.promote("s", 2, 3)]
    again = store.work.reserve("w1", token="c")  # the promoted trial goes first
    seen["again"] = (again.tid, again.attempt, again.limit)
    seen["finish"] = [store.work.finish(again, {"best_val_acc": 0.7, "epochs_run": 3}, "ok"),
                      store.work.finish(second, {"best_val_acc": 0.1}, "ok")]  # a stale attempt
    seen["fail"] = store.work.fail(first, "boom", "here")
    third = store.work.reserve("w2", token="d")
    seen["pause3"] = store.work.pause(third, {"best_val_acc": 0.2, "rung_scores": {"1": 0.2}})
    seen["stop_at_rung"] = [store.jobs.stop_at_rung("s", third.tid),
                            store.jobs.stop_at_rung("s", third.tid)]
    seen["changed_since"] = sorted(d["tid"] for d in store.job_reads.changed("s", mid))
    seen["slim"] = sorted(set().union(*(d.keys() for d in store.job_reads.changed("s", None))))
    seen["full_budget"] = store.job_reads.full_budget_tids("s")
    seen["cancel"] = store.jobs.cancel_study("s")
    seen["stop_request"] = store.work.stop_request(again)
    seen["ended"] = store.studies.end("s", [StudyState.RUNNING], StudyState.COMPLETED,
                                      summary={"n": 3})
    seen["jobs"] = [_plain(hyperopt_doc(store.job_reads.get("s", t))) for t in range(4)]
    seen["curve"] = _plain(store.curves.get(second.id))
    study = store.studies.get("s")
    seen["study"] = {k: _plain(getattr(study, k)) for k in ("state", "summary", "driver",
                                                            "settled")}
    return seen


@pytest.fixture(params=["mongo", "memory"])
def backend(request, db):
    if request.param == "mongo":
        s = Store(db, heartbeat_interval=10)
        s.ensure_indexes()
        return s, lambda: None
    clock = ManualClock(1e9)
    return MemoryStore(clock, heartbeat_interval=10), lambda: clock.set(clock.now() + 1)


def test_scenario_answers(backend):
    seen = scenario(*backend)
    assert seen["lease"] == [True, False] and seen["transition"] == [True, False]
    assert seen["summary"] == [True, False]
    assert seen["reserved"] == [(3, "retrain", 1), (0, 1)] and seen["claim"] == [True, False]
    assert seen["add"] == [True, False] and seen["promote"] == [True, False]
    assert seen["again"] == (0, 2, 3) and seen["finish"] == [True, False] and seen["fail"]
    assert seen["stop_at_rung"] == [True, False] and seen["changed_since"] == [0, 1, 3]
    assert set(SLIM) | {"_id"} <= set(seen["slim"])
    assert seen["full_budget"] == ["s:0"] and seen["cancel"] == (1, 0)
    assert seen["stop_request"] == "lost" and seen["ended"]
    assert [j["state"] for j in seen["jobs"]] == [JobState.DONE, JobState.DONE,
                                                 JobState.CANCELLED, JobState.ERROR]


def test_both_backends_leave_the_same_documents(db):
    mongo = Store(db, heartbeat_interval=10)
    mongo.ensure_indexes()
    clock = ManualClock(1e9)
    memory = MemoryStore(clock, heartbeat_interval=10)
    a = scenario(mongo, lambda: None)
    b = scenario(memory, lambda: clock.set(clock.now() + 1))
    assert a["slim"] == b["slim"]
    assert a == b


def test_apply_update_copies_on_write():
    doc = {"a": 1, "points": {"1": {"epoch": 1}}, "n": 1}
    new = apply_update(doc, {"$set": {"points.2": {"epoch": 2}, "a": 2}, "$inc": {"n": 2}})
    assert new == {"a": 2, "points": {"1": {"epoch": 1}, "2": {"epoch": 2}}, "n": 3}
    assert doc == {"a": 1, "points": {"1": {"epoch": 1}}, "n": 1}  # the old one untouched
