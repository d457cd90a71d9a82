"""sru-hpo's arms on the virtual clock: the real study driver, simulated workers.

``Simulation(problem, fields, workers=N, budget=B, seed=s).run()`` creates the study in a
``MemoryStore`` on a virtual clock and lets the real ``StudyDriver`` (service/orchestrator/driver.py: its
cache, TPE or random suggestions, ASHA/Hyperband promotions, the median rule's settings) drive
it, as the service's driver thread does: one pass when the run starts, one after every trial
that pauses or finishes, and one whenever a worker finds the queue empty (a real idle worker
nudges the drivers); the summary is written at most once a (virtual) second, as the service's.

Each simulated worker does what ``workers/trial.py`` does with a reserved job, in the same order,
through the same store calls, with training replaced by the problem's learning curve:

1. reserve the next job (promoted trials first), claim its curve keeping the points it already
   has (a promoted trial resumes where it paused);
2. for each epoch up to ``job.epochs``: wait the epoch's seconds, add the point; a run that
   diverges in this epoch ends it as ``diverged``; before the last epoch, stop when the study
   asked it to (cancel), at its rung (``job.limit``: pause), or when the median rule prunes it
   (``trials.pruning``, with the curves of the study's full-budget trials up to this epoch);
3. report: pause with the rung scores, or finish (ok, pruned, diverged), with the result fields
   the real worker writes.

Epochs count toward the budget as they finish; the run stops at ``budget`` epochs, or when the
search is over. ``tests/benchmarks/test_replay.py`` checks that a simulated and a real study
(real workers training for real on the embedded database) take the same decisions.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

from benchmarks.replay.clock import IDLE, EventLoop, Worker
from benchmarks.replay.incumbent import Incumbent
from benchmarks.replay.problems import DIVERGE_SECONDS, Problem
from service.orchestrator.driver import StudyDriver
from service.orchestrator.drivers import PUBLISH_EVERY
from service.studies.schemas import StudyCreate
from trials.jobs import Job
from trials.memory import ManualClock, MemoryStore
from trials.pruning import make_pruner
from trials.records import JobRecord, Point
from trials.scheduling import rank_key, rung_scores
from trials.states import JobKind, Outcome, StudyState

__all__ = ["ARMS", "study_fields", "Simulation"]

SID = "sim"
#: This project's arms: what each sets in the study (everything else is the same for all).
ARMS: dict[str, dict[str, Any]] = {
    "random": {"algorithm": "random", "scheduler": {"rule": "off"}},
    "tpe": {"algorithm": "tpe", "scheduler": {"rule": "off"}},
    "tpe+median": {"algorithm": "tpe", "scheduler": {"rule": "median", "warmup": 3,
                                                     "min_trials": 3}},
    "tpe+asha": {"algorithm": "tpe", "scheduler": {"rule": "asha", "min_epochs": 1,
                                                   "reduction": 3}},
    "tpe+hyperband": {"algorithm": "tpe", "scheduler": {"rule": "hyperband", "min_epochs": 1,
                                                        "reduction": 3}},
    # what the fidelity advice suggests on the SRU table: a first rung at epoch 3, not 1
    "tpe+asha-r3": {"algorithm": "tpe", "scheduler": {"rule": "asha", "min_epochs": 3,
                                                      "reduction": 3}},
}


def study_fields(problem: Problem, arm: dict[str, Any], *, workers: int, seed: int,
                 n_trials: int = 1_000_000, **extra: Any) -> dict[str, Any]:
    """The study an arm submits, validated as POST /studies validates it."""
    body = StudyCreate.model_validate({
        "name": "replay", "model": "sru", "dataset": "digits",
        "space": problem.spec.model_dump(exclude_none=True), "n_trials": n_trials,
        "parallelism": workers, "trial_epochs": problem.epochs, "retrain_epochs": problem.epochs,
        "seed": seed, **arm, **extra})
    fields = body.model_dump()
    fields["space"] = body.spec().model_dump()
    return fields


class Simulation:
    def __init__(self, problem: Problem, fields: dict[str, Any], *, workers: int, budget: int,
                 seed: int) -> None:
        self.problem, self.fields, self.workers = problem, fields, workers
        self.clock = ManualClock(1_000_000.0)
        self.store = MemoryStore(self.clock)
        study = self.store.studies.create(SID, fields)
        self.driver = StudyDriver(self.store, SID, fail_fast=0, publish_every=PUBLISH_EVERY)
        self.loop = EventLoop(self.clock, budget)
        self.incumbent = Incumbent(problem, seed, lambda: self.loop.spent)
        self.grid, self.top, self.seed = study.grid, study.trial_epochs, study.seed

    def run(self) -> Simulation:
        self.driver.step()
        self.loop.run([functools.partial(self._worker, i) for i in range(self.workers)])
        return self

    @property
    def trials(self) -> list[JobRecord]:
        """The study's search trials, by tid."""
        return self.driver.cache.of_kind(JobKind.TRIAL)

    def _searching(self) -> bool:
        study = self.store.studies.get(SID)
        return study is not None and study.state in (StudyState.QUEUED, StudyState.RUNNING)

    # -- a worker -----------------------------------------------------------------------------------
    def _worker(self, wid: int) -> Worker:
        owner = f"sim:{wid}"
        for n in itertools.count():
            if not self._searching():
                return
            job = self.store.work.reserve(owner, token=f"{owner}:{n}")
            if job is None:  # the queue is empty: nudge the driver, as an idle worker does
                self.driver.step()
                job = self.store.work.reserve(owner, token=f"{owner}:{n}")
            if job is None:
                yield IDLE
                continue
            if job.kind != JobKind.TRIAL:  # the search is over: retrains are not simulated
                return
            yield from self._train(job)

    def _train(self, job: Job) -> Worker:
        curves = self.store.curves
        curve = curves.get(job.id)  # a promoted trial keeps the points up to its pause
        if not curves.claim(job.id, job.attempt, curve):
            return
        run = self.problem.run(job.params, int(job.params["seed"]))
        pruner = make_pruner(job.pruning) if job.pruning else None
        why, seconds, start = None, 0.0, len(curve)
        for epoch in range(len(curve) + 1, job.epochs + 1):
            if epoch > len(run.val_acc):  # the run diverges in this epoch
                yield DIVERGE_SECONDS
                break
            seconds += run.seconds[epoch - 1]
            yield run.seconds[epoch - 1]
            point: Point = {"epoch": epoch, "val_acc": run.val_acc[epoch - 1],
                     "val_loss": run.val_loss[epoch - 1], "seconds": run.seconds[epoch - 1]}
            curve.append(point)
            curves.add(job.id, job.attempt, point)
            self.loop.spend()
            if epoch < job.epochs:
                why = self._stop_reason(job, curve, pruner)
                if why:
                    break
        self._report(job, curve, why, run, seconds, start)

    def _stop_reason(self, job: Job, curve: list[Point], pruner: Any) -> str | None:
        """As ``TrialRun.should_stop``: a stop request, then the rung, then the pruner."""
        why = self.store.work.stop_request(job)
        if why:
            return why
        if job.pauses and curve[-1]["epoch"] >= (job.limit or 0):
            return "rung"
        if pruner is not None:
            epoch = curve[-1]["epoch"]
            peers = self.store.job_reads.full_budget_tids(job.sid)
            others = self.store.curves.of_jobs(peers, up_to_epoch=epoch)
            if pruner.should_prune(epoch, curve, list(others.values())):
                return "pruned"
        return None

    def _report(self, job: Job, curve: list[Point], why: str | None, run: Any,
                seconds: float, start: int) -> None:
        diverged = run.diverged is not None and len(curve) == len(run.val_acc) and \
            len(curve) < job.epochs and why is None
        best = max(curve, key=lambda p: p["val_acc"], default=None)  # first of equal ones
        payload: dict[str, Any] = {
            "status": "diverged" if diverged else ("stopped" if why else "ok"),
            "seed": int(job.params["seed"]), "epochs_run": len(curve),
            "best_val_acc": best["val_acc"] if best else 0.0,
            "best_epoch": best["epoch"] if best else 0, "test_acc": None, "test_loss": None,
            "n_params": run.n_params, "seconds": seconds,
            "reason": run.diverged if diverged else None, "resumed_from": start,
            "device": "sim"}
        if job.rungs:
            payload["rung_scores"] = rung_scores(curve, [*job.rungs, job.epochs])
        work = self.store.work
        if why == "rung":
            work.pause(job, payload)
        elif why == "cancel":
            work.mark_cancelled(job, payload)
        elif why != "lost":
            outcome = (Outcome.PRUNED if why == "pruned" else
                       Outcome.DIVERGED if diverged else Outcome.OK)
            work.finish(job, payload, outcome.value)
        trial = self.store.job_reads.get(job.sid, job.tid)
        if trial is not None and trial.result.status == "ok":
            self.incumbent.offer(rank_key(trial, self.grid, self.top, self.seed),
                                 dict(trial.params))
        self.driver.step()
        self.loop.changed()
