"""What a simulated trial observes, and how good its configuration truly is.

A *problem* answers two questions for a configuration (trial parameters) and a training seed:

- ``run(params, seed)``: the learning curve the trial sees, epoch by epoch (validation accuracy
  and loss, seconds per epoch), and whether and when it diverges;
- ``quality(params, seed)``: the configuration's true quality, measured on what the method that
  saw seed ``seed`` could not select on.

``TableProblem`` replays the learning-curve table of the real objective (SRU on digits,
``benchmarks/tables/sru_digits_wide.json.gz``): a configuration is looked up as its nearest
tabulated neighbour (distance in the unit cube, log scale where the space is log; a different
choice counts as a whole unit), as Syne Tune's tabulated blackboxes do with a 1-nearest-neighbour
surrogate. The trial sees that row's run of training seed ``seed % n_seeds``; its quality is the
validation accuracy at the end of the other seed(s)' run (the mean over its last 3 epochs,
R - 2..R, or the last 3 before it diverged: one epoch's accuracy jitters by a few points), so a
configuration picked for a lucky seed is scored without that luck (a table of one seed, as in
the tests, scores the seed it saw).

``MFHartmannProblem`` is the multi-fidelity Hartmann-6 function (Kandasamy et al. 2017, p. 18)
from the ``mfhpo-benchmark-api`` package: epoch e of R evaluates it at fidelity z = e/R, with the
package's noise (sd 0.224) drawn once per (configuration, seed) and epoch; the bias term sets how
well low fidelities rank configurations (0.1, the package's default, is good; larger is worse).
The "accuracy" a trial sees is minus the function (higher is better); its quality is minus the
noiseless function at z = 1, and the optimum is 3.32237. Its six unit-interval inputs are carried
by six parameters of the SRU parameter table (``MFH_SPACE``), only so that the service's own
space validation accepts the space: the values mean nothing to a model, no model is trained.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from benchmarks.replay.spaces import coordinates
from search_spaces.schema import SpaceSpec

__all__ = ["Run", "Problem", "TableProblem", "MFHartmannProblem", "load_table", "MFH_SPACE",
           "TABLES"]

TABLES = Path(__file__).resolve().parents[1] / "tables"
DIVERGE_SECONDS = 0.05  # virtual time of the epoch a run diverges in (the table has no time)
FINAL_EPOCHS = 3  # a run's final quality: the mean validation accuracy of its last 3 epochs


@dataclass(frozen=True)
class Run:
    """One training run as a trial sees it."""

    val_acc: list[float]  # per finished epoch
    val_loss: list[float]
    seconds: list[float]
    diverged: str | None = None  # why, when the run diverged in epoch len(val_acc) + 1
    n_params: int = 0


class Problem(Protocol):
    name: str
    spec: SpaceSpec  # the search space every arm searches
    epochs: int  # R: the full budget of one configuration
    n_seeds: int  # training seeds a trial can observe

    def run(self, params: dict[str, Any], seed: int) -> Run: ...

    def quality(self, params: dict[str, Any], seed: int) -> float: ...

    def optimum(self, seed: int) -> float: ...


def load_table(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)


class TableProblem:
    """The learning-curve table, looked up by nearest tabulated configuration."""

    def __init__(self, table: dict[str, Any], name: str = "sru-digits") -> None:
        self.name, self.table = name, table
        self.spec = SpaceSpec.model_validate(table["space"])
        self.epochs = int(table["epochs"])
        self.n_seeds = len(table["seeds"])
        self.rows = table["configs"]
        coords = [coordinates(self.spec, r["params"]) for r in self.rows]
        self._nums = np.array([c[0] for c in coords], dtype=float)
        self._cats = np.array([c[1] for c in coords], dtype=float)
        # final[row, s]: validation accuracy at the end of seed s's run (the mean of its last
        # FINAL_EPOCHS epochs, which damps the epoch-to-epoch jitter; 0 for a run with none)
        self.final = np.array([[float(np.mean(r["val_acc"][-FINAL_EPOCHS:])) if r["val_acc"]
                                else 0.0 for r in row["runs"]] for row in self.rows])
        self._memo: dict[str, int] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> TableProblem:
        return cls(load_table(path or TABLES / "sru_digits_wide.json.gz"))

    def row_of(self, params: dict[str, Any]) -> int:
        """The nearest tabulated configuration (ties: the first row)."""
        key = json.dumps(params, sort_keys=True)
        if key not in self._memo:
            nums, cats = coordinates(self.spec, params)
            d2 = ((self._nums - np.array(nums)) ** 2).sum(1)
            if cats:
                d2 = d2 + (self._cats != np.array(cats)).sum(1)
            self._memo[key] = int(np.argmin(d2))
        return self._memo[key]

    def run(self, params: dict[str, Any], seed: int) -> Run:
        r = self.rows[self.row_of(params)]["runs"][seed % self.n_seeds]
        diverged = r["reason"] if r["status"] == "diverged" else None
        return Run(r["val_acc"], r["val_loss"], r["seconds"], diverged, int(r["n_params"]))

    def _quality_of_row(self, row: int | np.ndarray, seed: int) -> Any:
        others = [s for s in range(self.n_seeds) if s != seed % self.n_seeds] or [0]
        return self.final[row][..., others].mean(-1)

    def quality(self, params: dict[str, Any], seed: int) -> float:
        return float(self._quality_of_row(self.row_of(params), seed))

    def optimum(self, seed: int) -> float:
        return float(self._quality_of_row(np.arange(len(self.rows)), seed).max())

    def describe(self) -> str:
        """The spread of final qualities against the noise of one training seed."""
        final = self.final  # (rows, seeds)
        noise = float(np.std(final[:, 0] - final[:, 1]) / np.sqrt(2)) if self.n_seeds > 1 else 0
        runs = [r for row in self.rows for r in row["runs"]]
        diverged = sum(r["status"] == "diverged" for r in runs) / len(runs)
        wall = sum(r.get("wall") or sum(r["seconds"]) for r in runs)
        top = np.sort(final.mean(1))[::-1]
        return (f"{len(self.rows)} configurations x {self.n_seeds} seeds x {self.epochs} epochs "
                f"({wall / 3600:.2f} core-hours to make); final validation accuracy: spread "
                f"(sd over configurations of the seed mean) {final.mean(1).std():.3f}, noise "
                f"(sd of one seed) {noise:.3f}; best {top[0]:.3f}, 10th best {top[9]:.3f}, median "
                f"{np.median(top):.3f}; {diverged:.0%} of runs diverged")


#: MFHartmann6's x0..x5, carried by six SRU parameters whose ranges hold [0, 1] (or nearly).
MFH_CARRIERS = {"dropout": (0.0, 0.999), "momentum": (0.0, 0.999), "lr_decay": (1e-6, 1.0),
                "weight_decay": (0.0, 1.0), "lr": (1e-6, 1.0), "clip_norm": (0.0, 1.0)}
MFH_SPACE = {"name": "mfhartmann6", "model": "sru", "params": {
    k: {"type": "uniform", "low": lo, "high": hi} for k, (lo, hi) in MFH_CARRIERS.items()}}
HARTMANN6_MAX = 3.32237


class MFHartmannProblem:
    def __init__(self, bias: float, epochs: int = 27, name: str | None = None,
                 seconds_per_epoch: float = 1.0) -> None:
        from benchmark_apis import MFHartmann

        self.fn = MFHartmann(dim=6, bias=bias, min_fidel=1, max_fidel=epochs, deterministic=True)
        self.bias, self.epochs, self.n_seeds = bias, epochs, 1_000_000
        self.name = name or f"mfhartmann6 (bias {bias})"
        self.spec = SpaceSpec.model_validate(MFH_SPACE)
        self.noise_sd = float(self.fn._noise_std)
        self.seconds_per_epoch = seconds_per_epoch

    def x(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([(float(params[k]) - lo) / (hi - lo)
                         for k, (lo, hi) in MFH_CARRIERS.items()]).clip(0.0, 1.0)

    def value(self, x: np.ndarray, z: float) -> float:
        """Minus the noiseless function at fidelity ``z`` (higher is better)."""
        return -float(self.fn._objective(x=x, z=np.array([z])))

    def run(self, params: dict[str, Any], seed: int) -> Run:
        x = self.x(params)
        # the noise of this (configuration, seed): the same whenever the trial is replayed
        key = [int(seed), *(int(v * 2**31) for v in x)]
        noise = np.random.default_rng(key).normal(0.0, self.noise_sd, self.epochs)
        acc = [self.value(x, e / self.epochs) + float(noise[e - 1])
               for e in range(1, self.epochs + 1)]
        return Run(acc, [-a for a in acc], [self.seconds_per_epoch] * self.epochs)

    def quality(self, params: dict[str, Any], seed: int) -> float:
        return self.value(self.x(params), 1.0)

    def optimum(self, seed: int) -> float:
        return HARTMANN6_MAX


def spearman_by_rung(problem: Problem, configs: list[dict[str, Any]], rungs: list[int],
                     seed: int = 0) -> dict[int, float]:
    """Spearman's rank correlation, over ``configs``, between each rung's score (best validation
    accuracy up to that epoch, as ASHA scores it) and the configuration's true quality."""
    from scipy.stats import spearmanr

    quality = [problem.quality(c, seed) for c in configs]
    out = {}
    for e in rungs:
        scores = []
        for c in configs:
            acc = problem.run(c, seed).val_acc[:e]
            scores.append(max(acc) if acc else -math.inf)
        out[e] = float(spearmanr(scores, quality).statistic)
    return out
