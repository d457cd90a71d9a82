"""API read latency as a study grows: p50 per endpoint at 100 and 1,000 finished trials.

A study with N finished trials of 50 epochs (a curve point per epoch) is written into the
embedded database the way the driver and workers write it, its summary published by one real
driver pass; then a real API process (uvicorn) serves it and each endpoint is requested
``--reps`` times from this process over loopback. Printed: p50 (ms) per endpoint and size, and
the growth factor from the smallest to the largest size. ``/curves`` is shown twice: the first
page (``limit=200``), and a dashboard poll with the returned cursor (nothing changed since).

    python benchmarks/api_scale.py [--sizes 100,1000] [--reps 30]
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

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.lifecycle import SPACE, _history_docs  # noqa: E402


def build(url: str, db: str, n: int, epochs: int = 50) -> str:
    from hyperopt import Domain

    from search_spaces.schema import load_builtin, to_hyperopt
    from service.orchestrator.driver import StudyDriver
    from service.studies.schemas import StudyCreate
    from trials.store import Store

    store = Store.connect(url, db)
    store.ensure_indexes()
    spec = load_builtin(SPACE)
    body = StudyCreate.model_validate({"name": f"n{n}", "model": "sru", "dataset": "digits",
                                       "space": SPACE, "n_trials": n, "parallelism": 1,
                                       "trial_epochs": epochs, "retrain_epochs": 1})
    fields = body.model_dump()
    fields["space"] = spec.model_dump()
    sid = f"n{n}"
    store.studies.create(sid, fields)
    _history_docs(store, sid, n, spec, Domain(lambda p: 0, to_hyperopt(spec)))
    for tid in range(n):  # the curves, as the workers write them (one document per trial)
        points = [{"epoch": e, "val_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0, "lr": 1e-3,
                   "seconds": 1.0} for e in range(1, epochs + 1)]
        store.curves.claim(f"{sid}:{tid}", 1, points)
    StudyDriver(store, sid, fail_fast=0).step()  # publishes the summary (n finished: no insert)
    return sid


def p50(client: httpx.Client, path: str, reps: int, **params) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    from service.launcher.embedded_db import EmbeddedMongo, free_port

    with tempfile.TemporaryDirectory() as tmp, EmbeddedMongo(Path(tmp) / "nx") as server:
        db = f"scale_{uuid.uuid4().hex[:6]}"
        sids = {n: build(server.url, db, n) for n in sizes}
        port = free_port()
        env = {**os.environ, "SRU_HPO_MONGO_URL": server.url, "SRU_HPO_DB_NAME": db,
               "SRU_HPO_PORT": str(port), "SRU_HPO_HOME": tmp}
        api = subprocess.Popen([sys.executable, "-m", "sru_hpo", "serve"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            for _ in range(600):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            rows: dict[str, dict[int, float]] = {}
            for n, sid in sids.items():
                cursor = client.get(f"/studies/{sid}/curves", params={"limit": 200}).json()
                while cursor["more"]:
                    cursor = client.get(f"/studies/{sid}/curves", params={
                        "limit": 1000, "updated_after": cursor["cursor"]}).json()
                for name, path, params in (
                    ("/studies/ID", f"/studies/{sid}", {}),
                    ("/trials?limit=100", f"/studies/{sid}/trials", {"limit": 100}),
                    ("/trials?sort=val_acc", f"/studies/{sid}/trials",
                     {"limit": 100, "sort": "val_acc"}),
                    ("/trials/best?k=5", f"/studies/{sid}/trials/best", {"k": 5}),
                    ("/studies", "/studies", {}),
                    ("/curves first page", f"/studies/{sid}/curves", {"limit": 200}),
                    ("/curves poll (cursor)", f"/studies/{sid}/curves",
                     {"updated_after": cursor["cursor"]}),
                ):
                    rows.setdefault(name, {})[n] = p50(client, path, args.reps, **params)
        finally:
            api.terminate()
            api.wait(30)
    lo, hi = sizes[0], sizes[-1]
    print(f"API p50 (ms), {args.reps} requests each, finished trials of 50 epochs:")
    print(f"  {'endpoint':24s} " + " ".join(f"{n:>9d}" for n in sizes) + "   growth")
    for name, by in rows.items():
        print(f"  {name:24s} " + " ".join(f"{by[n]:9.1f}" for n in sizes)
              + f"   {by[hi] / by[lo]:.2f}x")
    paged = ("/studies/ID", "/trials?limit=100", "/trials/best?k=5", "/studies")
    worst = max(rows[k][hi] / rows[k][lo] for k in paged)
    print(f"ratio p50@{hi}/p50@{lo} worst paged endpoint = {worst:.2f}")


if __name__ == "__main__":
    main()
