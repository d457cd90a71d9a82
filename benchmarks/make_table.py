"""Make a learning-curve table of the real objective: SRU configurations trained on digits.

Every configuration is drawn from a built-in space (hyperopt's own sampler, seeded), then
trained with the project's real ``workers.train.train`` once per training seed for ``--epochs``
epochs, one single-threaded process per core. Each run records, per epoch, the validation
accuracy and loss, the training loss and the wall time; at the end its status (ok or diverged,
and why), the parameter count and the test accuracy of its best-validation weights (never used by
the replay benchmark to select anything; README: Search quality).

The run resumes where it stopped: every finished (configuration, seed) run is appended to
``<out>.partial.jsonl`` (git-ignored) and skipped when the command is run again; the table
(gzipped JSON, committed) is written from it at the end.

    python benchmarks/make_table.py [--space sru_digits_wide] [--configs 240] [--seeds 2]
        [--epochs 27] [--procs 2] [--out benchmarks/tables/sru_digits_wide.json.gz]
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE_SEED = 2026  # the configurations are the first --configs draws of this seed
DATASET = "digits"
FORMAT = 1


def _round(v: float) -> float:
    return float(f"{v:.5g}")


def run_one(task: tuple[int, dict[str, Any], int, int]) -> dict[str, Any]:
    """Train configuration ``row`` with training seed ``seed``: one line of the partial file."""
    import torch

    from workers.train import train

    torch.set_num_threads(1)
    row, params, seed, epochs = task
    t0 = time.perf_counter()
    r = train({**params, "model": "sru", "dataset": DATASET, "seed": seed}, epochs=epochs,
              evaluate_test=True)
    return {"row": row, "seed": seed, "status": r.status, "reason": r.reason,
            "n_params": r.n_params, "test_acc": r.test_acc, "best_epoch": r.best_epoch,
            "val_acc": [_round(p["val_acc"]) for p in r.curve],
            "val_loss": [_round(p["val_loss"]) for p in r.curve],
            "train_loss": [_round(p["train_loss"]) for p in r.curve],
            "seconds": [_round(p["seconds"]) for p in r.curve],
            "wall": _round(time.perf_counter() - t0)}


def _done(partial: Path) -> dict[tuple[int, int], dict[str, Any]]:
    out: dict[tuple[int, int], dict[str, Any]] = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: run it again
                continue
            out[(d["row"], d["seed"])] = d
    return out


def build_table(space: dict[str, Any], configs: list[dict[str, Any]], seeds: Iterable[int],
                epochs: int, out: Path, procs: int = 2, meta: dict[str, Any] | None = None,
                log=print) -> dict[str, Any]:  # noqa: ANN001
    """Train every (configuration, seed) not yet in ``<out>.partial.jsonl`` and write the table
    to ``out``; returns it."""
    seeds = list(seeds)
    partial = out.with_name(out.name + ".partial.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(partial)
    todo = [(i, c, s, epochs) for i, c in enumerate(configs) for s in seeds if (i, s) not in done]
    log(f"{len(done)} runs already done, {len(todo)} to go on {procs} process(es)")
    t0 = time.monotonic()
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the pool: one core per process
    try:
        with mp.get_context("spawn").Pool(procs) as pool, partial.open("a") as f:
            for k, rec in enumerate(pool.imap_unordered(run_one, todo), 1):
                f.write(json.dumps(rec) + "\n")
                f.flush()
                done[(rec["row"], rec["seed"])] = rec
                if k % 10 == 0 or k == len(todo):
                    rate = (time.monotonic() - t0) / k
                    log(f"  {k}/{len(todo)} runs, {rate:.1f} s each, "
                        f"{rate * (len(todo) - k) / 60:.0f} min left", flush=True)
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads
    table = {"format": FORMAT, "dataset": DATASET, "model": "sru", "epochs": epochs,
             "seeds": seeds, "space": space, **(meta or {}),
             "configs": [{"params": c, "runs": [_strip(done[(i, s)]) for s in seeds]}
                         for i, c in enumerate(configs)]}
    with gzip.open(out, "wt") as g:
        json.dump(table, g, separators=(",", ":"))
    return table


def _strip(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != "row"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="sru_digits_wide")
    ap.add_argument("--configs", type=int, default=240)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=27)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from search_spaces.schema import load_builtin, sample_params

    spec = load_builtin(args.space)
    configs = sample_params(spec, args.configs, seed=SAMPLE_SEED)
    out = args.out or ROOT / "benchmarks" / "tables" / f"{args.space}.json.gz"
    command = " ".join(["python benchmarks/make_table.py", *sys.argv[1:]])
    t0 = time.monotonic()
    build_table(spec.model_dump(), configs, range(args.seeds), args.epochs, out, args.procs,
                meta={"space_name": args.space, "sample_seed": SAMPLE_SEED, "command": command,
                      "torch": torch.__version__, "python": platform.python_version(),
                      "threads_per_run": 1})
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
