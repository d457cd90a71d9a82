"""``sru-hpo report``: a study as files — PNGs with readable axes, CSV exports, and JSON.

- ``curves.png``: every search trial's validation accuracy against epoch on one axis (best
  highlighted, pruned/stopped dashed, diverged/error dotted), the retrain on its own axis
  beside it, integer epoch ticks, a legend naming the kinds of line;
- ``best_so_far.png``: best validation accuracy against trial number and against cumulative
  epochs (compute);
- ``params.png``: one slice per searched parameter (log x where the space is log);
- ``importance.png``: the API's parameter importance (when there are enough trials);
- ``trials.csv`` (one row per trial, a column per parameter, as ``GET /studies/ID/trials.csv``),
  ``curves.csv`` (long format: tid, kind, epoch, metrics), ``study.json`` (the study and its
  retrain).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.studies.schemas import (
        Importance,
        InlineSpace,
        RetrainPublic,
        TrialCurve,
        TrialPublic,
    )

__all__ = ["write_report", "plot_curves", "retrain_source"]

STYLE = {"pruned": ("--", "0.6"), "stopped_at_rung": ("--", "tab:orange"),
         "diverged": (":", "tab:red"), "error": (":", "tab:red"), "cancelled": ("-.", "0.5")}


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    return plt, MaxNLocator


def retrain_source(retrain: RetrainPublic | None) -> int | None:
    """The search trial whose configuration the chosen retrain trained (``GET …/retrain``)."""
    if retrain is None:
        return None
    return next((c.source_tid for c in retrain.candidates if c.tid == retrain.tid), None)


def _marker(n_points: int) -> str | None:
    """Markers where a curve has few points: a 1-epoch curve is otherwise not drawn at all."""
    return "o" if n_points <= 5 else None


def plot_curves(curves: list[TrialCurve], path: Path, title: str,
                best_tid: int | None = None, retrain: RetrainPublic | None = None) -> None:
    """Trials and the retrain on separate axes, so a long retrain does not squash the trials.
    ``retrain`` (``GET …/retrain``) picks the chosen retrain and names the trial it retrains."""
    plt, MaxNLocator = _plt()
    chosen = retrain.tid if retrain else None
    retrains = sorted((c for c in curves if c.kind == "retrain" and c.points),
                      key=lambda c: c.tid != chosen)
    trials = [c for c in curves if c.kind == "trial" and c.points]
    fig, axes = plt.subplots(1, 2 if retrains else 1, figsize=(12 if retrains else 8, 4.5),
                             squeeze=False)
    ax = axes[0][0]
    seen: set[str] = set()
    for c in trials:
        outcome = c.outcome or c.state
        best = c.tid == best_tid
        ls, color = ("-", "tab:blue") if best else STYLE.get(outcome, ("-", None))
        label = (f"trial {c.tid} (best)" if best
                 else outcome if outcome not in seen else None)
        seen.add(outcome)
        ax.plot([p.epoch for p in c.points], [p.val_acc for p in c.points],
                ls=ls, color=color, lw=2.5 if best else 1, alpha=1 if best else 0.7, label=label,
                marker=_marker(len(c.points)), markersize=4)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title=f"{title}: {len(trials)} trials")
    for a in axes[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    if trials:
        ax.legend(fontsize=8)
    if retrains:
        r = retrains[0]
        source = retrain_source(retrain) if r.tid == chosen else None
        ax2 = axes[0][1]
        ax2.plot([p.epoch for p in r.points], [p.val_acc for p in r.points],
                 color="tab:red", lw=2, marker=_marker(len(r.points)),
                 label="retrain" + (f" of trial {source}" if source is not None else ""))
        ax2.set(xlabel="epoch", ylabel="validation accuracy", title="retrain of the best")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _best_so_far(trials: list[TrialPublic], path: Path) -> None:
    plt, MaxNLocator = _plt()
    done = sorted((t for t in trials if t.best_val_acc is not None), key=lambda t: t.tid)
    best, epochs, xs, es, ys = 0.0, 0, [], [], []
    for t in done:
        best, epochs = max(best, t.best_val_acc or 0.0), epochs + int(t.epochs_run or 0)
        xs.append(t.tid)
        es.append(epochs)
        ys.append(best)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.step(xs, ys, where="post")
    a.set(xlabel="trial number", ylabel="best validation accuracy so far")
    b.step(es, ys, where="post", color="tab:green")
    b.set(xlabel="cumulative epochs (compute)", ylabel="best validation accuracy so far")
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _params(space: str | InlineSpace, trials: list[TrialPublic], path: Path) -> None:
    from search_spaces.schema import Choice, LogUniform
    from service.studies.analysis import searched_params

    plt, _ = _plt()
    params = {} if isinstance(space, str) else searched_params(space.model_dump())
    done = [t for t in trials if t.best_val_acc is not None]
    n = max(len(params), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, spec) in zip(axes.flat, sorted(params.items()), strict=False):
        xs = [t.params.get(name) for t in done]
        if isinstance(spec, Choice):
            xs = [str(x) for x in xs]
        ax.scatter(xs, [t.best_val_acc for t in done], c=[t.tid for t in done],
                   cmap="Blues", edgecolors="0.3", s=28)
        if isinstance(spec, LogUniform):
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel="best val acc")
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _importance(imp: Importance, path: Path) -> str | None:
    """Writes the plot, or returns why there is none."""
    if not imp.importances:
        return imp.message or (f"no importance estimate: {imp.n_trials} finished trials, "
                               f"{imp.min_trials} needed")
    plt, _ = _plt()
    rows = list(reversed(imp.importances))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    ax.barh([r.param for r in rows], [r.importance for r in rows])
    ax.set(xlabel="importance (sums to 1)", title=f"{imp.method}; {imp.n_trials} trials")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def _curves_csv(curves: list[TrialCurve], path: Path) -> None:
    keys = ["train_loss", "val_loss", "val_acc", "lr", "seconds"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tid", "kind", "epoch", *keys])
        for c in curves:
            for p in c.points:
                w.writerow([c.tid, c.kind, p.epoch, *(getattr(p, k) for k in keys)])


def write_report(client, sid: str, out: Path  # noqa: ANN001 - ApiClient
                 ) -> tuple[list[Path], dict[str, str]]:
    """Everything above for study ``sid`` into ``out``; returns the files written and, for each
    file not written, why."""
    out.mkdir(parents=True, exist_ok=True)
    study = client.study(sid)
    retrain = client.retrain(sid)
    trials = client.trials(sid)
    curves = client.curves(sid)
    importance = client.importance(sid)  # every read before the plots, which take seconds
    (out / "study.json").write_text(json.dumps({"study": study.model_dump(mode="json"),
                                                "retrain": retrain.model_dump(mode="json")},
                                               indent=1))
    (out / "trials.csv").write_text(client.trials_csv(sid))
    _curves_csv(curves, out / "curves.csv")
    plot_curves(curves, out / "curves.png", f"study {sid}",
                study.best.tid if study.best else None, retrain)
    _best_so_far(trials, out / "best_so_far.png")
    _params(study.space, trials, out / "params.png")
    files = ["study.json", "trials.csv", "curves.csv", "curves.png", "best_so_far.png",
             "params.png"]
    skipped: dict[str, str] = {}
    if why := _importance(importance, out / "importance.png"):
        skipped["importance.png"] = why
    else:
        files.append("importance.png")
    return [out / f for f in files], skipped
