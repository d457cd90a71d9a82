"""Search quality per epoch, measured the way HPO research measures it: equal budgets, anytime
incumbent curves, many paired seeds, true quality on data the search did not select on.

**Problems** (benchmarks/replay/problems.py): ``sru-digits``, the learning-curve table of the
real objective (240 SRU configurations of the ``sru_digits_wide`` space, 27 epochs, 2 training
seeds: benchmarks/make_table.py); ``mfh6-good`` and ``mfh6-bad``, MFHartmann6 with good (bias
0.1) and bad (bias 3.0) low-fidelity rank correlation.

**Arms**: random; TPE; TPE + median rule (warm-up 3); TPE + ASHA (min_epochs 1, η 3); TPE +
Hyperband (same rungs); TPE + ASHA with min_epochs 3 (``tpe+asha-r3``, what the fidelity advice
suggests on the SRU table), all through the real study driver (benchmarks/replay/ours.py); Optuna
TPESampler + HyperbandPruner and DEHB through ask/tell (benchmarks/replay/external.py). Every
arm searches the same space with ``--workers`` simulated workers on a virtual clock whose epochs
take the table's time.

**Protocol** (benchmarks/replay/protocol.py): ``--seeds`` paired seeds per arm and problem and
the budgets B = 10 R, 30 R, 100 R (R = 27): this project's studies are given ``budget: {epochs:
B}``, one run per B; Optuna and DEHB run to the largest B and are read at each B off their
anytime curve. Regret is the problem's optimum minus the incumbent's true quality.

**Output**: per problem and budget, the median regret [IQR] and configurations of each arm; the
epochs each arm's incumbent needs to reach plain TPE's (and random's) quality at 30 R; Wilcoxon
signed-rank p-values for the headline pairs; the Spearman correlation of each rung's score with
the true quality over the table's configurations; ``search_quality.png`` (median and IQR of the
incumbent's quality against epochs, log axis) and ``search_quality.json`` (every run); and the
lines ``ratio epochs asha/tpe = X``, ``ratio regret asha/optuna-hyperband = Y`` and
``ratio regret asha/dehb = Z`` (sru-digits, B = 30 R), then the same per MFHartmann problem, and
for the best of this project's arms.

**The real objective** (``--real``, instead of the above; benchmarks/replay/real.py): the arms
``--real-arms`` (default tpe, tpe+asha) trained for real by 2 worker processes on the embedded
database, ``--real-seeds`` (default 5) paired seeds, one budget ``--real-budget`` R (default
10). It prints each arm's median incumbent score at B/9, B/3 and B, the retrain's test accuracy,
and the share of the log-budget range [R/3, B] where TPE+ASHA's median anytime curve is at or
above plain TPE's; plot ``search_quality_real.png``, runs ``search_quality_real.json``. About
3 minutes a run on 2 cores (1,915 s for the defaults' 10 runs on 2026-12-02).

    python benchmarks/search_quality.py [--seeds 20] [--budgets 10,30,100] [--workers 4]
        [--procs 2] [--cut]
        [--problems sru-digits,mfh6-good,mfh6-bad] [--arms ...] [--out benchmarks]
    python benchmarks/search_quality.py --real [--real-arms tpe,tpe+asha] [--real-seeds 5]
        [--real-budget 10]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.replay.protocol import (  # noqa: E402
    ARM_NAMES,
    Result,
    epochs_to,
    iqr,
    largest,
    regret_at,
    run_all,
    runs_at,
    wilcoxon,
)

OURS = ["random", "tpe", "tpe+median", "tpe+asha", "tpe+hyperband", "tpe+asha-r3"]
HEADLINE = 30  # B = 30 R


def _has(results: list[Result], problem: str, arm: str) -> bool:
    return any(r.problem == problem and r.arm == arm for r in results)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def budget_table(results: list[Result], problem: str, arms: list[str], budgets: list[int],
                 R: int) -> None:
    print(f"\n{problem}: median regret [IQR] at B epochs (regret = optimum - incumbent's true "
          f"quality), configurations at the largest B")
    head = "".join(f"{f'B={b}R':>24s}" for b in budgets)
    print(f"{'arm':22s}{head}{'configs':>9s}")
    for arm in arms:
        if not _has(results, problem, arm):
            continue
        cells = ""
        for b in budgets:
            lo, mid, hi = iqr([regret_at(r, b * R) for r in runs_at(results, problem, arm, b * R)])
            cells += f"{f'{_fmt(mid)} [{_fmt(lo)}, {_fmt(hi)}]':>24s}"
        configs = statistics.median(r.configs for r in largest(results, problem, arm))
        print(f"{arm:22s}{cells}{configs:9.0f}")


def ratio_epochs(results: list[Result], problem: str, arm: str, base: str, B: int,
                 relative_to_base: bool) -> list[float]:
    """Per seed: epochs ``arm``'s incumbent needs to reach ``base``'s quality at B (on the
    anytime curve of ``arm``'s largest run), over B (or over the epochs ``base`` needed)."""
    out = []
    for a, b in zip(largest(results, problem, arm), runs_at(results, problem, base, B),
                    strict=True):
        target = b.at(B)
        if target is None:
            continue
        need = epochs_to(a, target)
        out.append(need / (epochs_to(b, target) if relative_to_base else B))
    return out


def regrets(results: list[Result], problem: str, arm: str, B: int) -> list[float]:
    return [regret_at(r, B) for r in runs_at(results, problem, arm, B)]


def headline(results: list[Result], problem: str, R: int, tag: str) -> None:
    B = HEADLINE * R
    arms = {r.arm for r in results if r.problem == problem}
    if {"tpe+asha", "tpe"} <= arms:
        x = statistics.median(ratio_epochs(results, problem, "tpe+asha", "tpe", B, False))
        p = wilcoxon(regrets(results, problem, "tpe+asha", B), regrets(results, problem, "tpe", B))
        print(f"{tag}ratio epochs asha/tpe = {_fmt(x)}   (paired regret at 30R: p = {_fmt(p or 1)})")
    for other, label in (("optuna tpe+hyperband", "optuna-hyperband"), ("dehb", "dehb")):
        if {"tpe+asha", other} <= arms:
            a, o = regrets(results, problem, "tpe+asha", B), regrets(results, problem, other, B)
            ratio = statistics.median(a) / statistics.median(o) if statistics.median(o) \
                else (1.0 if statistics.median(a) == 0 else math.inf)
            p = wilcoxon(a, o)
            print(f"{tag}ratio regret asha/{label} = {_fmt(ratio)}   (medians {_fmt(statistics.median(a))} "
                  f"vs {_fmt(statistics.median(o))}; paired p = {_fmt(p or 1)})")


def best_of_ours(results: list[Result], problem: str, R: int, tag: str) -> None:
    B = HEADLINE * R
    ours = [a for a in OURS if _has(results, problem, a) and a not in ("random", "tpe")]
    if not ours or not _has(results, problem, "tpe"):
        return
    best = min(ours, key=lambda a: (statistics.median(regrets(results, problem, a, B)),
                                    statistics.mean(min(x, 1e9) for x in regrets(results, problem, a, B))))
    x = statistics.median(ratio_epochs(results, problem, best, "tpe", B, False))
    print(f"{tag}ratio epochs best({best})/tpe = {_fmt(x)}")
    for other, label in (("optuna tpe+hyperband", "optuna-hyperband"), ("dehb", "dehb")):
        if _has(results, problem, other):
            a, o = (statistics.median(regrets(results, problem, n, B)) for n in (best, other))
            print(f"{tag}ratio regret best({best})/{label} = "
                  f"{_fmt(a / o if o else (1.0 if a == 0 else math.inf))}")


def versus_random(results: list[Result], problem: str, R: int, tag: str) -> None:
    for arm in ("tpe+asha", "tpe+hyperband"):
        if _has(results, problem, arm) and _has(results, problem, "random"):
            x = statistics.median(ratio_epochs(results, problem, arm, "random", HEADLINE * R, True))
            print(f"{tag}ratio epochs {arm.split('+')[1]}/random = {_fmt(x)}   (epochs to random's "
                  f"quality at 30R, over random's own)")


def rung_correlations(problems: list[str]) -> None:
    from benchmarks.replay.problems import spearman_by_rung
    from benchmarks.replay.protocol import load_problem
    from search_spaces.schema import sample_params

    print("\nSpearman correlation of each rung's score (best val acc up to the rung, seed 0) with "
          "the true quality:")
    for name in problems:
        p = load_problem(name)
        if hasattr(p, "describe"):
            print(f"  {name}: {p.describe()}")
        configs = ([row["params"] for row in p.rows] if hasattr(p, "rows")
                   else sample_params(p.spec, 200, seed=7))
        corr = spearman_by_rung(p, configs, [1, 3, 9, 27])
        print(f"  {name:12s} ({len(configs)} configurations): "
              + ", ".join(f"epoch {e}: {c:.2f}" for e, c in corr.items()))


def plot(results: list[Result], problems: list[str], arms: list[str], path: Path) -> None:
    """Regret of the incumbent (optimum - true quality; log scale) against epochs: the median
    and inter-quartile band over seeds, of each arm's largest run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from benchmarks.replay.protocol import load_problem

    fig, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4.6), squeeze=False)
    for ax, name in zip(axes[0], problems, strict=True):
        R = load_problem(name).epochs
        top = max(r.spent for r in results if r.problem == name)
        xs = np.unique(np.geomspace(R / 3, top, 60).round())
        floor = 1e-3 if name == "sru-digits" else 1e-2
        for arm in arms:
            runs = largest(results, name, arm)
            if not runs:
                continue
            ys = np.array([[max(floor, r.optimum - q) if (q := r.at(x)) is not None else np.nan
                            for x in xs] for r in runs])
            _median_band(ax, xs / R, ys, arm, alpha=0.10)
        for b in (10, 30, 100):
            ax.axvline(b, color="0.75", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cumulative epochs / R (log scale; R = 27)")
        ax.set_ylabel(f"regret of the incumbent (median, IQR band; floor {floor:g})")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _median_band(ax: Any, xs: Any, ys: Any, arm: str, alpha: float) -> None:
    """One arm's median over seeds (the rows of ``ys``) with its inter-quartile band; the
    TPE + ASHA arms drawn thicker."""
    import numpy as np

    lo, mid, hi = np.nanpercentile(ys, [25, 50, 75], axis=0)
    line, = ax.plot(xs, mid, label=arm, lw=2.4 if arm.startswith("tpe+asha") else 1.3)
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=alpha)


def real_objective(arms: list[str], seeds: int, budget_r: int, out: Path) -> None:
    """The arms on real training (benchmarks/replay/real.py), reported and plotted."""
    import tempfile

    from benchmarks.replay.problems import TableProblem
    from benchmarks.replay.real import PROBLEM, RealFleet

    problem = TableProblem.load()
    R, results = problem.epochs, []
    B = budget_r * R
    print(f"real objective: {arms} x {seeds} seeds, budget {B} epochs, 2 worker processes")
    with tempfile.TemporaryDirectory() as tmp, RealFleet(Path(tmp), workers=2) as fleet:
        for seed in range(seeds):
            for arm in arms:
                r = fleet.run(problem, arm, seed, B)
                results.append(r)
                print(f"  {arm} seed {seed}: {r.extra['state']}, {r.spent} epochs, {r.configs} "
                      f"configurations, incumbent score {r.at(B)}, test acc "
                      f"{r.extra['test_acc']}, {r.seconds:.0f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_quality_real.json").write_text(json.dumps([asdict(r) for r in results]))
    print("arm          | median incumbent score at B/9, B/3, B | median test acc (retrain)")
    for arm in arms:
        runs = [r for r in results if r.arm == arm]
        at = [statistics.median(r.at(x) or 0.0 for r in runs) for x in (B / 9, B / 3, B)]
        tests = [r.extra["test_acc"] for r in runs if r.extra["test_acc"] is not None]
        print(f"{arm:12s} | " + ", ".join(f"{a:.4f}" for a in at)
              + f" | {statistics.median(tests) if tests else math.nan:.4f}")
    if {"tpe", "tpe+asha"} <= set(arms):
        xs = [R / 3 * (3 * budget_r) ** (i / 59) for i in range(60)]

        def mid(arm: str, x: float) -> float:
            return statistics.median(r.at(x) or 0.0 for r in results if r.arm == arm)

        share = sum(mid("tpe+asha", x) >= mid("tpe", x) for x in xs) / len(xs)
        print(f"share of the log-budget range [R/3, B] where tpe+asha's median anytime curve "
              f">= tpe's = {share:.2f}")
    plot_real(results, arms, R, out / "search_quality_real.png", PROBLEM)


def plot_real(results: list[Result], arms: list[str], R: int, path: Path, title: str) -> None:
    """The incumbent's own validation score (median and IQR over seeds) against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    top = max(r.budget for r in results)
    xs = np.unique(np.geomspace(R / 3, top, 60).round())
    fig, ax = plt.subplots(figsize=(6, 4.6))
    for arm in arms:
        ys = np.array([[q if (q := r.at(x)) is not None else np.nan for x in xs]
                       for r in results if r.arm == arm])
        _median_band(ax, xs / R, ys, arm, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel(f"cumulative epochs / R (log scale; R = {R})")
    ax.set_ylabel("incumbent's validation accuracy (median, IQR band)")
    ax.set_title(f"{title}: real training, 2 workers")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def load_runs(paths: list[Path], problems: list[str], arms: list[str]) -> list[Result]:
    """Saved runs of ``arms`` on ``problems``, each (problem, arm) from the first file that has
    it (e.g. this project's arms before a change, the outside arms from a run after it)."""
    out: list[Result] = []
    taken: set[tuple[str, str]] = set()
    for path in paths:
        runs = [Result(**{**r, "trace": [tuple(x) for x in r["trace"]]})
                for r in json.loads(path.read_text())["runs"]]
        here = {(r.problem, r.arm) for r in runs if r.problem in problems and r.arm in arms}
        out += [r for r in runs if (r.problem, r.arm) in here - taken]
        taken |= here
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budgets", default="10,30,100", help="budgets B, in units of R")
    ap.add_argument("--cut", action="store_true", help="size this project's studies by an "
                    "unbounded n_trials and cut them at B (as before studies had a budget)")
    ap.add_argument("--workers", type=int, default=4, help="simulated workers")
    ap.add_argument("--procs", type=int, default=2, help="processes running the simulations")
    ap.add_argument("--problems", default="sru-digits,mfh6-good,mfh6-bad")
    ap.add_argument("--arms", default=",".join(ARM_NAMES))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    ap.add_argument("--runs", default="", help="report on the runs saved in these "
                    "search_quality.json files (comma-separated) instead of running; an arm's "
                    "runs are taken from the first file that has them")
    ap.add_argument("--real", action="store_true", help="run the real-objective comparison "
                    "(real training, 2 workers) instead of the simulated protocol")
    ap.add_argument("--real-arms", default="tpe,tpe+asha")
    ap.add_argument("--real-seeds", type=int, default=5)
    ap.add_argument("--real-budget", type=int, default=10, help="B, in units of R")
    args = ap.parse_args()
    if args.real:
        real_arms = args.real_arms.split(",")
        bad = sorted(set(real_arms) - set(OURS))
        if bad:
            ap.error(f"--real-arms: unknown {bad[0]!r}; known: {', '.join(OURS)}")
        real_objective(real_arms, args.real_seeds, args.real_budget, args.out)
        return
    problems, arms = args.problems.split(","), args.arms.split(",")
    unknown = sorted(set(arms) - set(ARM_NAMES))
    if unknown:
        ap.error(f"--arms: unknown {unknown[0]!r}; known: {', '.join(ARM_NAMES)}")
    t0 = time.monotonic()
    budgets = [int(b) for b in args.budgets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs:  # report on saved runs: nothing is run, no runs file is written
        results = load_runs([Path(p) for p in args.runs.split(",")], problems, arms)
    else:
        print(f"{len(problems)} problems x {len(arms)} arms x {args.seeds} seeds, {args.workers} "
              f"simulated workers, budgets {budgets} R "
              f"({'cut' if args.cut else 'budgeted'} studies), {args.procs} processes", flush=True)
        results = run_all(problems, arms, args.seeds, args.workers, budgets, args.procs,
                          budgeted=not args.cut)
        (args.out / "search_quality.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()},
             "wall_seconds": time.monotonic() - t0, "runs": [asdict(r) for r in results]}))
    wall = time.monotonic() - t0
    from benchmarks.replay.protocol import load_problem

    for name in problems:
        budget_table(results, name, arms, budgets, load_problem(name).epochs)
    rung_correlations(problems)
    print()
    for name in problems:
        R, tag = load_problem(name).epochs, "" if name == "sru-digits" else f"[{name}] "
        headline(results, name, R, tag)
        best_of_ours(results, name, R, tag)
        if name != "sru-digits":
            versus_random(results, name, R, tag)
    plot(results, problems, arms, args.out / "search_quality.png")
    cpu = sum(r.seconds for r in results)
    print(f"\nplot: {args.out / 'search_quality.png'}; runs: {args.out / 'search_quality.json'}")
    print(f"{len(results)} runs in {wall:.0f} s ({cpu:.0f} s of simulation in {args.procs} "
          f"processes)")


if __name__ == "__main__":
    main()
