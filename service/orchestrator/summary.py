"""A study's published summary, computed from the driver's job cache.

The driver (service/orchestrator/driver.py) writes it into the study document whenever it changes, so the
API reads a study in O(1). It holds: the counts; the best trial; the error groups; epochs spent
and saved against running every configuration to ``trial_epochs``; promotions; the budget
(epochs allowed, committed, left); the final evaluation (service/orchestrator/evaluation.py: its state,
the test accuracy's mean and sd over the seeds); the anytime curve; the top-k rank
correlation; and the **fidelity** of each rung: Spearman's correlation between a rung's score
and the top score over trials that reached both, with advice when rung 1 ranks trials poorly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.orchestrator.evaluation import FinalEvaluation
from trials.budget import Budget
from trials.cache import TrialCache
from trials.records import JobRecord, Study
from trials.states import CONFIGURATION_OUTCOMES, JobKind, JobState
from trials.summary_doc import BestTrialDoc, ErrorGroupDoc, FailureCounts, RungFidelityDoc, Summary

__all__ = ["summarize", "error_groups", "failure_counts", "anytime", "epochs_to_fraction",
           "spearman", "rung_fidelity", "fidelity_advice",
           "ADVICE_PAIRS", "ADVICE_BELOW"]

ADVICE_PAIRS, ADVICE_BELOW = 8, 0.5  # advise a larger min_epochs below this ρ with this many pairs


def error_groups(jobs: Sequence[JobRecord], keep: int = 5) -> list[ErrorGroupDoc]:
    """Errored and infeasible jobs grouped by message, most frequent first: {error, count,
    tids (first 10)}."""
    groups: dict[str, list[int]] = {}
    for j in sorted((j for j in jobs if j.raised), key=lambda j: j.tid):
        groups.setdefault(str(j.error or "unknown error"), []).append(j.tid)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return [{"error": e, "count": len(t), "tids": t[:10]} for e, t in ranked[:keep]]


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (scipy's), None for fewer than 3 pairs or no variation."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    r = float(spearmanr(xs, ys).statistic)
    return r if math.isfinite(r) else None


def rung_fidelity(trials: Sequence[JobRecord], grid: list[int], top: int
                  ) -> list[RungFidelityDoc]:
    """Per rung: {epoch, pairs, spearman}: how well the rung's score ranks the trials that
    also reached the top by their top score (None below 3 pairs)."""
    out: list[RungFidelityDoc] = []
    for epoch in grid:
        pairs = [(s[str(epoch)], s[str(top)]) for t in trials
                 if str(epoch) in (s := t.result.rung_scores) and str(top) in s]
        out.append({"epoch": epoch, "pairs": len(pairs),
                    "spearman": spearman([a for a, _ in pairs], [b for _, b in pairs])})
    return out


def fidelity_advice(fidelity: list[RungFidelityDoc]) -> list[str]:
    if not fidelity:
        return []
    first = fidelity[0]
    rho = first["spearman"]
    if rho is None or first["pairs"] < ADVICE_PAIRS or rho >= ADVICE_BELOW:
        return []
    return [f"rung 1 (epoch {first['epoch']}) ranks trials poorly: Spearman {rho:.2f} with the "
            f"top score over {first['pairs']} trials; raise scheduler.min_epochs"]


def _best_fields(best: JobRecord | None) -> BestTrialDoc | None:
    if best is None:
        return None
    r = best.result
    return {"tid": best.tid, "best_val_acc": r.best_val_acc, "best_epoch": r.best_epoch,
            "outcome": best.outcome and best.outcome.value, "epochs_run": r.epochs_run,
            "params": dict(best.params),
            "peak_rss_mb": r.peak_rss_mb, "peak_gpu_mb": r.peak_gpu_mb}


def failure_counts(jobs: Sequence[JobRecord]) -> FailureCounts:
    """Failures by class (trials/states.py): every infrastructure failure a job was retried
    after (or ran out of retries on), and the trials whose parameters failed."""
    by_kind: dict[str, int] = {}
    infrastructure = configuration = 0
    for j in jobs:
        for kind, n in j.history.failures.items():
            by_kind[kind] = by_kind.get(kind, 0) + int(n)
            infrastructure += int(n)
        if j.outcome in CONFIGURATION_OUTCOMES:
            by_kind[str(j.outcome)] = by_kind.get(str(j.outcome), 0) + 1
            configuration += 1
    return {"infrastructure": infrastructure, "configuration": configuration,
            "by_kind": by_kind}


def summarize(study: Study, cache: TrialCache, best: JobRecord | None) -> Summary:
    """The summary of ``study`` from its ``cache``; ``best``: the trial the driver ranks
    first."""
    trials = cache.of_kind(JobKind.TRIAL)
    grid, top = study.grid, study.trial_epochs
    ran = [t.trained for t in trials if t.state == JobState.DONE]
    cut = [t.trained for t in trials if t.state == JobState.CANCELLED]  # by a cancel
    budget = Budget.of(study, trials, grid)
    tests = cache.of_kind(JobKind.TEST)
    final = FinalEvaluation.of(study, cache.of_kind(JobKind.RETRAIN), tests)
    fidelity = rung_fidelity(trials, grid, top)
    return {
        "counts": cache.counts(),
        "best": _best_fields(best),
        "error_groups": error_groups(trials),
        "failures": failure_counts(trials + cache.of_kind(JobKind.RETRAIN) + tests),
        "epochs_spent": sum(ran) + sum(cut),
        "epochs_saved": sum(top - r for r in ran),
        "epochs_committed": budget.committed,
        "budget_epochs": budget.limit if budget.bounded else None,
        "epochs_left": budget.left if budget.bounded else None,
        "promotions": sum(t.history.promotions for t in trials),
        "retrain_state": final.state(),
        **final.stats(),  # test_acc (the mean over seeds), test_acc_sd, tests, val_acc, ...
        "trial_hours": sum(t.result.seconds or 0.0 for t in trials) / 3600,
        "anytime": anytime(trials),
        "rank_correlation": rank_correlation(cache),
        "fidelity": fidelity,
        "advice": fidelity_advice(fidelity),
    }


def anytime(trials: Sequence[JobRecord]) -> list[list[float]]:
    """The search's anytime curve, as the points where it improved: [cumulative epochs, best
    validation accuracy so far], each trial counted once, at its last report (finished,
    paused or cut by a cancel), in the order of those reports."""
    reported = sorted((t for t in trials if t.trained > 0),
                      key=lambda t: (t.refresh_time or 0.0, t.tid))
    out: list[list[float]] = []
    spent, best = 0, -1.0
    for t in reported:
        spent += t.trained
        acc = t.result.best_val_acc or 0.0
        if acc > best:
            best = acc
            out.append([spent, acc])
    if out and out[-1][0] != spent:
        out.append([spent, best])  # the curve runs to the epochs spent
    return out


def epochs_to_fraction(curve: list[list[float]], fraction: float = 0.95) -> int | None:
    """Epochs the search took to reach ``fraction`` of its own final best validation accuracy
    (a measure of how hard the space is to tune); None before any report."""
    if not curve:
        return None
    final = curve[-1][1]
    return next(int(e) for e, acc in curve if acc >= fraction * final)


def rank_correlation(cache: TrialCache) -> float | None:
    """Search score against retrain validation accuracy over the finished retrains."""
    by_id = {t.id: t for t in cache.of_kind(JobKind.TRIAL)}
    pairs = []
    for r in cache.of_kind(JobKind.RETRAIN):
        src = by_id.get(r.source or "")
        if r.state == JobState.DONE and src is not None:
            pairs.append((src.result.best_val_acc or 0.0, r.result.best_val_acc or 0.0))
    return spearman([p[0] for p in pairs], [p[1] for p in pairs])
