"""The driver's incremental cache equals a cold load after new, updated, requeued and deleted
trials; hyperopt's TPE and plotting run on MongoTrials over it."""

from __future__ import annotations

import numpy as np
from hyperopt import Domain, hp, tpe

from tests.trials.test_jobs import enqueue, reserve
from trials.cache import TrialCache
from trials.mongo_trials import MongoTrials
from trials.states import JobKind


def cold(store, sid="s") -> dict:
    c = TrialCache(store, sid)
    c.refresh()
    return c.docs


def same(a: dict, b: dict) -> bool:
    strip = lambda docs: {t: {k: v for k, v in d.items() if k != "updated"}  # noqa: E731
                          for t, d in docs.items()}
    return strip(a) == strip(b)


def test_incremental_refresh_equals_a_cold_load(store, db):
    cache = TrialCache(store, "s", resync=1e9)  # never a full reload by time
    for _ in range(4):
        enqueue(store)
    cache.refresh(full=True)
    assert same(cache.docs, cold(store))
    a, b = reserve(store, "h:1:cpu"), reserve(store, "h:2:cpu")  # updated
    store.work.finish(a, {"best_val_acc": 0.7}, "ok")
    enqueue(store)  # new
    store.work.release(b)  # back to new
    c = reserve(store, "h:3:cpu")
    store.upkeep.requeue_stale(db.jobs.find_one({"_id": c.id}), "test")  # requeued
    read = cache.refresh()
    assert 0 < read < 5 + 1  # only what changed (within the overlap window), not a reload
    assert same(cache.docs, cold(store))
    db.jobs.delete_one({"_id": f"s:{a.tid}"})  # deleted behind its back: the full reload sees it
    cache.refresh(full=True)
    assert a.tid not in cache.docs and same(cache.docs, cold(store))


def views(cache: TrialCache) -> tuple:
    return cache.counts(), [t.tid for t in cache.of_kind(JobKind.TRIAL)], cache.version


def test_views_are_computed_once_per_change_and_follow_every_change(store, db):
    """counts and of_kind are memoized per version of the cache: a refresh that brings nothing
    new keeps them, any change (new, updated, deleted) recomputes them."""
    cache = TrialCache(store, "s", resync=1e9)
    for _ in range(3):
        enqueue(store)
    cache.refresh()
    first = views(cache)
    assert first[0]["new"] == 3 and first[1] == [0, 1, 2]
    cache.refresh()  # the overlap re-reads the same documents: nothing changed
    assert views(cache) == first
    j = reserve(store)
    cache.refresh()
    counts, tids, version = views(cache)
    assert counts["new"] == 2 and counts["running"] == 1 and version > first[2]
    store.work.finish(j, {"best_val_acc": 0.5}, "ok")
    enqueue(store)
    cache.refresh()
    counts, tids, _ = views(cache)
    cold_cache = TrialCache(store, "s")
    cold_cache.refresh()
    assert counts == cold_cache.counts() and counts["done"] == 1 and counts["finished"] == 1
    assert tids == [0, 1, 2, 3]
    db.jobs.delete_one({"_id": "s:3"})
    cache.refresh(full=True)
    assert views(cache)[1] == [0, 1, 2] and cache.counts()["new"] == 2


def test_a_refresh_reads_only_recent_changes(store):
    cache = TrialCache(store, "s", overlap=0.0, resync=1e9)
    for _ in range(30):
        enqueue(store)
    cache.refresh()
    before = cache.reads
    j = reserve(store)
    store.work.finish(j, {"best_val_acc": 0.5}, "ok")
    cache.refresh()
    assert cache.reads - before == 1  # the one trial that changed
    assert cache.docs[j.tid]["result"]["best_val_acc"] == 0.5


def test_tpe_and_plotting_work_on_mongo_trials(store):
    space = {"x": hp.uniform("x", -5, 5), "k": hp.choice("k", [1, 2])}
    domain = Domain(lambda p: 0.0, space)
    cache = TrialCache(store, "study")
    trials = MongoTrials(cache)
    for i in range(25):  # a finished history, more than TPE's startup count
        (tid,) = trials.new_trial_ids(1)
        docs = tpe.suggest([tid], domain, trials, seed=i)
        for d in docs:
            d.update(store.jobs.job_fields(kind=JobKind.TRIAL.value, params={}, epochs=1))
        trials.insert_trial_docs(docs)
        job = reserve(store, sid="study")
        x = cache.docs[job.tid]["misc"]["vals"]["x"][0]
        store.work.finish(job, {"best_val_acc": float(np.exp(-x * x))}, "ok")  # best at x = 0
        cache.refresh()
        trials.refresh()
    assert len(trials) == 25
    losses = trials.losses()
    assert all(loss is not None for loss in losses)
    assert trials.best_trial["result"]["loss"] == min(losses)
    # TPE's suggestions after its 20 random start-up trials sit nearer the optimum x = 0 than
    # uniform sampling on [-5, 5] does (mean |x| = 2.5)
    xs = [t["misc"]["vals"]["x"][0] for t in trials.trials]
    assert np.mean(np.abs(xs[-5:])) < 1.5
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hyperopt import plotting

    plotting.main_plot_history(trials, do_show=False)
    ys = plt.gca().collections[0].get_offsets()[:, 1]
    assert sorted(ys) == sorted(losses)
    plt.close("all")
    store.jobs.enqueue("study", kind="retrain", params={}, epochs=5)  # not search history
    cache.refresh()
    trials.refresh()
    assert len(trials) == 25
