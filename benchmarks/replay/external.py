"""Optuna and DEHB on the same problems, space, budget and virtual clock as this project's arms.

- **Optuna** (``TPESampler`` + ``HyperbandPruner(min_resource=1, max_resource=R,
  reduction_factor=3)``, ask/tell): each worker asks a trial, reports the best validation
  accuracy so far after every epoch (the score ASHA uses at a rung) and stops when
  ``should_prune`` says so; a finished trial is told its best validation accuracy.
- **DEHB** (the ``dehb`` package, ``min_fidelity=1, max_fidelity=R, eta=3``, ask/tell): each
  worker asks a (configuration, fidelity) job and trains it from scratch for that many epochs,
  as DEHB does (it keeps no checkpoints); it is told the best validation accuracy as fitness
  (negated: DEHB minimizes) and the epochs as cost.

Both offer every result to the same ``Incumbent`` rule as this project's arms: the highest
fidelity reached, then the score there.
"""

from __future__ import annotations

import functools
import itertools
import tempfile
from typing import Any

from benchmarks.replay.clock import EventLoop, Worker
from benchmarks.replay.incumbent import Incumbent
from benchmarks.replay.problems import DIVERGE_SECONDS, Problem
from benchmarks.replay.spaces import configspace, from_configspace, optuna_params, searched
from trials.memory import ManualClock

__all__ = ["OptunaArm", "DehbArm"]


def _trial_params(problem: Problem, params: dict[str, Any], seed: int) -> dict[str, Any]:
    return {**params, "model": "sru", "dataset": "digits", "seed": seed}


class _Arm:
    def __init__(self, problem: Problem, *, workers: int, budget: int, seed: int) -> None:
        self.problem, self.workers, self.seed = problem, workers, seed
        self.clock = ManualClock(0.0)
        self.loop = EventLoop(self.clock, budget)
        self.incumbent = Incumbent(problem, seed, lambda: self.loop.spent)
        self.configs = 0

    def run(self) -> _Arm:
        self.loop.run([functools.partial(self._worker, i) for i in range(self.workers)])
        return self

    def _worker(self, wid: int) -> Worker:
        raise NotImplementedError

    def _epochs(self, params: dict[str, Any], upto: int, each=None):  # noqa: ANN001, ANN202
        """Train ``params`` from scratch for ``upto`` epochs on the clock; ``each(epoch,
        best)`` after every epoch may return True to stop. Yields waits; returns (epochs
        run, best score)."""
        run = self.problem.run(params, self.seed)
        best, done = float("-inf"), 0
        for epoch in range(1, upto + 1):
            if epoch > len(run.val_acc):  # diverged in this epoch
                yield DIVERGE_SECONDS
                break
            yield run.seconds[epoch - 1]
            self.loop.spend()
            best, done = max(best, run.val_acc[epoch - 1]), epoch
            if each is not None and epoch < upto and each(epoch, best):
                break
        return done, best


class OptunaArm(_Arm):
    def __init__(self, problem: Problem, *, workers: int, budget: int, seed: int) -> None:
        import optuna

        super().__init__(problem, workers=workers, budget=budget, seed=seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        # a fixed study name: HyperbandPruner draws brackets from a hash of it (the default
        # name has a random uuid, which would make runs irreproducible)
        self.study = optuna.create_study(
            study_name=f"replay-{seed}", direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=problem.epochs,
                                                  reduction_factor=3))

    def _worker(self, wid: int) -> Worker:
        while True:
            trial = self.study.ask()
            params = _trial_params(self.problem, optuna_params(trial, self.problem.spec),
                                   self.seed)
            self.configs += 1

            def report(epoch: int, best: float, trial=trial) -> bool:  # noqa: ANN001
                trial.report(best, epoch)
                return trial.should_prune()

            done, best = yield from self._epochs(params, self.problem.epochs, report)
            if done == 0:  # diverged before an epoch: nothing to learn from but that it failed
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
                continue
            if done < self.problem.epochs and trial.should_prune():
                self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, best)
            self.incumbent.offer((done, best, -trial.number), params)


class DehbArm(_Arm):
    def __init__(self, problem: Problem, *, workers: int, budget: int, seed: int) -> None:
        from dehb import DEHB
        from loguru import logger

        super().__init__(problem, workers=workers, budget=budget, seed=seed)
        self._tmp = tempfile.TemporaryDirectory(prefix="dehb-")
        cs = configspace(problem.spec, seed)
        self.dehb = DEHB(cs=cs, dimensions=len(searched(problem.spec)), min_fidelity=1,
                         max_fidelity=problem.epochs, eta=3, n_workers=1, seed=seed,
                         output_path=self._tmp.name, log_level="ERROR", save_freq="end")
        logger.remove()  # DEHB adds a log file with a writer thread; none is needed here
        self._ids = itertools.count()

    def run(self) -> DehbArm:
        try:
            super().run()
        finally:
            self._tmp.cleanup()
        return self

    def _worker(self, wid: int) -> Worker:
        while True:
            job = self.dehb.ask()
            params = _trial_params(self.problem, from_configspace(self.problem.spec,
                                                                  job["config"]), self.seed)
            fidelity = int(round(float(job["fidelity"])))
            self.configs += 1
            done, best = yield from self._epochs(params, fidelity)
            score = best if done else float("-inf")
            self.dehb.tell(job, {"fitness": -score if done else 1e9, "cost": max(done, 1)})
            if done:
                self.incumbent.offer((done, best, -next(self._ids)), params)
