"""Queue throughput: N trivial jobs through the real trial store with K worker processes on the
embedded database, against the same work through Optuna with an SQLite storage and K processes,
side by side in one run.

For each: jobs/s over the whole run and the median reserve->done latency of one job (for Optuna:
a trial's start->complete). No training happens; this measures the dispatch path only.

    python benchmarks/dispatch.py [--jobs 400] [--procs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path


def _timed_run(ps: list, start, out, n_jobs: int) -> float:
    """Start the processes, let them import and connect, then time them from one start signal
    until all have reported; returns the wall time."""
    for p in ps:
        p.start()
    time.sleep(3)
    t0 = time.perf_counter()
    start.set()
    done = sum(out.get() for _ in ps)
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    assert done == n_jobs, (done, n_jobs)
    return wall


def _store_worker(url: str, db_name: str, start, out) -> None:
    from pymongo import MongoClient

    from trials.store import JobStore

    store = JobStore(MongoClient(url)[db_name])
    start.wait()
    n = 0
    while (job := store.reserve(f"bench:{mp.current_process().pid}:cpu")) is not None:
        store.finish(job, {"best_val_acc": 0.5}, "ok")
        n += 1
    out.put(n)


def bench_store(n_jobs: int, procs: int, folder: Path) -> tuple[float, float]:
    from pymongo import MongoClient

    from service.embedded_db import EmbeddedMongo
    from trials.store import JobStore

    with EmbeddedMongo(folder / "nx") as server:
        store = JobStore(MongoClient(server.url)["bench"])
        store.ensure_indexes()
        tids = store.next_tids("b", n_jobs)
        store.jobs.insert_many([
            store.new_job_doc("b", t, kind="trial", params={}, epochs=1) for t in tids
        ])
        ctx = mp.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        ps = [ctx.Process(target=_store_worker, args=(server.url, "bench", start, out))
              for _ in range(procs)]
        wall = _timed_run(ps, start, out, n_jobs)
        lat = [d["refresh_time"] - d["book_time"] for d in store.jobs.find({"state": 2})]
        return n_jobs / wall, statistics.median(lat)


def _optuna_worker(url: str, n: int, start, out) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # RandomSampler: no TPE work inside the trial loop, so both sides measure dispatch only
    study = optuna.load_study(study_name="b", storage=url, sampler=optuna.samplers.RandomSampler())
    start.wait()
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=n)
    out.put(n)


def bench_optuna(n_jobs: int, procs: int, folder: Path) -> tuple[float, float]:
    import optuna

    url = f"sqlite:///{folder / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="b", storage=url)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    share = [n_jobs // procs + (1 if i < n_jobs % procs else 0) for i in range(procs)]
    ps = [ctx.Process(target=_optuna_worker, args=(url, k, start, out)) for k in share]
    wall = _timed_run(ps, start, out, n_jobs)
    lat = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    return n_jobs / wall, statistics.median(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench_store(args.jobs, args.procs, Path(tmp))
        theirs = bench_optuna(args.jobs, args.procs, Path(tmp))
    print(f"jobs={args.jobs} processes={args.procs}")
    print(f"  sru-hpo store (nx-27017): {ours[0]:8.1f} jobs/s   median reserve->done "
          f"{ours[1] * 1000:7.2f} ms")
    print(f"  optuna + sqlite         : {theirs[0]:8.1f} jobs/s   median start->complete "
          f"{theirs[1] * 1000:7.2f} ms")
    print(f"ratio throughput sru-hpo/optuna = {ours[0] / theirs[0]:.2f}")
    print(f"ratio latency    sru-hpo/optuna = {ours[1] / theirs[1]:.2f}")


if __name__ == "__main__":
    main()
