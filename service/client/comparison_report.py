"""``sru-hpo compare report``: a comparison as files, laid out like the SRU paper's table.

- ``comparison.md``: variant, test accuracy ± sd (over the seeds), parameters, budget, then
  the search's best validation accuracy, epochs and hours spent, epochs to 95% of its own best;
- ``comparison.csv``: the same rows, one column per number;
- ``anytime.png``: best validation accuracy so far against cumulative epochs, one line per
  variant (the anytime curves HPO research compares methods by).

Everything is read from ``GET /comparisons/ID`` (a ``ComparisonPublic`` as JSON).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

__all__ = ["rows", "to_markdown", "to_csv", "write_comparison_report", "COLUMNS"]

COLUMNS = ("variant", "state", "test_acc", "test_acc_sd", "tests", "n_params", "budget_epochs",
           "best_val_acc", "test_drop", "epochs_spent", "trial_hours", "epochs_to_95", "trials",
           "study_id")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def accuracy_cell(r: dict[str, Any]) -> str:
    """``95.1 ± 0.4`` (percent), ``95.1`` for one seed, ``-`` before any test."""
    if r.get("test_acc") is None:
        return "-"
    sd = r.get("test_acc_sd")
    return _pct(r["test_acc"]) + (f" ± {100 * sd:.1f}" if sd is not None else "")


def rows(c: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat dict per variant with ``COLUMNS``."""
    budget = c["budget"].get("epochs")
    return [{**{k: r.get(k) for k in COLUMNS}, "budget_epochs": budget} for r in c["rows"]]


def to_csv(c: dict[str, Any]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows(c))
    return out.getvalue()


def _budget(c: dict[str, Any]) -> str:
    b = c["budget"]
    return f"{b['epochs']} epochs" if b.get("epochs") is not None else f"{b['hours']} h"


def to_markdown(c: dict[str, Any]) -> str:
    head = ["variant", "test accuracy (%) ± sd", "parameters", "budget", "best val (%)",
            "epochs spent", "hours", "epochs to 95%", "state"]
    lines = [f"# {c['name']}: {c['dataset']}, {c['retrain_seeds']} seed(s) × "
             f"{c['retrain_epochs']} epochs for the winner", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in c["rows"]:
        cells = [r["variant"], accuracy_cell(r), "-" if r.get("n_params") is None
                 else f"{r['n_params']:,}", _budget(c), _pct(r.get("best_val_acc")),
                 str(r.get("epochs_spent", 0)), f"{r.get('trial_hours', 0.0):.2f}",
                 "-" if r.get("epochs_to_95") is None else str(r["epochs_to_95"]), r["state"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Budget per variant: {_budget(c)} of search trials of {c['trial_epochs']} "
              f"epochs (scheduler {c['scheduler']['rule']}); the epochs spent differ by "
              f"{c['epochs_spread']}. Test accuracy: the mean over the seeds, each seed's "
              "test set read once."]
    return "\n".join(lines) + "\n"


def plot_anytime(c: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for r in c["rows"]:
        pts = r.get("anytime") or []
        if pts:
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post",
                    marker="o" if len(pts) <= 5 else None, label=r["variant"])
    ax.set_xlabel("cumulative epochs of search trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{c['name']}: anytime curves at a budget of {_budget(c)}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_comparison_report(c: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"comparison.md": to_markdown(c), "comparison.csv": to_csv(c),
             "comparison.json": json.dumps(c, indent=1)}
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    plot_anytime(c, out / "anytime.png")
    return [*written, out / "anytime.png"]
