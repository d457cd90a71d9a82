"""The real objective: this project's arms on real training, at one equal budget.

What the simulator replays from the table, trained for real: the study of ``ours.study_fields``
(the table's space ``sru_digits_wide``, R = 27 epochs, budget B = ``budget`` epochs, no
``n_trials``) is stored in the embedded database, the real ``DriverManager`` drives it in this
process, and ``workers`` real ``sru-hpo worker`` processes (one thread each, as the table was
made) train it on digits; the study retrains its best configuration and evaluates it once on the
test split, as every study does.

**The anytime curve.** Once a second the run reads the study: epochs spent (the curve points its
search trials wrote) and the incumbent (``trials.scheduling.rank_key``: the highest rung reached,
then the score there). Nothing here knows a configuration's true quality, so the curve is the
incumbent's *own* validation score (what the service would report), selection-biased upward
by the maximum it is; the unbiased number is each run's end point, the retrain's test accuracy
(``extra["test_acc"]``). Sampling once a second puts a point at most about two epochs late.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks.replay.ours import ARMS, study_fields
from benchmarks.replay.problems import TableProblem
from benchmarks.replay.protocol import Result
from service.launcher.embedded_db import EmbeddedMongo
from service.launcher.processes import spawn, terminate
from service.orchestrator.drivers import DriverManager
from trials.scheduling import rank_key
from trials.states import JobKind, StudyState
from trials.store import Store

__all__ = ["RealFleet"]

PROBLEM = "sru-digits-real"
SAMPLE_EVERY = 1.0  # seconds between reads of the running study
RUN_TIMEOUT = 1800.0  # seconds a run may take before it counts as stuck


class RealFleet:
    """The embedded database, the drivers and ``workers`` worker processes, for several runs."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder, self.workers = folder, workers
        self.db_name = f"real_{uuid.uuid4().hex[:8]}"
        self.server: EmbeddedMongo | None = None
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> RealFleet:
        self.server = EmbeddedMongo(self.folder / "nx").start()
        self.store = Store.connect(self.server.url, self.db_name, heartbeat_interval=3)
        self.store.ensure_indexes()
        self.manager = DriverManager(self.store, poll=0.05, lease_seconds=30, fail_fast=0)
        self.manager.resume_all()
        env = {**os.environ, "SRU_HPO_MONGO_URL": self.server.url, "SRU_HPO_DB_NAME": self.db_name,
               "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.procs = [spawn([sys.executable, "-m", "sru_hpo", "worker", "--device", "cpu",
                             "--poll", "0.05"], log=self.folder / f"worker-{i}.log", env=env)
                      for i in range(self.workers)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.manager.stop()
        for p in self.procs:
            terminate(p.pid)
            p.wait()
        if self.server is not None:
            self.server.stop()

    def run(self, problem: TableProblem, arm: str, seed: int, budget: int) -> Result:
        """One study of ``arm`` with ``budget`` epochs; its anytime curve, sampled."""
        fields = study_fields(problem, ARMS[arm], workers=self.workers, seed=seed, n_trials=None,
                              budget={"epochs": budget})
        sid = f"{arm.replace('+', '-')}-{seed}-{uuid.uuid4().hex[:6]}"
        created = self.store.studies.create(sid, fields)
        self.manager.start(sid)
        ranking = (created.grid, created.trial_epochs, created.seed)
        t0 = time.monotonic()
        trace: list[tuple[int, float]] = []
        while True:
            study = self.store.studies.get(sid)
            if study is None:
                raise RuntimeError(f"study {sid} was deleted while it ran")
            state = study.state
            spent, quality, configs = self._sample(sid, ranking)
            if quality is not None and (not trace or quality != trace[-1][1]):
                trace.append((spent, quality))
            if state not in (StudyState.QUEUED, StudyState.RUNNING, StudyState.RETRAINING):
                break
            if time.monotonic() - t0 > RUN_TIMEOUT:
                raise RuntimeError(f"study {sid} still {state} after {RUN_TIMEOUT:.0f} s; worker "
                                   f"logs in {self.folder}")
            time.sleep(SAMPLE_EVERY)
        return Result(PROBLEM, arm, seed, trace, budget, 1.0, spent, configs,
                      time.monotonic() - t0,
                      {"test_acc": study.summary.get("test_acc"), "state": state})

    def _sample(self, sid: str, ranking: tuple[list[int], int, int]
                ) -> tuple[int, float | None, int]:
        """(epochs the search trials trained so far, the incumbent's own score, trials)."""
        trials = self.store.job_reads.page(sid, state=None, kind=JobKind.TRIAL.value, by_score=False,
                                      offset=0, limit=100_000)
        curves = self.store.curves.of_jobs([t.id for t in trials])
        spent = sum(len(points) for points in curves.values())
        keys = [rank_key(t, *ranking) for t in trials if t.result.status == "ok"]
        return spent, (float(max(keys)[1]) if keys else None), len(trials)
