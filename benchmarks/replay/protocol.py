"""The protocol: every arm on every problem, equal budgets, paired seeds, anytime curves.

**Runs.** For each problem, arm and seed s = 0..n-1: one simulated run with ``workers``
workers, stopped at ``max_budget`` cumulative epochs. The seed is the arm's own seed (TPE's,
Optuna's, DEHB's) and picks the training seed the trials see (s mod the table's seeds): the same
s is the same training data for every arm (common random numbers), so arms are compared seed by
seed. Runs are spread over ``procs`` processes.

**Budgets.** This project's arms are studies sized by their budget (``budget: {epochs: B}``, no
``n_trials``): the study itself stops creating work when its budget is committed and spends the
end on promotions, so each B is its own run. Optuna and DEHB decide without knowing the budget,
so the first B epochs of their run stopped at the largest B are their run stopped at B: their
result at a smaller B is read off that run's anytime curve. (``budgeted=False`` treats this
project's arms the same way: an unbounded ``n_trials``, cut at B, as before studies had a
budget.)

**Scores.** At budget B an arm's answer is its incumbent then (``incumbent.py``); its regret is
the problem's optimum minus the incumbent's true quality. ``epochs_to`` is how many epochs an
arm's incumbent needed to reach a target quality (infinite if it never did within its run).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.replay.incumbent import quality_at

__all__ = ["Result", "ARM_NAMES", "run_all", "load_problem", "regret_at", "epochs_to", "wilcoxon",
           "iqr", "runs_at", "largest"]

ARM_NAMES = ["random", "tpe", "tpe+median", "tpe+asha", "tpe+hyperband", "tpe+asha-r3",
             "optuna tpe+hyperband", "dehb"]
# the slowest first, so that two processes finish together
_COST = {"tpe+asha": 6, "tpe+hyperband": 3, "dehb": 3, "tpe+median": 2, "tpe+asha-r3": 2}


@dataclass
class Result:
    problem: str
    arm: str
    seed: int
    trace: list[tuple[int, float]]  # (epochs spent, incumbent's true quality)
    budget: int  # the epochs this run was given
    optimum: float
    spent: int
    configs: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self, epochs: float) -> float | None:
        return quality_at(self.trace, epochs)


def _problems() -> dict[str, Callable[[], Any]]:
    from benchmarks.replay.problems import MFHartmannProblem, TableProblem

    return {"sru-digits": TableProblem.load,
            "mfh6-good": lambda: MFHartmannProblem(0.1, name="mfh6-good"),
            "mfh6-bad": lambda: MFHartmannProblem(3.0, name="mfh6-bad")}


_LOADED: dict[str, Any] = {}


def load_problem(name: str) -> Any:
    if name not in _LOADED:
        _LOADED[name] = _problems()[name]()
    return _LOADED[name]


def run_one(task: tuple[str, str, int, int, int, bool]) -> Result:
    """One (problem, arm, seed, budget) run; what each pool process executes."""
    from benchmarks.replay.external import DehbArm, OptunaArm
    from benchmarks.replay.ours import ARMS, Simulation, study_fields

    name, arm, seed, workers, budget, budgeted = task
    problem = load_problem(name)
    t0 = time.perf_counter()
    if arm in ARMS:
        sized = {"budget": {"epochs": budget}, "n_trials": None} if budgeted else {}
        fields = study_fields(problem, ARMS[arm], workers=workers, seed=seed, **sized)
        sim = Simulation(problem, fields, workers=workers, budget=budget, seed=seed).run()
        trace, spent, configs = sim.incumbent.trace, sim.loop.spent, len(sim.trials)
    else:
        cls = OptunaArm if arm.startswith("optuna") else DehbArm
        ext = cls(problem, workers=workers, budget=budget, seed=seed).run()
        trace, spent, configs = ext.incumbent.trace, ext.loop.spent, ext.configs
    return Result(name, arm, seed, list(trace), budget, problem.optimum(seed), spent, configs,
                  time.perf_counter() - t0)


def run_all(problems: list[str], arms: list[str], seeds: int, workers: int, budgets_r: list[int],
            procs: int, budgeted: bool = True, log: Callable[[str], None] = print
            ) -> list[Result]:
    from benchmarks.replay.ours import ARMS

    epochs = {name: load_problem(name).epochs for name in problems}
    tasks = []
    for p in problems:
        for a in arms:
            own = budgeted and a in ARMS  # a run per budget
            for b in (budgets_r if own else [max(budgets_r)]):
                tasks += [(p, a, s, workers, b * epochs[p], budgeted) for s in range(seeds)]
    tasks.sort(key=lambda t: -_COST.get(t[1], 1) * t[4])
    out: list[Result] = []
    t0 = time.monotonic()
    with mp.get_context("fork").Pool(procs) as pool:
        for i, r in enumerate(pool.imap_unordered(run_one, tasks, chunksize=1), 1):
            out.append(r)
            if i % 20 == 0 or i == len(tasks):
                log(f"  {i}/{len(tasks)} runs, {time.monotonic() - t0:.0f} s")
    return sorted(out, key=lambda r: (r.problem, ARM_NAMES.index(r.arm), r.seed, r.budget))


def runs_at(results: list[Result], problem: str, arm: str, epochs: float) -> list[Result]:
    """Per seed, the run that answers for budget ``epochs``: the run given exactly that budget,
    else the one given the most (read at ``epochs`` off its anytime curve)."""
    best: dict[int, Result] = {}
    for r in results:
        if r.problem != problem or r.arm != arm:
            continue
        have = best.get(r.seed)
        if have is None or (have.budget != epochs and (r.budget == epochs
                                                        or r.budget > have.budget)):
            best[r.seed] = r
    return [best[s] for s in sorted(best)]


def largest(results: list[Result], problem: str, arm: str) -> list[Result]:
    """Per seed, the run given the largest budget (its anytime curve is the one plotted)."""
    top = max((r.budget for r in results if r.problem == problem and r.arm == arm), default=0)
    return runs_at(results, problem, arm, top)


# -- scores -------------------------------------------------------------------------------------
def regret_at(r: Result, epochs: float) -> float:
    q = r.at(epochs)
    return math.inf if q is None else max(0.0, r.optimum - q)


def epochs_to(r: Result, target: float) -> float:
    """Epochs until the incumbent's quality reached ``target`` (inf: never in this run)."""
    return next((float(spent) for spent, q in r.trace if q >= target - 1e-12), math.inf)


def iqr(xs: list[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th percentile), infinities kept."""
    s = sorted(xs)

    def pct(p: float) -> float:
        k = (len(s) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        if s[lo] == s[hi] or math.isinf(s[lo]) or math.isinf(s[hi]):
            return s[hi] if k - lo >= 0.5 else s[lo]
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return pct(0.25), pct(0.5), pct(0.75)


def wilcoxon(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Wilcoxon's signed-rank test on paired values (None: all equal)."""
    from scipy.stats import wilcoxon as test

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if not pairs or all(x == y for x, y in pairs):
        return None
    return float(test([x for x, _ in pairs], [y for _, y in pairs]).pvalue)


def median(xs: list[float]) -> float:
    return statistics.median(xs)
