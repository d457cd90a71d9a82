"""``make paper``: the SRU paper's question, at equal tuning budgets, on pixel MNIST.

SRU, GRU, LSTM and the paper's three SRU ablations (sru-iid, sru-recur, sru-multi), each tuned
by TPE for the budget of the seed slides (30 configurations × 50 epochs = 1,500 epochs of
search trials), the winner of each retrained for 200 epochs with 3 seeds and tested once per
seed. One comparison (``POST /comparisons``) on a local service: the embedded database in
``--home``, the API and ``--workers`` workers on the GPU(s).

- It prints an estimate of its GPU-hours first (``--seconds-per-epoch``: measure yours with
  ``make gpu-check``, whose report has epochs per minute).
- It resumes: run it again with the same ``--home`` and it finds its comparison, the service
  resumes the studies, and the workers resume trials from their snapshots.
- ``--dry-run`` runs the same path on digits, on CPU, with a budget of a few epochs: minutes.
  The test suite runs it (tests/benchmarks/test_paper.py).

The results go to ``--out`` (comparison.md laid out like the paper's table, comparison.csv,
comparison.json, anytime.png); the README's results table is filled from comparison.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.client.api_client import ApiClient
    from service.studies.schemas import ComparisonPublic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ["sru", "gru", "lstm", "sru-iid", "sru-recur", "sru-multi"]
PROTOCOL: dict[str, Any] = {
    "name": "paper", "dataset": "mnist", "variants": VARIANTS, "budget": {"epochs": 30 * 50},
    "trial_epochs": 50, "scheduler": {"rule": "off"}, "retrain_epochs": 200, "retrain_seeds": 3,
    "retrain_top_k": 1, "seed": 0, "algorithm": "tpe"}
DRY_RUN: dict[str, Any] = {
    **PROTOCOL, "name": "paper-dry-run", "dataset": "digits", "budget": {"epochs": 2},
    "trial_epochs": 1, "retrain_epochs": 1, "retrain_seeds": 2}
#: An assumption until measured (make gpu-check prints epochs per minute): one pixel-MNIST epoch
#: (55,000 sequences of 784 steps at batch 128) of a paper-sized model on one GPU.
SECONDS_PER_EPOCH = 60.0


def estimate(protocol: dict[str, Any]) -> int:
    """Training epochs the protocol spends: every variant's search budget, then its retrains
    (top_k candidates and seeds - 1 more runs of the winner). Test evaluations are one pass."""
    retrains = protocol["retrain_top_k"] + protocol["retrain_seeds"] - 1
    per_variant = protocol["budget"]["epochs"] + protocol["retrain_epochs"] * retrains
    return len(protocol["variants"]) * per_variant


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="the same path on digits, on CPU, "
                    "a few epochs (minutes)")
    ap.add_argument("--home", type=Path, help="the service's home (database, checkpoints, "
                    "logs); the same home resumes [default: runs/paper or runs/paper-dry-run]")
    ap.add_argument("--out", type=Path, help="folder for the results [default: HOME/results]")
    ap.add_argument("--workers", type=int, help="worker processes [default: 4; dry run 2]")
    ap.add_argument("--device", help="the workers' --device [default: auto; dry run cpu]")
    ap.add_argument("--seconds-per-epoch", type=float, default=SECONDS_PER_EPOCH,
                    help=f"for the estimate [default: {SECONDS_PER_EPOCH:.0f}, an assumption]")
    ap.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    args = ap.parse_args(argv)
    for flag in ("workers", "seconds_per_epoch"):
        v = getattr(args, flag)
        if v is not None and v <= 0:
            ap.error(f"--{flag.replace('_', '-')}: must be positive, got {v}")
    return args


def _comparison(client: ApiClient, protocol: dict[str, Any], state: Path) -> ComparisonPublic:
    """The comparison this home ran before (resume), or a new one."""
    from service.client.api_client import ApiError

    if state.exists():
        cid = json.loads(state.read_text())["comparison"]
        try:
            c = client.comparison(cid)
            print(f"resuming comparison {cid} ({c.state})", flush=True)
            return c
        except ApiError as exc:
            if exc.status != 404:
                raise
            print(f"comparison {cid} of {state} is gone; starting a new one", flush=True)
    c = client.submit_comparison(protocol)
    state.write_text(json.dumps({"comparison": c.id}))
    print(f"comparison {c.id}: " + ", ".join(f"{r.variant} = study {r.study_id}"
                                            for r in c.rows), flush=True)
    return c


def _line(c: ComparisonPublic) -> str:
    return " · ".join(f"{r.variant} {r.state} {r.epochs_spent} ep"
                      + (f" test {r.test_acc:.4f}" if r.test_acc is not None else "")
                      for r in c.rows)


class _Watch:
    """The comparison as last read, and a progress line printed when it changes."""

    def __init__(self, client: ApiClient, comparison: ComparisonPublic) -> None:
        self.client, self.comparison, self.last = client, comparison, ""

    def running(self) -> bool:
        c = self.comparison = self.client.comparison(self.comparison.id)
        if (line := _line(c)) != self.last:
            print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
            self.last = line
        return c.state == "running"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    protocol = dict(DRY_RUN if args.dry_run else PROTOCOL)
    workers = args.workers or (2 if args.dry_run else 4)
    protocol["parallelism"] = workers
    epochs = estimate(protocol)
    hours = epochs * args.seconds_per_epoch / 3600
    print(f"paper protocol{' (dry run)' if args.dry_run else ''}: {len(protocol['variants'])} "
          f"variants × ({protocol['budget']['epochs']} search epochs + "
          f"{protocol['retrain_seeds']} × {protocol['retrain_epochs']} retrain epochs) = "
          f"{epochs} epochs ≈ {hours:.1f} GPU-hours at {args.seconds_per_epoch:g} s/epoch "
          f"({epochs * args.seconds_per_epoch / 3600 / workers:.1f} h of wall time on "
          f"{workers} worker(s) if they do not slow each other)", flush=True)
    if args.estimate_only:
        return 0

    from service.client.api_client import ApiClient
    from service.client.comparison_report import to_markdown, write_comparison_report
    from service.launcher.cluster import Cluster, GiveUp, stop_signals
    from service.launcher.embedded_db import free_port
    from sru_hpo.settings import Settings

    home = args.home or ROOT / "runs" / protocol["name"]
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=home, mongo_url=None)
    cluster = Cluster(settings, workers, port=free_port(), device=args.device or (
        "cpu" if args.dry_run else "auto"), say=lambda m: print(m, flush=True))
    stop = stop_signals()
    try:
        cluster.start()
        client = ApiClient(cluster.api_url, settings.api_token)
        watch = _Watch(client, _comparison(client, protocol, home / "paper.json"))
        if watch.running():
            cluster.supervise(stop, tick=5.0, while_running=watch.running)
        if stop.is_set():
            print(f"interrupted; run it again with --home {home} to resume", flush=True)
            return 130
    except GiveUp as exc:
        print(f"stopped: {exc}", flush=True)
        return 1
    finally:
        cluster.stop()
    c = watch.comparison
    out = args.out or home / "results"
    for f in write_comparison_report(c, out):
        print(f"wrote {f}")
    print(to_markdown(c))
    return 0 if c.state == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
