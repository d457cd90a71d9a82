"""The search phase in-process, workers played by the test: the queue kept ahead of the
workers, TPE's constant liar, promotion order, budgets, and the end of a search that always takes
a trial to the top (service/orchestrator/search.py and suggest.py). Every test runs on the real
test database and on the in-memory twin (``store`` below), reading jobs through the storage
interface; the one that needs the worker's ``infeasible`` report runs on the database only."""

from __future__ import annotations

import itertools
import uuid

import pytest

from service.orchestrator.driver import StudyDriver
from service.orchestrator.suggest import Suggester
from tests.service.test_driver import count, docs, make_study
from trials.budget import Budget
from trials.memory import MemoryStore
from trials.scheduling import rung_scores
from trials.states import JobKind, JobState, StudyState
from trials.store import Store

DISCRETE = {"model": "sru", "params": {  # 8 configurations
    "phi_size": {"type": "choice", "options": [8, 16]},
    "r_size": {"type": "choice", "options": [0, 2]},
    "lr": {"type": "choice", "options": [0.001, 0.01]},
    "out_size": 8, "alphas": [0.0, 0.5], "batch_size": 256}}


@pytest.fixture(params=["mongo", "memory"])
def store(request):  # noqa: ANN201
    """The store on the real test database, then the in-memory twin."""
    if request.param == "memory":
        return MemoryStore(heartbeat_interval=0.5, max_retries=2)
    s = Store(request.getfixturevalue("db"), heartbeat_interval=0.5, max_retries=2)
    s.ensure_indexes()
    return s


def acc(tid: int, epoch: int) -> float:
    """A made-up learning curve: trials differ by tid, and all improve with epochs."""
    return round(0.3 + 0.5 * ((tid * 7919) % 13) / 13 + 0.01 * epoch, 4)


def work(store, sid: str, owner: str = "w:1:cpu:x"):  # noqa: ANN201
    """Play a worker for one job: reserve it, train to its limit (or the top), pause or finish
    with the fields the real worker reports. None when the queue is empty."""
    job = store.work.reserve(owner, token=uuid.uuid4().hex, sid=sid)
    if job is None:
        return None
    stop = job.limit if job.pauses else job.epochs
    curve = [{"epoch": e, "val_acc": acc(job.tid, e)} for e in range(1, stop + 1)]
    result = {"best_val_acc": curve[-1]["val_acc"], "best_epoch": stop, "epochs_run": stop,
              "resumed_from": job.snapshot_epoch, "seconds": 0.1 * stop}
    if job.rungs:
        result["rung_scores"] = rung_scores(curve, [*job.rungs, job.epochs])
    if job.pauses:
        assert store.work.pause(job, result)
    else:
        assert store.work.finish(job, result, "ok")
    return job


def run_to_the_end(store, sid: str, budget: float | None = None, passes: int = 400) -> None:
    d = StudyDriver(store, sid, fail_fast=0)
    for _ in range(passes):
        d.step()
        if budget is not None:
            committed = Budget.of(store.studies.get(sid), d.cache.of_kind(JobKind.TRIAL),
                                  store.studies.get(sid).grid).committed
            assert committed <= budget  # never more work than the budget pays for
        if store.studies.get(sid).state != StudyState.RUNNING:
            return
        work(store, sid)
    raise AssertionError("the search did not end")


def trials_of(store, sid: str) -> list[dict]:
    return docs(store, sid, kind="trial")


def one(store, sid: str, **where) -> dict | None:
    """The first job of the study matching ``where`` (field: value), by tid."""
    return next(iter(docs(store, sid, **where)), None)


def test_the_queue_holds_a_trial_ahead_of_the_workers(store):
    sid = make_study(store, parallelism=2, queue_ahead=1, n_trials=10)
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    assert count(store, sid, JobState.NEW) == 3
    a = store.work.reserve("w:1", token="a", sid=sid)
    b = store.work.reserve("w:2", token="b", sid=sid)
    assert store.work.finish(a, {"best_val_acc": 0.5, "epochs_run": 2}, "ok")
    # the worker that finished finds its next trial queued, with no driver pass in between
    c = store.work.reserve("w:1", token="c", sid=sid)
    assert c is not None and c.tid not in (a.tid, b.tid)
    d.step()  # the driver tops the queue up again: 2 running + 1 ahead
    assert count(store, sid, JobState.NEW) == 1
    assert count(store, sid, JobState.RUNNING) == 2


def test_four_workers_get_distinct_configurations_and_tpe_sees_liars(store):
    sid = make_study(store, space=DISCRETE, parallelism=4, queue_ahead=1, n_trials=40)
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    for _ in range(5):  # the start-up: d + 2 = 5 finished observations (3 searched params)
        work(store, sid)
        d.step()
    running = [store.work.reserve(f"w:{i}", token=f"r{i}", sid=sid) for i in range(4)]
    d.step()
    pending = [t for t in trials_of(store, sid) if t["state"] in (JobState.NEW, JobState.RUNNING)]
    assert len(pending) == 5 and all(running)
    keys = [tuple(sorted((k, str(v)) for k, v in t["params"].items())) for t in pending]
    assert len(set(keys)) == len(keys)  # no configuration queued twice while pending
    view = Suggester(store.studies.get(sid), d.cache).model_view(d.cache.of_kind(JobKind.TRIAL))
    assert view is not None
    observed = [v["result"]["loss"] for v in view if v["tid"] not in {p["tid"] for p in pending}]
    liars = [v["result"]["loss"] for v in view if v["tid"] in {p["tid"] for p in pending}]
    assert len(liars) == 5 and set(liars) == {max(observed)}  # the worst loss, not infinity


def test_tpe_waits_for_d_plus_2_finished_observations_not_counting_pending(store):
    sid = make_study(store, space=DISCRETE, parallelism=4, n_trials=40)
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    s = Suggester(store.studies.get(sid), d.cache)
    assert s.n_min == 5 and s.model_view(d.cache.of_kind(JobKind.TRIAL)) is None  # 5 pending
    for _ in range(4):
        work(store, sid)
        d.step()
    assert s.model_view(d.cache.of_kind(JobKind.TRIAL)) is None  # 4 finished + pending
    work(store, sid)
    d.cache.refresh()
    assert s.model_view(d.cache.of_kind(JobKind.TRIAL)) is not None


def _pause(store, job, scores: dict[int, float]) -> None:
    assert store.work.pause(job, {"best_val_acc": max(scores.values()), "epochs_run": job.limit,
                                  "rung_scores": {str(e): v for e, v in scores.items()}})


def test_promotions_from_a_higher_rung_are_reserved_first(store):
    sid = make_study(store, parallelism=12, queue_ahead=0, n_trials=30, trial_epochs=27,
                     scheduler={"rule": "asha", "min_epochs": 1, "reduction": 3})
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    reserve = lambda n: [store.work.reserve(f"w:{n}:{i}", token=f"{n}{i}", sid=sid)  # noqa: E731
                         for i in range(n)]
    for i, job in enumerate(reserve(9)):
        _pause(store, job, {1: 0.1 + 0.01 * i})
    d.step()  # rung 1: the best 3 of 9 go on to 3
    promoted = reserve(3)
    assert {j.limit for j in promoted} == {3}
    for i, job in enumerate(reserve(3)):  # three more reach rung 1, better than everyone
        _pause(store, job, {1: 0.9 + 0.01 * i})
    for i, job in enumerate(promoted):
        _pause(store, job, {1: 0.2, 3: 0.5 + 0.1 * i})
    d.step()  # rung 3: the best of 3 goes on to 9; rung 1: the three new ones go on to 3
    waiting = sorted((t["priority"], t["limit"]) for t in trials_of(store, sid)
                     if t["state"] == JobState.NEW and t["promotions"])
    assert waiting == [(2, 3), (2, 3), (2, 3), (3, 9)]
    assert store.work.reserve("w:x", token="x", sid=sid).limit == 9  # the higher rung first


def test_a_small_asha_study_still_ends_with_a_trial_at_the_top(store):
    """n_trials 6, rungs 1/3, top 9: two promotions to 3, none to 9 by the ASHA rule; the end of
    the search promotes the best paused trial until one reaches 9, and that one is retrained."""
    sid = make_study(store, parallelism=2, n_trials=6, trial_epochs=9,
                     scheduler={"rule": "asha", "min_epochs": 1, "reduction": 3})
    run_to_the_end(store, sid)
    ts = trials_of(store, sid)
    assert len(ts) == 6 and max(t["result"]["epochs_run"] for t in ts) == 9
    retrain = one(store, sid, kind="retrain")
    source = store.job_reads.by_id(retrain["source"])
    assert source.result.epochs_run == 9


@pytest.mark.parametrize("rule", ["asha", "hyperband"])
def test_a_budget_is_never_exceeded_and_its_end_goes_to_the_top(store, rule):
    sid = make_study(store, parallelism=3, n_trials=None, budget={"epochs": 100},
                     trial_epochs=9, scheduler={"rule": rule, "min_epochs": 1, "reduction": 3})
    run_to_the_end(store, sid, budget=100)
    ts = trials_of(store, sid)
    spent = sum(t["result"].get("epochs_run") or 0 for t in ts)
    assert 100 - 9 <= spent <= 100  # (almost) all of it spent, never more
    assert any(t["result"].get("epochs_run") == 9 for t in ts)
    summary = store.studies.get(sid).summary
    assert summary["budget_epochs"] == 100 and summary["epochs_spent"] == spent
    assert len(ts) > 100 / 9  # the saving went to more configurations


def test_a_budget_without_rungs_starts_only_whole_trials(store):
    sid = make_study(store, parallelism=2, n_trials=None, budget={"epochs": 25},
                     trial_epochs=4)
    run_to_the_end(store, sid, budget=25)
    ts = trials_of(store, sid)
    assert len(ts) == 6 and all(t["result"]["epochs_run"] == 4 for t in ts)  # 6 x 4 <= 25


def test_budget_and_n_trials_end_at_whichever_comes_first(store):
    sid = make_study(store, parallelism=2, n_trials=3, budget={"epochs": 1000}, trial_epochs=4)
    run_to_the_end(store, sid)
    assert len(trials_of(store, sid)) == 3


def test_summary_reports_rung_fidelity_and_advice(store):
    sid = make_study(store, parallelism=2, n_trials=40, trial_epochs=9,
                     scheduler={"rule": "asha", "min_epochs": 1, "reduction": 3})
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    # trials whose rung-1 score is the reverse of their top score
    for tid in itertools.islice(itertools.count(), 12):
        job = store.work.reserve("w:1", token=f"f{tid}", sid=sid)
        scores = {"1": 0.9 - 0.01 * tid, "3": 0.5, "9": 0.5 + 0.01 * tid}
        store.work.finish(job, {"best_val_acc": scores["9"], "epochs_run": 9,
                                "rung_scores": scores}, "ok")
        d.step()
    s = store.studies.get(sid).summary
    first = s["fidelity"][0]
    assert first["epoch"] == 1 and first["pairs"] >= 8 and first["spearman"] < -0.9
    assert s["advice"] and "raise scheduler.min_epochs" in s["advice"][0]


def test_an_infeasible_trial_is_seen_by_tpe_as_the_worst_and_is_never_the_best(db):
    """The model raised for a trial's parameters: TPE sees it with the worst observed loss
    (never as pending, never left out), and neither the summary nor the retrain picks it.
    On the database only: the in-memory twin has no worker-side ``infeasible`` report."""
    store = Store(db, heartbeat_interval=0.5, max_retries=2)
    store.ensure_indexes()
    sid = make_study(store, space=DISCRETE, parallelism=1, queue_ahead=0, n_trials=7)
    d = StudyDriver(store, sid, fail_fast=0)
    d.step()
    bad = store.work.reserve("w:1", token="bad", sid=sid)
    assert store.work.infeasible(bad, {"best_val_acc": 0.99, "epochs_run": 1},
                                 "RuntimeError: shapes do not match", "sru.py:1 in forward")
    for _ in range(6):
        d.step()
        work(store, sid)
    d.step()
    d.cache.refresh()
    docs = d.cache.of_kind(JobKind.TRIAL)
    view = Suggester(store.studies.get(sid), d.cache).model_view(docs)
    assert view is not None
    losses = {v["tid"]: v["result"]["loss"] for v in view}
    assert losses[bad.tid] == max(losses.values()) and losses[bad.tid] < 0  # finite, the worst
    summary = store.studies.get(sid).summary
    assert summary["best"]["tid"] != bad.tid and summary["counts"]["infeasible"] == 1
    assert summary["failures"]["configuration"] == 1
    assert summary["failures"]["by_kind"] == {"infeasible": 1}
    assert summary["error_groups"][0]["tids"] == [bad.tid]
    retrained = one(store, sid, kind="retrain")
    assert retrained is not None and retrained["source"] not in (None, bad.id)


def test_a_study_trial_timeout_reaches_its_trials_and_not_its_retrains(store):
    sid = make_study(store, parallelism=1, queue_ahead=0, n_trials=1, trial_timeout=90.5)
    run_to_the_end(store, sid)
    trial = one(store, sid, kind="trial")
    assert trial["timeout"] == 90.5
    retrain = one(store, sid, kind="retrain")
    assert retrain is not None and retrain["timeout"] is None


@pytest.mark.parametrize("rule", ["asha", "hyperband"])
@pytest.mark.parametrize(("top", "budget"), [(9, 9), (9, 10), (9, 12), (9, 18), (27, 30),
                                             (27, 36), (27, 54)])
def test_a_tight_budget_starts_and_cuts_no_segment_during_the_search(store, rule, top,
                                                                       budget):
    """Budgets of one to two trial_epochs (found in review): at budget = trial_epochs the
    reserve of a whole trial blocked the first configuration and the study failed; Hyperband
    cut a first segment below its bracket's first rung, and promotions were cut between rungs
    during the search: such a trial paused where no rung promotes it. Now the study starts,
    never trains past its budget, and only the end of the search cuts (at most one trial)."""
    sid = make_study(store, parallelism=2, n_trials=None, budget={"epochs": budget},
                     trial_epochs=top, scheduler={"rule": rule, "min_epochs": 1, "reduction": 3})
    run_to_the_end(store, sid, budget=budget)
    assert store.studies.get(sid).state == StudyState.RETRAINING  # searched, not failed
    ts = trials_of(store, sid)
    spent = [t["result"]["epochs_run"] for t in ts]
    assert sum(spent) <= budget and max(spent) >= 3
    off_rung = [e for e in spent if e not in store.studies.get(sid).grid + [top]]
    assert len(off_rung) <= 1, spent  # the end's cut, if any
    if budget == top:  # one configuration, trained to the top
        assert spent == [top]
