"""Curve writes stay flat as the database grows: the median time of one curve point write
(``CurveStore.add``: one update by ``_id``, fenced by the attempt) with 100, 5,000 and 50,000
points already stored, on the embedded database. Printed: ms per write at each size and
``ratio curve write 50000/100 = X``.

    python benchmarks/curve_writes.py [--reps 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def point(e: int) -> dict:
    return {"epoch": e, "val_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0, "lr": 1e-3,
            "seconds": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    from service.launcher.embedded_db import EmbeddedMongo
    from trials.store import Store

    with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp) / "nx") as server:
        store = Store.connect(server.url, f"cw_{uuid.uuid4().hex[:6]}")
        store.ensure_indexes()
        stored, results, tid = 0, {}, 0
        for target in (100, 5_000, 50_000):
            while stored < target:  # trials of 50 epochs, written as workers write them
                store.jobs.enqueue("s", kind="trial", params={}, epochs=50)
                store.curves.claim(f"s:{tid}", 1, [point(e) for e in range(1, 51)])
                stored, tid = stored + 50, tid + 1
            store.jobs.enqueue("s", kind="trial", params={}, epochs=10 ** 6)
            probe = f"s:{tid}"
            store.curves.claim(probe, 1, [])
            times = []
            for e in range(1, args.reps + 1):
                t0 = time.perf_counter()
                store.curves.add(probe, 1, point(e))
                times.append(time.perf_counter() - t0)
            tid += 1
            results[target] = statistics.median(times) * 1000
            print(f"  {target:6d} points stored: {results[target]:.2f} ms per curve write")
        print(f"ratio curve write 50000/100 = {results[50_000] / results[100]:.2f}")


if __name__ == "__main__":
    main()
