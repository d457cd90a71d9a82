"""``sru-hpo compare report``: a comparison as files, laid out like the SRU paper's table.

- ``comparison.md``: variant, test accuracy ± sd (over the seeds), parameters, budget, then
  the search's best validation accuracy, epochs and hours spent, epochs to 95% of its own best;
- ``comparison.csv``: the same rows, one column per number;
- ``anytime.png``: best validation accuracy so far against cumulative epochs, one line per
  variant (the anytime curves HPO research compares methods by).

Everything is read from ``GET /comparisons/ID``: the ``ComparisonPublic`` the API client hands out
(service/studies/schemas.py), read by field.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from service.studies.schemas import ComparisonPublic, ComparisonRow

__all__ = ["rows", "to_markdown", "to_csv", "write_comparison_report", "COLUMNS"]

COLUMNS = ("variant", "state", "test_acc", "test_acc_sd", "tests", "n_params", "budget_epochs",
           "best_val_acc", "test_drop", "epochs_spent", "trial_hours", "epochs_to_95", "trials",
           "study_id")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def accuracy_cell(r: ComparisonRow) -> str:
    """``95.1 ± 0.4`` (percent), ``95.1`` for one seed, ``-`` before any test."""
    if r.test_acc is None:
        return "-"
    sd = r.test_acc_sd
    return _pct(r.test_acc) + (f" ± {100 * sd:.1f}" if sd is not None else "")


def rows(c: ComparisonPublic) -> list[dict[str, str | int | float | None]]:
    """One flat dict per variant with ``COLUMNS`` (a CSV row: column name → cell)."""
    return [{**r.model_dump(include=set(COLUMNS)), "budget_epochs": c.budget.epochs}
            for r in c.rows]


def to_csv(c: ComparisonPublic) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows(c))
    return out.getvalue()


def _budget(c: ComparisonPublic) -> str:
    b = c.budget
    return f"{b.epochs} epochs" if b.epochs is not None else f"{b.hours} h"


def to_markdown(c: ComparisonPublic) -> str:
    head = ["variant", "test accuracy (%) ± sd", "parameters", "budget", "best val (%)",
            "epochs spent", "hours", "epochs to 95%", "state"]
    lines = [f"# {c.name}: {c.dataset}, {c.retrain_seeds} seed(s) × "
             f"{c.retrain_epochs} epochs for the winner", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in c.rows:
        cells = [r.variant, accuracy_cell(r), "-" if r.n_params is None else f"{r.n_params:,}",
                 _budget(c), _pct(r.best_val_acc), str(r.epochs_spent), f"{r.trial_hours:.2f}",
                 "-" if r.epochs_to_95 is None else str(r.epochs_to_95), r.state]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Budget per variant: {_budget(c)} of search trials of {c.trial_epochs} "
              f"epochs (scheduler {c.scheduler.rule}); the epochs spent differ by "
              f"{c.epochs_spread}. Test accuracy: the mean over the seeds, each seed's "
              "test set read once."]
    return "\n".join(lines) + "\n"


def plot_anytime(c: ComparisonPublic, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for r in c.rows:
        pts = r.anytime
        if pts:
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post",
                    marker="o" if len(pts) <= 5 else None, label=r.variant)
    ax.set_xlabel("cumulative epochs of search trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{c.name}: anytime curves at a budget of {_budget(c)}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_comparison_report(c: ComparisonPublic, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"comparison.md": to_markdown(c), "comparison.csv": to_csv(c),
             "comparison.json": c.model_dump_json(indent=1)}
    written = []
    for name, text in files.items():
        (out / name).write_text(text)
        written.append(out / name)
    plot_anytime(c, out / "anytime.png")
    return [*written, out / "anytime.png"]
