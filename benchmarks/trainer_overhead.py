"""What training in the trainer child costs: a 1-epoch digits trial in this process against the
same trial sent to a warm trainer (workers/trainer.py), interleaved, same parameters and seed.

Timed on each side: from the call to the result of ``train(params, epochs=1)`` with the worker's
callbacks (an epoch point, a snapshot request answered "go on"). In process: ``train()`` called
directly, datasets already cached. In the trainer: the request pickled to the child, the same
``train()`` there (datasets cached there too), every epoch/ask/progress message over the socket
pair and the parent's answers, and the result back. The trainer's start (once per worker, about
the time of importing torch) is measured and printed apart; no database on either side (the
worker's database writes are the same in both). Prints ``ratio trainer/in-process``
(target ≤ 1.05).

    python benchmarks/trainer_overhead.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.train import get_data, train  # noqa: E402
from workers.trainer import Trainer, Watchdog  # noqa: E402

PARAMS = {"model": "sru", "dataset": "digits", "phi_size": 64, "r_size": 16, "out_size": 64,
          "batch_size": 32, "lr": 0.003, "seed": 0}


def in_process() -> float:
    t0 = time.perf_counter()
    train(PARAMS, epochs=1, device="cpu", on_epoch=lambda p: None, should_stop=lambda: False,
          on_snapshot=lambda d, e: None, snapshot_every=60.0, on_step=lambda: None)
    return time.perf_counter() - t0


def in_trainer(trainer: Trainer) -> float:
    t0 = time.perf_counter()
    ending = trainer.run(("train", {"params": PARAMS, "epochs": 1, "snapshot_every": 60.0}),
                         lambda msg: False, Watchdog(300.0))
    assert ending.how == "done", ending
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    get_data("digits", __import__("torch").device("cpu"))  # cached, as in a worker
    trainer = Trainer("cpu")
    t0 = time.perf_counter()
    in_trainer(trainer)  # starts the child and loads its datasets
    first = time.perf_counter() - t0
    here, there = [], []
    try:
        for _ in range(args.rounds):
            here.append(in_process())
            there.append(in_trainer(trainer))
    finally:
        trainer.close()
    a, b = statistics.median(here), statistics.median(there)
    print(f"1-epoch digits trial (phi 64, r 16, out 64, batch 32), {args.rounds} rounds each, "
          f"interleaved")
    print(f"  in process:  median {a * 1000:.0f} ms")
    print(f"  in trainer:  median {b * 1000:.0f} ms (first job, trainer start included: "
          f"{first:.1f} s, once per worker)")
    print(f"ratio trainer/in-process = {b / a:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
