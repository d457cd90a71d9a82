"""The whole trial lifecycle, sru-hpo against Optuna, like for like, side by side in one run.

**What is timed on each side** (from one start signal until the last trial is finished):

- every trial is suggested by TPE over the whole history (d + 2 = 11 random start-up trials on
  both sides, d = the 9 searched parameters: sru-hpo's rule, and Optuna's ``n_startup_trials``
  set to match), its parameters written, taken by one of ``--procs`` worker processes, given
  ``--points`` curve points (intermediate values), and finished with a result;
- the objective is the same cheap function of the parameters (no training), over the same
  ``sru_mnist`` space;
- sru-hpo: the real study driver (``service.orchestrator.driver.StudyDriver`` under the real
  ``DriverManager``) in this process, on the embedded nx-27017 (or ``SRU_HPO_MONGO_URL``), the
  study's queue kept ``queue_ahead`` (1, the default) trials ahead of the workers;
  ``--procs`` worker processes that reserve, claim the curve, add points and finish through the
  same store calls the real worker makes (``workers/trial.py``), but skip torch training;
- Optuna: ``--procs`` processes each running ``study.optimize`` (TPESampler, ``n_startup_trials``
  20) with ``trial.report`` for each point, on SQLite and on the JournalFileBackend.

It prints trials/s for each and ``ratio lifecycle sru-hpo/optuna-sqlite = X`` twice: with the
service's default polls (driver 0.5 s, worker backoff 5 ms -> 0.5 s) and with fast polls (0.01 s).

Then the cost of **one suggestion** with 100, 1,000 and 3,000 finished trials in the history:
``StudyDriver.step()`` (lease, incremental refresh, TPE, insert; ``queue_ahead`` 0, so that each
pass makes exactly one suggestion) against Optuna's ``study.ask()``
(SQLite and in memory), on the same space, printed as ``ratio suggest@3000 sru-hpo/optuna-sqlite``.

    python benchmarks/lifecycle.py [--trials 300] [--procs 2] [--points 5] [--quick]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STARTUP = 11  # d + 2 for the 9 searched parameters of sru_mnist (sru-hpo's start-up rule)
SPACE = "sru_mnist"


def objective(params: dict) -> float:
    """A cheap deterministic 'validation accuracy' of a configuration (best near lr 3e-3)."""
    lr = float(params.get("lr", 1e-3))
    return 0.9 - 0.05 * (math.log10(lr) + 2.5) ** 2 - 0.0001 * abs(params.get("phi_size", 128) - 192)


# -- sru-hpo ---------------------------------------------------------------------------------------
def _sru_worker(url: str, db: str, points: int, poll: float, start, out) -> None:
    from trials.store import Store

    store = Store.connect(url, db)
    owner = f"bench:{os.getpid()}:cpu:x"
    start.wait()
    done, wait = 0, 0.005
    while True:
        job = store.work.reserve(owner, token=uuid.uuid4().hex)
        if job is None:
            if store.studies.get("bench").state not in ("queued", "running"):
                break
            if wait == 0.005:  # went idle: tell the driver a slot is free
                store.studies.nudge()
            time.sleep(wait)
            wait = min(wait * 2, poll)
            continue
        wait = 0.005
        store.curves.claim(job.id, job.attempt, [])
        acc = objective(job.params)
        for e in range(1, points + 1):
            store.curves.add(job.id, job.attempt, {"epoch": e, "val_acc": acc * e / points,
                                                   "train_loss": 1.0, "val_loss": 1.0,
                                                   "lr": 0.001, "seconds": 0.0})
        store.work.finish(job, {"best_val_acc": acc, "epochs_run": points}, "ok")
        store.studies.nudge()
        done += job.kind == "trial"  # the retrain that follows the search is not counted
    out.put(done)


def bench_sru(url: str, n: int, procs: int, points: int, poll: float) -> float:
    from service.orchestrator.drivers import DriverManager
    from service.studies.schemas import StudyCreate
    from trials.store import Store

    db = f"bench_{uuid.uuid4().hex[:8]}"
    store = Store.connect(url, db)
    store.ensure_indexes()
    body = StudyCreate.model_validate({"name": "bench", "model": "sru", "dataset": "digits",
                                       "space": SPACE, "n_trials": n, "parallelism": procs,
                                       "trial_epochs": points, "retrain_epochs": 1})
    fields = body.model_dump()
    fields["space"] = body.spec().model_dump()
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_sru_worker, args=(url, db, points, poll, start, out))
          for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(3)  # imports and connections, outside the clock
    manager = DriverManager(store, poll=poll, lease_seconds=30, fail_fast=0)
    t0 = time.perf_counter()
    store.studies.create("bench", fields)
    manager.resume_all()
    start.set()
    while store.studies.get("bench").state in ("queued", "running"):
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    manager.stop()
    for p in ps:
        p.join(60)
    done = sum(out.get() for _ in ps)
    assert done == n, (done, n)
    store.db.client.drop_database(db)
    return n / wall


# -- Optuna ----------------------------------------------------------------------------------------
def _optuna_space(trial):  # the sru_mnist space, as Optuna suggestions
    return {
        "phi_size": trial.suggest_int("phi_size", 64, 256, step=16),
        "r_size": trial.suggest_int("r_size", 0, 128, step=8),
        "out_size": trial.suggest_int("out_size", 64, 256, step=16),
        "alphas": trial.suggest_categorical("alphas", [0, 1, 2, 3]),
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "lr_decay": trial.suggest_float("lr_decay", 0.9, 1.0),
        "weight_decay": trial.suggest_categorical("weight_decay", [0.0, 1e-6, 1e-5]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
    }


def _optuna_storage(kind: str, path: str):
    import optuna

    if kind == "sqlite":
        return f"sqlite:///{path}"
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(path))


def _optuna_worker(kind: str, path: str, n: int, points: int, seed: int, start, out) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="bench", storage=_optuna_storage(kind, path),
                              sampler=optuna.samplers.TPESampler(n_startup_trials=STARTUP,
                                                                 seed=seed))

    def obj(trial):
        acc = objective(_optuna_space(trial))
        for e in range(1, points + 1):
            trial.report(acc * e / points, e)
        return acc

    start.wait()
    study.optimize(obj, n_trials=n)
    out.put(n)


def bench_optuna(kind: str, n: int, procs: int, points: int, folder: Path) -> float:
    import optuna

    path = str(folder / f"optuna-{kind}-{uuid.uuid4().hex[:6]}.db")
    optuna.create_study(study_name="bench", storage=_optuna_storage(kind, path),
                        direction="maximize")
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    share = [n // procs + (i < n % procs) for i in range(procs)]
    ps = [ctx.Process(target=_optuna_worker, args=(kind, path, share[i], points, i, start, out))
          for i in range(procs)]
    for p in ps:
        p.start()
    time.sleep(3)
    t0 = time.perf_counter()
    start.set()
    done = sum(out.get() for _ in ps)
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    assert done == n
    return n / wall


# -- one suggestion at a given history size --------------------------------------------------------
def _history_docs(store, sid: str, n: int, spec, domain) -> None:
    """``n`` finished trials drawn at random from the space, inserted as the driver would."""
    from hyperopt import rand, space_eval

    from search_spaces.schema import flatten_sample
    from trials.cache import TrialCache
    from trials.mongo_trials import MongoTrials
    from trials.states import JobState

    trials = MongoTrials(TrialCache(store, sid))
    tids = trials.new_trial_ids(n)
    docs = rand.suggest(tids, domain, trials, seed=1)
    for d in docs:
        vals = {k: v[0] for k, v in d["misc"]["vals"].items() if v}
        params = flatten_sample(spec, space_eval(domain.expr, vals))
        acc = objective(params)
        d.update(store.jobs.job_fields(kind="trial", params=params, epochs=5))
        d.update(state=int(JobState.DONE), outcome="ok", score=acc,
                 result={"status": "ok", "loss": -acc, "best_val_acc": acc, "epochs_run": 5})
    for i in range(0, n, 500):
        trials.insert_trial_docs(docs[i:i + 500])  # hyperopt's SONify makes numpy values plain
    # a history is old: written long before the driver's overlap window (trials/cache.py)
    store.db.jobs.update_many({"exp_key": sid}, {"$inc": {"updated": -3600.0}})


def suggest_sru(url: str, n: int, reps: int) -> float:
    from hyperopt import Domain

    from search_spaces.schema import load_builtin, to_hyperopt
    from service.orchestrator.driver import StudyDriver
    from service.studies.schemas import StudyCreate
    from trials.store import Store

    db = f"bench_{uuid.uuid4().hex[:8]}"
    store = Store.connect(url, db)
    store.ensure_indexes()
    spec = load_builtin(SPACE)
    body = StudyCreate.model_validate({"name": "s", "model": "sru", "dataset": "digits",
                                       "space": SPACE, "n_trials": n + reps + 5,
                                       "parallelism": 1, "queue_ahead": 0, "trial_epochs": 5,
                                       "retrain_epochs": 1})
    fields = body.model_dump()
    fields["space"] = spec.model_dump()
    store.studies.create("s", fields)
    _history_docs(store, "s", n, spec, Domain(lambda p: 0, to_hyperopt(spec)))
    driver = StudyDriver(store, "s", fail_fast=0)
    driver.step()  # the cold load and the first suggestion, outside the clock
    times = []
    for _ in range(reps):
        job = store.work.reserve("bench:1:cpu:x", token=uuid.uuid4().hex)  # outside the clock:
        store.work.finish(job, {"best_val_acc": objective(job.params)}, "ok")  # a trial ends
        t0 = time.perf_counter()
        driver.step()  # lease, incremental refresh, one TPE suggestion, insert, summary
        times.append(time.perf_counter() - t0)
        assert store.db.jobs.count_documents({"exp_key": "s", "state": 0}) == 1  # it suggested
    store.db.client.drop_database(db)
    return statistics.median(times)


def suggest_optuna(n: int, reps: int, storage) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(n_startup_trials=STARTUP,
                                                                   seed=0))
    rand = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(n):  # the same kind of history: n random finished trials
        t = rand.ask()
        params = _optuna_space(t)
        rand.tell(t, objective(params))
    study.add_trials(rand.trials)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        t = study.ask()
        _optuna_space(t)  # sampling happens as the parameters are asked for
        times.append(time.perf_counter() - t0)
        study.tell(t, 0.5)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--points", type=int, default=5)
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes (the test suite's dry run)")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.sizes, args.reps = 30, "30", 2
    from service.launcher.embedded_db import EmbeddedMongo

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = os.environ.get("SRU_HPO_MONGO_URL")
        server = None if url else EmbeddedMongo(folder / "nx").start()
        url = url or server.url
        try:
            print(f"lifecycle: {args.trials} trials, {args.procs} processes, {args.points} points "
                  f"each, TPE with {STARTUP} start-up trials; database {url}")
            results = {}
            for label, poll in (("default polls", 0.5), ("fast polls", 0.01)):
                sru = bench_sru(url, args.trials, args.procs, args.points, poll)
                results[label] = sru
                print(f"  sru-hpo ({label}): {sru:.1f} trials/s")
            sqlite = bench_optuna("sqlite", args.trials, args.procs, args.points, folder)
            journal = bench_optuna("journal", args.trials, args.procs, args.points, folder)
            print(f"  optuna + SQLite: {sqlite:.1f} trials/s; optuna + JournalFileBackend: "
                  f"{journal:.1f} trials/s")
            for label, sru in results.items():
                print(f"ratio lifecycle sru-hpo/optuna-sqlite = {sru / sqlite:.2f} ({label})")
                print(f"ratio lifecycle sru-hpo/optuna-journal = {sru / journal:.2f} ({label})")
            print("one suggestion (median ms) by finished trials in the history:")
            print("  finished | sru-hpo | optuna sqlite | optuna memory")
            last = None
            for n in (int(x) for x in args.sizes.split(",")):
                s = suggest_sru(url, n, args.reps) * 1000
                q = suggest_optuna(n, args.reps, f"sqlite:///{folder}/s{n}.db") * 1000
                m = suggest_optuna(n, args.reps, None) * 1000
                print(f"  {n:8d} | {s:7.1f} | {q:13.1f} | {m:13.1f}")
                last = (n, s, q)
            if last:
                print(f"ratio suggest@{last[0]} sru-hpo/optuna-sqlite = {last[1] / last[2]:.2f}")
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
