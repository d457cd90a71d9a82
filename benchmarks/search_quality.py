"""Search quality per epoch spent: how many training epochs each strategy needs to find a good
SRU, side by side in one run, on the real objective.

**Setup.** The objective is real: an SRU trained on scikit-learn's digits on the CPU (small sizes,
an epoch is ~0.2 s), validation accuracy after every epoch. Every strategy gets the same space
(below), the same ``--trials`` configurations of at most ``--epochs`` epochs, and each of
``--seeds`` seeds. The sru-hpo strategies run through the real service parts: the study driver
in this process and ``--workers`` real ``sru-hpo worker`` processes on the embedded database; each
study ends with the top-1 retrain (``--epochs`` epochs) and its one test evaluation.

**Strategies.** random; TPE with no early stopping; TPE + median rule (warm-up 3); TPE + ASHA
(promotion, min_epochs 1, η 3); TPE + Hyperband (same rungs); Optuna ``TPESampler`` +
``HyperbandPruner`` (min_resource 1, reduction 3) on the same objective, in this process.

**What is counted.** An epoch is one pass over the training split by any trial (retrains and
test evaluations are not counted). Best-so-far validation accuracy is followed against the
cumulative epoch count in the order the epochs finished.

**Output.** Per strategy (mean over seeds): final best validation accuracy, total epochs, the
epochs needed to reach plain TPE's final best (per seed, then the median; "inf" when it never
did in most seeds), the retrained test accuracy; ``search_quality.png``; and the lines
``ratio epochs asha/tpe = X`` and ``ratio epochs asha/optuna = Y``.

    python benchmarks/search_quality.py [--seeds 3] [--trials 30] [--epochs 27] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = {"model": "sru", "params": {
    "phi_size": {"type": "quniform", "low": 16, "high": 48, "q": 16},
    "r_size": {"type": "quniform", "low": 0, "high": 16, "q": 8},
    "out_size": 32,
    "alphas": {"type": "choice", "options": [[0.0, 0.5, 0.9, 0.99], [0.0, 0.25, 0.5, 0.9]]},
    "lr": {"type": "loguniform", "low": 1e-3, "high": 5e-2},
    "lr_decay": {"type": "uniform", "low": 0.9, "high": 1.0},
    "batch_size": 256,
}}
OURS = {
    "random": {"algorithm": "random", "scheduler": {"rule": "off"}},
    "tpe": {"algorithm": "tpe", "scheduler": {"rule": "off"}},
    "tpe+median": {"algorithm": "tpe", "scheduler": {"rule": "median", "warmup": 3,
                                                     "min_trials": 3}},
    "tpe+asha": {"algorithm": "tpe", "scheduler": {"rule": "asha", "min_epochs": 1,
                                                   "reduction": 3}},
    "tpe+hyperband": {"algorithm": "tpe", "scheduler": {"rule": "hyperband", "min_epochs": 1,
                                                        "reduction": 3}},
}


def best_so_far(points: list[tuple[float, float]]) -> list[float]:
    """``points``: (when, val_acc) of every trial epoch; best-so-far after each epoch, in the
    order the epochs finished."""
    out, best = [], 0.0
    for _, acc in sorted(points):
        best = max(best, acc)
        out.append(best)
    return out


def epochs_to_reach(curve: list[float], target: float) -> float:
    """Epochs until best-so-far reaches ``target``; infinity when it never does."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-12), float("inf"))


# -- sru-hpo strategies --------------------------------------------------------------------------
def run_ours(store, manager, name: str, seed: int, args) -> dict:
    from service.schemas import StudyCreate

    body = StudyCreate.model_validate({
        "name": name, "model": "sru", "dataset": "digits", "space": SPACE, "seed": seed,
        "n_trials": args.trials, "parallelism": args.workers, "trial_epochs": args.epochs,
        "retrain_epochs": args.epochs, **OURS[name]})
    fields = body.model_dump()
    fields["space"] = body.spec().model_dump()
    sid = f"{name}-{seed}-{uuid.uuid4().hex[:4]}"
    store.studies.create(sid, fields)
    manager.start(sid)
    while (s := store.studies.get(sid))["state"] in ("queued", "running", "retraining"):
        time.sleep(0.2)
    assert s["state"] == "completed", s
    points = []
    for d in store.curves.changed(sid, -1.0, 100_000):
        if d["kind"] == "trial":
            points += [(p["at"], p["val_acc"]) for p in d["points"].values()]
    test = store.jobs.page(sid, state=None, kind="test", by_score=False, offset=0, limit=1)[0]
    return {"curve": best_so_far(points), "test_acc": test["result"]["test_acc"]}


# -- Optuna ------------------------------------------------------------------------------------------
def run_optuna(seed: int, args) -> dict:
    import optuna
    import torch

    from workers.train import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    points: list[tuple[float, float]] = []

    def objective(trial):
        params = {"model": "sru", "dataset": "digits", "seed": seed, "out_size": 32,
                  "batch_size": 256,
                  "phi_size": trial.suggest_int("phi_size", 16, 48, step=16),
                  "r_size": trial.suggest_int("r_size", 0, 16, step=8),
                  "alphas": SPACE["params"]["alphas"]["options"][
                      trial.suggest_categorical("alphas", [0, 1])],
                  "lr": trial.suggest_float("lr", 1e-3, 5e-2, log=True),
                  "lr_decay": trial.suggest_float("lr_decay", 0.9, 1.0)}

        def on_epoch(p):
            points.append((time.monotonic(), p["val_acc"]))
            trial.report(p["val_acc"], p["epoch"])

        r = train(params, epochs=args.epochs, on_epoch=on_epoch, should_stop=trial.should_prune)
        return r.best_val_acc

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.epochs,
                                              reduction_factor=3))
    study.optimize(objective, n_trials=args.trials)
    return {"curve": best_so_far(points), "test_acc": None}


# -- report ---------------------------------------------------------------------------------------
def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, runs in results.items():
        n = max(len(r["curve"]) for r in runs)
        mean = [statistics.mean(r["curve"][min(i, len(r["curve"]) - 1)] for r in runs)
                for i in range(n)]
        ax.plot(range(1, n + 1), mean, label=name, lw=2 if "asha" in name else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative training epochs (log scale)")
    ax.set_ylabel("best validation accuracy so far (mean over seeds)")
    ax.set_title("search quality per epoch: SRU on digits")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict[str, list[dict]], out: Path) -> None:
    targets = [r["curve"][-1] for r in results["tpe"]]  # plain TPE's final best, per seed
    need = {name: statistics.median(epochs_to_reach(r["curve"], t)
                                    for r, t in zip(runs, targets, strict=True))
            for name, runs in results.items()}
    print(f"{'strategy':16s} {'final best val':>14s} {'epochs':>7s} {'to TPE best':>11s} "
          f"{'retrain test':>12s}")
    for name, runs in results.items():
        tests = [r["test_acc"] for r in runs if r["test_acc"] is not None]
        print(f"{name:16s} {statistics.mean(r['curve'][-1] for r in runs):14.4f} "
              f"{statistics.mean(len(r['curve']) for r in runs):7.0f} {need[name]:11.0f} "
              f"{statistics.mean(tests) if tests else float('nan'):12.4f}")
    plot(results, out / "search_quality.png")
    print(f"plot: {out / 'search_quality.png'}")
    print(f"ratio epochs asha/tpe = {need['tpe+asha'] / need['tpe']:.2f}")
    print(f"ratio epochs asha/optuna = {need['tpe+asha'] / need['optuna tpe+hyperband']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=27)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    ap.add_argument("--strategies", default=",".join([*OURS, "optuna tpe+hyperband"]))
    args = ap.parse_args()
    from service.drivers import DriverManager
    from service.embedded_db import EmbeddedMongo
    from trials.store import Store

    names = args.strategies.split(",")
    results: dict[str, list[dict]] = {n: [] for n in names}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp) / "nx") as server:
        db = "quality"
        store = Store.connect(server.url, db, heartbeat_interval=10)
        store.ensure_indexes()
        env = {**os.environ, "SRU_HPO_MONGO_URL": server.url, "SRU_HPO_DB_NAME": db,
               "OMP_NUM_THREADS": "1", "SRU_HPO_SNAPSHOT_SECONDS": "600"}
        workers = [subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--device",
                                     "cpu", "--poll", "0.05"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(args.workers)]
        manager = DriverManager(store, poll=0.1, lease_seconds=30, fail_fast=0)
        manager.resume_all()
        try:
            for seed in range(args.seeds):
                for name in names:
                    t1 = time.monotonic()
                    r = (run_optuna(seed, args) if name.startswith("optuna")
                         else run_ours(store, manager, name, seed, args))
                    results[name].append(r)
                    print(f"seed {seed} {name:22s} best {r['curve'][-1]:.4f} after "
                          f"{len(r['curve'])} epochs ({time.monotonic() - t1:.0f} s)", flush=True)
        finally:
            manager.stop()
            for w in workers:
                w.terminate()
                w.wait(60)
    print(f"{args.seeds} seeds x {args.trials} configurations x at most {args.epochs} epochs; "
          f"{time.monotonic() - t0:.0f} s in all")
    report(results, args.out)


if __name__ == "__main__":
    main()
