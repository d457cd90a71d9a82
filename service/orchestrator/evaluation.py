"""The final evaluation of a study: the winner retrained over ``retrain_seeds`` seeds, each tested
once on the test set. One rule, used by the driver (what to queue next, when the study ends),
the summary (mean, sd, the drop from validation to test) and ``GET /studies/ID/retrain``.

The jobs, as the driver queues them when the search ends:

- **candidates**: the ``retrain_top_k`` best configurations, each retrained once with the
  study's ``seed`` (``seed_of`` unset). Once every candidate ended, the **winner** is the one
  with the best validation accuracy (the lowest tid on a tie).
- **seed runs**: the winner again with seeds ``seed + 1 … seed + k - 1`` (``seed_of`` = the
  winner's job id). With ``retrain_top_k = 1`` the winner is known at once and they are queued
  beside it.
- **tests**: one ``test`` job per seed run that finished (``source`` = that run's id). A test is
  queued once and never again: the test set is read once per seed. Each test job is the log of
  that evaluation: when it ran, which checkpoint (the run's tid) it read, what it measured.

The study completes when every run ended and every finished run has its test; it fails when no
run finished, or no test did. Pure functions over the driver's cached job records.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from trials.records import JobRecord, Study
from trials.states import JobState
from trials.summary_doc import TestStats

__all__ = ["FinalEvaluation", "Evaluation"]


def _val(job: JobRecord) -> float:
    return job.result.best_val_acc or 0.0


def _terminal(job: JobRecord) -> bool:
    return job.state.is_terminal()


@dataclass(frozen=True)
class Evaluation:
    """One test-set evaluation: the seed, the retrain whose checkpoint it read, the result."""

    seed: int
    retrain_tid: int
    test_tid: int
    state: str
    val_acc: float | None
    test_acc: float | None
    test_loss: float | None
    at: float | None  # server time the test reported


@dataclass(frozen=True)
class FinalEvaluation:
    seeds: list[int]  # the seeds the winner is retrained with (the first: the candidates')
    candidates: tuple[JobRecord, ...]
    runs: tuple[JobRecord, ...]  # the winner's seed runs (the winner first), once it is known
    tests: dict[str, JobRecord]  # test job by the id of the run it tested

    @classmethod
    def of(cls, study: Study, retrains: Sequence[JobRecord], tests: Sequence[JobRecord]
           ) -> FinalEvaluation:
        candidates = tuple(sorted((r for r in retrains if not r.seed_of), key=lambda r: r.tid))
        winner = None
        if candidates and all(_terminal(r) for r in candidates):
            done = [r for r in candidates if r.state == JobState.DONE]
            winner = max(done, key=lambda r: (_val(r), -r.tid), default=None)
        runs: tuple[JobRecord, ...] = ()
        if winner is not None:
            extra = sorted((r for r in retrains if r.seed_of == winner.id), key=lambda r: r.tid)
            runs = (winner, *extra)
        return cls(seeds=study.seeds, candidates=candidates, runs=runs,
                   tests={t.source: t for t in tests if t.source})

    # -- what the driver queues ------------------------------------------------------------------
    @property
    def winner(self) -> JobRecord | None:
        return self.runs[0] if self.runs else None

    @property
    def no_winner(self) -> bool:
        """Every candidate ended and none finished: the study fails."""
        return bool(self.candidates) and all(_terminal(r) for r in self.candidates) \
            and self.winner is None

    def missing_seeds(self) -> list[int]:
        """Seeds of the winner not queued yet."""
        if self.winner is None:
            return []
        have = {self._seed(r) for r in self.runs}
        return [s for s in self.seeds if s not in have]

    def _seed(self, run: JobRecord) -> int:
        return self.seeds[0] if run.seed is None else run.seed

    def untested(self) -> list[JobRecord]:
        """Finished seed runs without their test job."""
        return [r for r in self.runs if r.state == JobState.DONE and r.id not in self.tests]

    def _my_tests(self) -> list[JobRecord]:
        return [self.tests[r.id] for r in self.runs if r.id in self.tests]

    @property
    def settled(self) -> bool:
        """Every seed run is queued and ended, and every finished one was tested."""
        return (self.winner is not None and not self.missing_seeds()
                and all(_terminal(r) for r in self.runs) and not self.untested()
                and all(_terminal(t) for t in self._my_tests()))

    @property
    def succeeded(self) -> bool:
        return self.settled and any(t.state == JobState.DONE for t in self._my_tests())

    def failure(self) -> str:
        """Why a settled evaluation without a test result failed."""
        if not any(r.state == JobState.DONE for r in self.runs):
            return f"retrain failed: {self.runs[0].error}"
        errors = [t.error for t in self._my_tests() if t.state != JobState.DONE]
        return f"test evaluation failed: {errors[0] if errors else 'unknown error'}"

    # -- what readers are told -------------------------------------------------------------------
    def state(self) -> str:
        """pending (nothing retrained yet), new, running, done, or how the tests ended."""
        jobs = [*self.candidates, *self.runs, *self._my_tests()]
        if not self.candidates:
            return "pending"
        if self.no_winner:
            return self.candidates[0].state.label
        if not self.settled:
            return "new" if all(j.state == JobState.NEW for j in jobs) else "running"
        mine = self._my_tests()
        if any(t.state == JobState.DONE for t in mine):
            return "done"
        return mine[0].state.label if mine else "error"

    def evaluations(self) -> list[Evaluation]:
        out = []
        for r in self.runs:
            t = self.tests.get(r.id)
            if t is None:
                continue
            res = t.result
            out.append(Evaluation(
                seed=self._seed(r), retrain_tid=r.tid, test_tid=t.tid, state=t.state.label,
                val_acc=r.result.best_val_acc, test_acc=res.test_acc, test_loss=res.test_loss,
                at=t.refresh_time if t.state == JobState.DONE else None))
        return out

    def stats(self) -> TestStats:
        """test_acc (the mean over the seeds tested), test_acc_sd (sample sd; None below 2),
        tests, val_acc (the mean of the same runs), test_drop (val_acc - test_acc), n_params."""
        done = [e for e in self.evaluations() if e.test_acc is not None]
        tests = [float(e.test_acc) for e in done]  # type: ignore[arg-type]
        vals = [float(e.val_acc) for e in done if e.val_acc is not None]
        mean = statistics.fmean(tests) if tests else None
        val = statistics.fmean(vals) if vals else None
        winner = self.winner
        return {"test_acc": mean, "test_acc_sd": statistics.stdev(tests) if len(tests) > 1
                else None, "tests": len(tests), "val_acc": val,
                "test_drop": val - mean if mean is not None and val is not None else None,
                "n_params": winner.result.n_params if winner else None}
