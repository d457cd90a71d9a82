"""``sru-hpo compare submit|status|report``: comparisons from the command line
(service/studies/comparisons.py has what a comparison is; service/client/comparison_report.py its files)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from service.client.cli_io import ApiOpt, TokenOpt, call, client_for, console, load_body, usage_error, writing

if TYPE_CHECKING:
    from service.studies.schemas import ComparisonPublic

compare_app = typer.Typer(no_args_is_help=True, help="Variants (sru, gru, lstm, sru-iid, "
                          "sru-recur, sru-multi) tuned at one budget, then evaluated over seeds.")


def _cid(client, cid: str) -> str:  # noqa: ANN001
    from service.client.api_client import ApiError

    try:
        return client.resolve_comparison(cid)
    except ApiError as exc:
        if exc.status == 404:
            usage_error("COMPARISON_ID", f"no comparison {cid!r}")
        raise


@compare_app.command("submit")
def submit(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                help="YAML or JSON")],
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Submit a comparison described in a YAML/JSON file."""
    body = load_body(file, "FILE", "the comparison")
    c = call(client_for(api, token).submit_comparison, body, what="comparison")
    console.print(f"comparison {c.id} ({c.name}) {c.state}: "
                  + ", ".join(f"{r.variant} = study {r.study_id}" for r in c.rows))


def _table(c: ComparisonPublic) -> Table:
    from service.client.comparison_report import accuracy_cell

    table = Table(box=None, pad_edge=False, title=f"{c.id} {c.name} · {c.dataset} · {c.state}")
    for col in ("variant", "state", "trials", "epochs", "best val", "test ± sd", "params",
                "ep→95%"):
        table.add_column(col, no_wrap=True)
    for r in c.rows:
        table.add_row(r.variant, r.state, str(r.trials), str(r.epochs_spent),
                      f"{r.best_val_acc:.4f}" if r.best_val_acc is not None else "-",
                      accuracy_cell(r), f"{r.n_params:,}" if r.n_params else "-",
                      str(r.epochs_to_95) if r.epochs_to_95 is not None else "-")
    return table


@compare_app.command("status")
def status(comparison_id: str,
           watch: Annotated[bool, typer.Option("--watch", "-w", help="print again every "
                                               "--interval seconds until it ends")] = False,
           interval: Annotated[float, typer.Option(min=0.5, max=3600)] = 5.0,
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """One row per variant: trials, epochs, best validation and test accuracy (± sd)."""
    client = client_for(api, token)
    cid = _cid(client, comparison_id)
    while True:
        c = call(client.comparison, cid)
        console.print(_table(c))
        budget = c.budget
        console.print(f"budget per variant: {budget.epochs or budget.hours} "
                      f"{'epochs' if budget.epochs else 'hours'}; spent differ by "
                      f"{c.epochs_spread} epochs; test accuracy over {c.retrain_seeds} "
                      f"seed(s)")
        if not watch or c.state != "running":
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


@compare_app.command("report")
def report(comparison_id: str,
           out: Annotated[Path, typer.Option("--out", help="folder for the files")] = Path(
               "comparison"),
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """comparison.md (laid out like the paper's table), comparison.csv, comparison.json and
    anytime.png."""
    from service.client.comparison_report import write_comparison_report

    client = client_for(api, token)
    c = call(client.comparison, _cid(client, comparison_id))
    files = writing("--out", out, lambda: write_comparison_report(c, out))
    console.print(_table(c))
    for f in files:
        console.print(f"wrote {f}")
