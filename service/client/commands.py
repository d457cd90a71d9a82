"""The CLI's client commands: submit, status, best, curves, report, delete, cancel. Each talks to
the API over HTTP (service/client/api_client.py); ``sru_hpo/cli.py`` registers them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from service.client.cli_io import ApiOpt, TokenOpt, console
from service.client.cli_io import call as _call
from service.client.cli_io import client_for as _client
from service.client.cli_io import load_body as _load_body
from service.client.cli_io import usage_error as _usage_error
from service.client.cli_io import writing as _writing

if TYPE_CHECKING:
    from service.studies.schemas import StudyPublic

__all__ = ["COMMANDS", "ACTIVE_STATES", "final_report"]

STUDY_ID = re.compile(r"[0-9A-Za-z]{1,64}")  # ids are 12 hex digits; any prefix of one works


def _sid(client, study_id: str) -> str:  # noqa: ANN001
    """The whole id for a unique prefix (status prints whole ids; any prefix works). Anything
    that is not letters and digits is refused here, before it becomes part of a URL path."""
    if not STUDY_ID.fullmatch(study_id):
        _usage_error("STUDY_ID", f"{study_id!r} is not a study id (letters and digits, as "
                     "`sru-hpo status` lists them)")
    return _call(client.resolve, study_id)


def submit(
    study_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML or JSON")],
    api: ApiOpt = None, token: TokenOpt = None,
) -> None:
    """Submit a study described in a YAML/JSON file."""
    body = _load_body(study_file, "STUDY_FILE", "the study")
    study = _call(_client(api, token).submit, body)
    console.print(f"study {study.id} ({study.name}) {study.state}")


def status(study_id: Annotated[str | None, typer.Argument()] = None,
           watch: Annotated[bool, typer.Option(
               "--watch", "-w", help="print again every --interval seconds; with a STUDY_ID, "
               "stop when the study ends")] = False,
           interval: Annotated[float, typer.Option(min=0.5, max=3600,
                                                   help="seconds between prints")] = 5.0,
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """All studies (fits 80 columns), or one study in detail: counts, best trial, retrain,
    and why it failed."""
    client = _client(api, token)
    sid = _sid(client, study_id) if study_id else None
    while True:
        if watch and console.is_terminal:
            console.clear()
        if sid is None:
            _status_all(client)
        else:
            study = _call(client.study, sid)
            _status_one(study)
            if study.state not in ACTIVE_STATES:
                return
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        console.print()


ACTIVE_STATES = ("queued", "running", "retraining")


def _status_all(client) -> None:  # noqa: ANN001
    table = Table(box=None, pad_edge=False)
    for col in ("id", "name", "state", "done/n", "run", "err", "best", "test"):
        table.add_column(col, no_wrap=col == "id")
    for s in _call(client.studies):
        c, best = s.counts, s.best
        table.add_row(s.id, s.name[:14], s.state, _progress(s), str(c.running), str(c.error),
                      f"{best.best_val_acc:.4f}" if best and best.best_val_acc is not None else "-",
                      f"{s.test_acc:.4f}" if s.test_acc is not None else "-")
    console.print(table)


def _progress(s: StudyPublic) -> str:
    """done/n for a study sized by n_trials; epochs spent/budget for one sized by compute."""
    if s.budget_epochs is not None:
        return f"{s.epochs_spent}/{s.budget_epochs:.0f}ep"
    return f"{s.counts.finished}/{s.n_trials}"


def _status_one(s: StudyPublic) -> None:
    c = s.counts
    console.print(f"[bold]{s.id}[/bold] {s.name} · {s.model} on {s.dataset} · {s.state} · "
                  f"{s.elapsed:.0f} s")
    of = f"/{s.n_trials}" if s.n_trials else ""
    console.print(f"trials: {c.finished}{of} finished (done {c.done}, error {c.error}), running "
                  f"{c.running}, new {c.new}, pruned {c.pruned}, diverged {c.diverged}, "
                  f"infeasible {c.infeasible}, timeout {c.timeout}, cancelled {c.cancelled}")
    f = s.failures
    if f.infrastructure or f.configuration:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(f.by_kind.items()))
        console.print(f"failures: infrastructure {f.infrastructure} (retried), configuration "
                      f"{f.configuration} (never retried): {kinds}")
    if c.paused or c.stopped_at_rung or s.promotions:
        console.print(f"rungs: paused {c.paused}, stopped at a rung {c.stopped_at_rung}, "
                      f"promotions {s.promotions}")
    budget = ""
    if s.budget_epochs is not None:
        budget = (f" of a budget of {s.budget_epochs:.0f} ({s.epochs_left or 0:.0f} not yet "
                  f"committed)")
    console.print(f"epochs: {s.epochs_spent} spent{budget}, {s.epochs_saved} saved "
                  f"against running every trial to {s.trial_epochs}")
    fid = [f"epoch {r.epoch}: {r.spearman:.2f} ({r.pairs} trials)"
           for r in s.fidelity if r.spearman is not None]
    if fid:
        console.print("rung vs top score (Spearman): " + ", ".join(fid))
    for a in s.advice:
        console.print(f"[yellow]advice: {a}")
    _best_lines(s)
    console.print(f"retrain: {s.retrain_state}" + _test_line(s))
    if s.error:
        console.print(f"[red]error: {s.error}")
    for g in s.error_groups:
        console.print(f"[red]  {g.count} trial(s) (e.g. {g.tids[0]}): {g.error}")


def _best_lines(s: StudyPublic) -> None:
    best = s.best
    if best is None:
        return
    memory = (f", peak memory {best.peak_rss_mb:.0f} MiB" if best.peak_rss_mb is not None
              else "") + (f" (GPU {best.peak_gpu_mb:.0f} MiB)" if best.peak_gpu_mb is not None
                          else "")
    acc = f"{best.best_val_acc:.4f}" if best.best_val_acc is not None else "-"
    console.print(f"best: trial {best.tid} val_acc {acc} at epoch {best.best_epoch}{memory}")
    console.print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(best.params.items())
                                   if k not in ("model", "dataset", "seed")))


def _test_line(s: StudyPublic) -> str:
    """", test accuracy 0.8900" or, over several seeds, ", test accuracy 0.8900 ± 0.0100 (3
    seeds; 0.0200 below validation)"."""
    if s.test_acc is None:
        return ""
    line = f", test accuracy {s.test_acc:.4f}"
    if s.tests > 1:
        sd = f" ± {s.test_acc_sd:.4f}" if s.test_acc_sd is not None else ""
        drop = f"; {s.test_drop:.4f} below validation" if s.test_drop is not None else ""
        line += f"{sd} ({s.tests} seeds{drop})"
    return line


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def best(study_id: str, k: Annotated[int, typer.Option("-k", min=1)] = 5,
         api: ApiOpt = None, token: TokenOpt = None) -> None:
    """The k best trials of a study with their parameters."""
    client = _client(api, token)
    trials = _call(client.best, _sid(client, study_id), k)
    table = Table()
    for col in ("tid", "val_acc", "epoch", "outcome", "params"):
        table.add_column(col)
    for t in trials:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in sorted(t.params.items())
                           if k not in ("model", "dataset", "seed"))
        table.add_row(str(t.tid), f"{t.best_val_acc:.4f}" if t.best_val_acc is not None else "-",
                      str(t.best_epoch), str(t.outcome), params)
    console.print(table)


def curves(study_id: str,
           png: Annotated[Path | None, typer.Option(help="write a plot of every curve here")] = None,
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Learning curves of every trial (and the retrain)."""
    if png is not None and not png.parent.is_dir():
        _usage_error("--png", f"can not write {png}: {png.parent} is not a folder")
    client = _client(api, token)
    sid = _sid(client, study_id)
    data = _call(client.curves, sid)
    table = Table()
    for col in ("tid", "kind", "state", "outcome", "epochs", "last val_acc", "best val_acc"):
        table.add_column(col, no_wrap=col in ("state", "outcome"))  # never "stopped_at_r…"
    for c in data:
        accs = [p.val_acc for p in c.points]
        table.add_row(str(c.tid), c.kind, c.state, str(c.outcome), str(len(accs)),
                      f"{accs[-1]:.4f}" if accs else "-", f"{max(accs):.4f}" if accs else "-")
    console.print(table)
    if png is not None:
        from service.client.report import plot_curves

        study = _call(client.study, sid)
        best_tid = study.best.tid if study.best else None
        _writing("--png", png, lambda: plot_curves(data, png, f"study {sid}", best_tid))
        console.print(f"plot written to {png}")


def report(study_id: str,
           out: Annotated[Path, typer.Option("--out", help="folder for the files")] = Path("report"),
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """A study as files: curves, best-so-far, parameter slices and importance as PNGs;
    trials.csv, curves.csv and study.json."""
    from service.client.report import write_report

    client = _client(api, token)
    sid = _sid(client, study_id)
    files, skipped = _writing("--out", out, lambda: _call(write_report, client, sid, out))
    for f in files:
        console.print(f"wrote {f}")
    for name, why in skipped.items():
        console.print(f"skipped {out / name}: {why}")


def delete(study_id: str,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Delete a study with its trials, curves and checkpoints (a running one is cancelled
    first)."""
    client = _client(api, token)
    sid = _sid(client, study_id)
    study = _call(client.study, sid)
    if not yes and not typer.confirm(f"delete study {sid} ({study.name}, {study.state}) "
                                     "with its trials, curves and checkpoints?"):
        console.print("not deleted")
        raise typer.Exit(1)
    _call(client.delete, sid)
    console.print(f"study {sid} deleted")


def cancel(study_id: str, api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Cancel a study: queued trials now, running ones after their current epoch."""
    client = _client(api, token)
    r = _call(client.cancel, _sid(client, study_id))
    console.print(f"study {r.id} cancelled: {r.queued_cancelled} queued trial(s) cancelled, "
                  f"{r.running_stopping} running trial(s) stopping")


def final_report(client, study: StudyPublic, out_dir: Path) -> None:  # noqa: ANN001
    """The demo's last words: the retrained winner, its test accuracy, its curves and weights
    (written to ``out_dir``); exit 1 when the study did not complete."""
    sid = study.id
    if study.state != "completed" or study.best is None:
        console.print(f"[red]study ended {study.state}: {study.error}")
        for g in study.error_groups:
            console.print(f"[red]  {g.count} trial(s): {g.error}")
        raise typer.Exit(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    retrain = _call(client.retrain, sid)
    curves = _call(client.curves, sid)
    (out_dir / "curves.json").write_text(
        json.dumps([c.model_dump(mode="json") for c in curves], indent=1))
    from service.client.report import plot_curves, retrain_source

    plot_curves(curves, out_dir / "curves.png", f"study {sid}", study.best.tid, retrain)
    ckpt = out_dir / f"{sid}.pt"
    ckpt.write_bytes(_call(client.checkpoint, sid))
    table = Table(title="best configuration (retrained)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in sorted((retrain.params or {}).items()):
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"search: {study.counts.finished} trials, {study.epochs_spent} epochs "
                  f"({study.epochs_saved} saved by the scheduler)")
    console.print(f"search best val_acc {study.best.best_val_acc:.4f} (trial {study.best.tid}); "
                  f"retrain of trial {retrain_source(retrain)}: best val_acc "
                  f"{retrain.best_val_acc:.4f} at epoch {retrain.best_epoch}")
    seeds = len(retrain.evaluations) or 1
    sd = f" ± {retrain.test_acc_sd:.4f}" if retrain.test_acc_sd is not None else ""
    console.print(f"[bold]test accuracy {retrain.test_acc:.4f}{sd}[/bold] (evaluated once "
                  f"per seed, {seeds} seed(s), after the search)")
    console.print(f"curves: {out_dir / 'curves.json'} and {out_dir / 'curves.png'}; "
                  f"checkpoint: {ckpt}; total {study.elapsed:.0f} s")


COMMANDS: dict[str, Callable[..., Any]] = {
    "submit": submit, "status": status, "best": best, "curves": curves, "report": report,
    "delete": delete, "cancel": cancel}
