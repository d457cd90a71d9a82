"""The ``sru-hpo`` command: train, worker, serve, up, demo and the API client commands."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli_io import ApiOpt, TokenOpt, console
from service.cli_io import call as _call
from service.cli_io import client_for as _client
from service.cli_io import load_body as _load_body
from service.cli_io import usage_error as _usage_error
from service.cli_io import writing as _writing
from workers.cli import train_command, worker_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter optimization for the Statistical Recurrent Unit.")
app.command("train")(train_command)
app.command("worker")(worker_command)


#: The demo study: a budgeted ASHA search (README "Measured" compares it with the median rule at
#: the same budget; the replay benchmark with everything else).
DEMO_STUDY: dict[str, Any] = {
    "name": "demo", "model": "sru", "dataset": "digits", "space": "sru_digits",
    "algorithm": "tpe", "budget": {"epochs": 100}, "parallelism": 2, "trial_epochs": 10,
    "retrain_epochs": 150, "seed": 0,
}
#: The demo's schedulers.
DEMO_SCHEDULERS: dict[str, dict[str, Any]] = {
    "median": {"rule": "median", "warmup": 3, "min_trials": 3},
    "asha": {"rule": "asha", "min_epochs": 1, "reduction": 3},
    "off": {"rule": "off"},
}


def _print_version(value: bool) -> None:
    if value:
        from service import __version__

        console.print(f"sru-hpo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="print the version")] = False,
          ) -> None:
    """Hyperparameter optimization for the Statistical Recurrent Unit."""


STUDY_ID = re.compile(r"[0-9A-Za-z]{1,64}")  # ids are 12 hex digits; any prefix of one works


def _sid(client, study_id: str) -> str:  # noqa: ANN001
    """The whole id for a unique prefix (status prints whole ids; any prefix works). Anything
    that is not letters and digits is refused here, before it becomes part of a URL path."""
    if not STUDY_ID.fullmatch(study_id):
        _usage_error("STUDY_ID", f"{study_id!r} is not a study id (letters and digits, as "
                     "`sru-hpo status` lists them)")
    return _call(client.resolve, study_id)


# -- servers ----------------------------------------------------------------------------------------
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@app.command()
def serve() -> None:
    """Run the API (and the study drivers). Without SRU_HPO_MONGO_URL: an embedded database."""
    import logging

    import uvicorn

    from service.app import create_app
    from service.embedded_db import DatabaseInUse, EmbeddedMongo
    from trials.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    if settings.host not in LOOPBACK and not settings.api_token:
        raise typer.BadParameter(
            f"the API would listen on {settings.host}, beyond this machine, with no token; set "
            "SRU_HPO_API_TOKEN (and SRU_HPO_ALLOWED_HOSTS to the names clients use)",
            param_hint="SRU_HPO_HOST")
    db = None
    if not settings.mongo_url:  # started here, in the main thread: it dies with this process
        try:
            db = EmbeddedMongo(settings.home / "db").start()
        except DatabaseInUse as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(3) from None
        settings = settings.model_copy(update={"mongo_url": db.url})
        logging.getLogger("sru_hpo.api").info("embedded database at %s (data in %s)", db.url,
                                              db.folder)
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                    log_level="info")
    finally:
        if db is not None:
            db.stop()


def _start_cluster(cluster) -> None:  # noqa: ANN001
    from service.embedded_db import DatabaseInUse
    from service.launcher import PortBusy

    try:
        cluster.start()
    except (PortBusy, DatabaseInUse) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from None


DeviceOpt = Annotated[str, typer.Option(help="the workers' --device (auto | cpu | cuda:N)")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="the API's port "
                                             "[default: SRU_HPO_PORT, 8000]")]


@app.command()
def up(workers: Annotated[int, typer.Option(min=0, help="local worker processes")] = 2,
       device: DeviceOpt = "auto",
       max_restarts: Annotated[int, typer.Option(
           min=0, help="give up when one part restarts more than this many times in 60 s")] = 5,
       port: PortOpt = None,
       ) -> None:
    """Embedded database (unless SRU_HPO_MONGO_URL is set), the API and N workers, supervised:
    a part that dies is restarted. Ctrl-C (or SIGTERM/SIGHUP) stops them all."""
    from service.launcher import Cluster, GiveUp, stop_signals
    from trials.settings import Settings

    stop = stop_signals()
    threads = max(1, (os.cpu_count() or 2) // max(workers, 1))
    cluster = Cluster(Settings(), workers, port=port, worker_threads=threads, device=device,
                      max_restarts=max_restarts, say=lambda m: console.print(f"[yellow]{m}"))
    try:
        _start_cluster(cluster)
        console.print(f"API on {cluster.api_url} (dashboard /, docs /docs), {workers} worker(s); "
                      f"logs in {cluster.log_dir()}. Ctrl-C stops.")
        cluster.supervise(stop)
    except GiveUp as exc:
        console.print(f"[red]stopped: {exc}")
        raise typer.Exit(1) from None
    finally:
        console.print("stopping: workers release their jobs, then the API and the database")
        cluster.stop()


@app.command()
def demo(
    workers: Annotated[int, typer.Option(min=1)] = 2,
    budget: Annotated[int, typer.Option(min=1, help="trial epochs the search may spend")
                      ] = DEMO_STUDY["budget"]["epochs"],
    trials: Annotated[int | None, typer.Option(
        min=1, help="at most this many configurations as well (whichever ends first)")] = None,
    retrain_epochs: Annotated[int, typer.Option(min=1)] = DEMO_STUDY["retrain_epochs"],
    scheduler: Annotated[str, typer.Option(help="asha | median | off")] = "asha",
    keep_serving: Annotated[bool, typer.Option(
        help="keep the API and the dashboard up after the report, until Ctrl-C")] = False,
    port: PortOpt = None,
) -> None:
    """`up` plus a demo study on digits: search, retrain the best, report test accuracy."""
    if scheduler not in DEMO_SCHEDULERS:
        raise typer.BadParameter(f"one of {', '.join(DEMO_SCHEDULERS)}", param_hint="--scheduler")
    if budget < DEMO_STUDY["trial_epochs"]:
        raise typer.BadParameter(f"at least trial_epochs ({DEMO_STUDY['trial_epochs']})",
                                 param_hint="--budget")

    from service.embedded_db import free_port, port_is_free
    from service.launcher import Cluster, GiveUp, stop_signals
    from trials.settings import Settings

    settings = Settings()
    threads = max(1, (os.cpu_count() or 2) // workers)
    if port is None:
        port = settings.port if port_is_free(settings.host, settings.port) else free_port()
    stop = stop_signals()
    cluster = Cluster(settings, workers, port=port, worker_threads=threads,
                      say=lambda m: console.print(f"[yellow]{m}"))
    try:
        _start_cluster(cluster)
        client = _client(cluster.api_url, settings.api_token)
        study = _call(client.submit, {**DEMO_STUDY, "budget": {"epochs": budget},
                                      "n_trials": trials, "retrain_epochs": retrain_epochs,
                                      "scheduler": DEMO_SCHEDULERS[scheduler]})
        size = f"SRU trials for {budget} epochs" + (f" (at most {trials})" if trials else "")
        console.print(f"API {cluster.api_url} · study {study['id']}: {size} on digits "
                      f"({scheduler}) with {workers} workers, then a {retrain_epochs}-epoch retrain")
        console.print(f"dashboard: {cluster.api_url}/ (while the demo runs)")
        progress = _Progress(client, study, retrain_epochs)
        cluster.supervise(stop, tick=2.0, while_running=progress.update)
        if stop.is_set():
            console.print("interrupted")
            raise typer.Exit(130)
        _report(client, progress.study, settings.home / "demo")
        if keep_serving:
            console.print(f"dashboard at {cluster.api_url}/ until Ctrl-C")
            cluster.supervise(stop)
        else:
            console.print(f"to look at the study later: SRU_HPO_HOME={settings.home.resolve()} "
                          "sru-hpo up, "
                          f"then open the dashboard (http://{settings.host}:{settings.port}/) "
                          "or run sru-hpo status / report")
    except GiveUp as exc:
        console.print(f"[red]stopped: {exc}")
        raise typer.Exit(1) from None
    finally:
        cluster.stop()


class _Progress:
    """The demo's progress line: printed when it changes; False once the study ended."""

    def __init__(self, client, study: dict[str, Any], retrain_epochs: int) -> None:  # noqa: ANN001
        self.client, self.study = client, study
        self.retrain_epochs = retrain_epochs
        self.t0, self.last = time.monotonic(), ""

    def update(self) -> bool:
        s = self.study = _call(self.client.study, self.study["id"])
        c, best = s["counts"], s["best"]
        line = (f"{s['state']:10s} finished {c['finished']}"
                + (f"/{s['n_trials']}" if s.get("n_trials") else "")
                + f", epochs {s['epochs_spent']}"
                + (f"/{s['budget_epochs']:.0f}" if s.get("budget_epochs") else "") + " "
                f"(running {c['running']}, paused {c.get('paused', 0)}, stopped at a rung "
                f"{c.get('stopped_at_rung', 0)}, pruned {c['pruned']}, diverged {c['diverged']}, "
                f"error {c['error']})" + (f" best val_acc {best['best_val_acc']:.4f}" if best else ""))
        if s["state"] == "retraining":
            curve = _call(self.client.retrain, s["id"])["curve"]
            if curve:
                line += f" · retrain epoch {curve[-1]['epoch']}/{self.retrain_epochs}"
        if line != self.last:
            console.print(f"[{time.monotonic() - self.t0:6.0f} s] {line}")
            self.last = line
        return s["state"] in ACTIVE_STATES


def _report(client, study: dict[str, Any], out_dir: Path) -> None:  # noqa: ANN001
    sid = study["id"]
    if study["state"] != "completed":
        console.print(f"[red]study ended {study['state']}: {study.get('error')}")
        for g in study.get("error_groups") or []:
            console.print(f"[red]  {g['count']} trial(s): {g['error']}")
        raise typer.Exit(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    retrain = _call(client.retrain, sid)
    curves = _call(client.curves, sid)
    (out_dir / "curves.json").write_text(json.dumps(curves, indent=1))
    from service.report import plot_curves, retrain_source

    plot_curves(curves, out_dir / "curves.png", f"study {sid}",
                study["best"]["tid"] if study.get("best") else None, retrain)
    ckpt = out_dir / f"{sid}.pt"
    ckpt.write_bytes(_call(client.checkpoint, sid))
    table = Table(title="best configuration (retrained)")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    for k, v in sorted(retrain["params"].items()):
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"search: {study['counts']['finished']} trials, {study['epochs_spent']} epochs "
                  f"({study['epochs_saved']} saved by the scheduler)")
    console.print(f"search best val_acc {study['best']['best_val_acc']:.4f} (trial "
                  f"{study['best']['tid']}); retrain of trial {retrain_source(retrain)}: best "
                  f"val_acc {retrain['best_val_acc']:.4f} at epoch {retrain['best_epoch']}")
    seeds = len(retrain.get("evaluations") or []) or 1
    sd = f" ± {retrain['test_acc_sd']:.4f}" if retrain.get("test_acc_sd") is not None else ""
    console.print(f"[bold]test accuracy {retrain['test_acc']:.4f}{sd}[/bold] (evaluated once "
                  f"per seed, {seeds} seed(s), after the search)")
    console.print(f"curves: {out_dir / 'curves.json'} and {out_dir / 'curves.png'}; "
                  f"checkpoint: {ckpt}; total {study['elapsed']:.0f} s")


# -- client commands ---------------------------------------------------------------------------------
@app.command()
def submit(
    study_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="YAML or JSON")],
    api: ApiOpt = None, token: TokenOpt = None,
) -> None:
    """Submit a study described in a YAML/JSON file."""
    body = _load_body(study_file, "STUDY_FILE", "the study")
    study = _call(_client(api, token).submit, body)
    console.print(f"study {study['id']} ({study['name']}) {study['state']}")


@app.command()
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
            if study["state"] not in ACTIVE_STATES:
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
        c, best = s["counts"], s["best"]
        table.add_row(s["id"], s["name"][:14], s["state"], _progress(s),
                      str(c["running"]), str(c["error"]),
                      f"{best['best_val_acc']:.4f}" if best else "-",
                      f"{s['test_acc']:.4f}" if s["test_acc"] is not None else "-")
    console.print(table)


def _progress(s: dict[str, Any]) -> str:
    """done/n for a study sized by n_trials; epochs spent/budget for one sized by compute."""
    if s.get("budget_epochs") is not None:
        return f"{s['epochs_spent']}/{s['budget_epochs']:.0f}ep"
    return f"{s['counts']['finished']}/{s['n_trials']}"


def _status_one(s: dict[str, Any]) -> None:
    c, best = s["counts"], s["best"]
    console.print(f"[bold]{s['id']}[/bold] {s['name']} · {s['model']} on {s['dataset']} · "
                  f"{s['state']} · {s['elapsed']:.0f} s")
    of = f"/{s['n_trials']}" if s.get("n_trials") else ""
    console.print(f"trials: {c['finished']}{of} finished (done {c['done']}, "
                  f"error {c['error']}), running {c['running']}, new {c['new']}, pruned "
                  f"{c['pruned']}, diverged {c['diverged']}, infeasible {c.get('infeasible', 0)}, "
                  f"timeout {c.get('timeout', 0)}, cancelled {c['cancelled']}")
    f = s.get("failures") or {}
    if f.get("infrastructure") or f.get("configuration"):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted((f.get("by_kind") or {}).items()))
        console.print(f"failures: infrastructure {f['infrastructure']} (retried), configuration "
                      f"{f['configuration']} (never retried): {kinds}")
    if c.get("paused") or c.get("stopped_at_rung") or s.get("promotions"):
        console.print(f"rungs: paused {c.get('paused', 0)}, stopped at a rung "
                      f"{c.get('stopped_at_rung', 0)}, promotions {s.get('promotions', 0)}")
    budget = ""
    if s.get("budget_epochs") is not None:
        budget = (f" of a budget of {s['budget_epochs']:.0f} ({s['epochs_left']:.0f} not yet "
                  f"committed)")
    console.print(f"epochs: {s['epochs_spent']} spent{budget}, {s['epochs_saved']} saved "
                  f"against running every trial to {s['trial_epochs']}")
    fid = [f"epoch {f['epoch']}: {f['spearman']:.2f} ({f['pairs']} trials)"
           for f in s.get("fidelity") or [] if f.get("spearman") is not None]
    if fid:
        console.print("rung vs top score (Spearman): " + ", ".join(fid))
    for a in s.get("advice") or []:
        console.print(f"[yellow]advice: {a}")
    if best:
        memory = (f", peak memory {best['peak_rss_mb']:.0f} MiB"
                  if best.get("peak_rss_mb") is not None else "") + (
            f" (GPU {best['peak_gpu_mb']:.0f} MiB)" if best.get("peak_gpu_mb") is not None else "")
        console.print(f"best: trial {best['tid']} val_acc {best['best_val_acc']:.4f} at epoch "
                      f"{best['best_epoch']}{memory}")
        console.print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(best["params"].items())
                                       if k not in ("model", "dataset", "seed")))
    console.print(f"retrain: {s['retrain_state']}" + _test_line(s))
    if s.get("error"):
        console.print(f"[red]error: {s['error']}")
    for g in s.get("error_groups") or []:
        console.print(f"[red]  {g['count']} trial(s) (e.g. {g['tids'][0]}): {g['error']}")


def _test_line(s: dict[str, Any]) -> str:
    """", test accuracy 0.8900" or, over several seeds, ", test accuracy 0.8900 ± 0.0100 (3
    seeds; 0.0200 below validation)"."""
    if s.get("test_acc") is None:
        return ""
    line = f", test accuracy {s['test_acc']:.4f}"
    if s.get("tests", 1) > 1:
        sd = f" ± {s['test_acc_sd']:.4f}" if s.get("test_acc_sd") is not None else ""
        drop = (f"; {s['test_drop']:.4f} below validation" if s.get("test_drop") is not None
                else "")
        line += f"{sd} ({s['tests']} seeds{drop})"
    return line


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@app.command()
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
                           for k, v in sorted(t["params"].items())
                           if k not in ("model", "dataset", "seed"))
        table.add_row(str(t["tid"]), f"{t['best_val_acc']:.4f}", str(t["best_epoch"]),
                      str(t["outcome"]), params)
    console.print(table)


@app.command()
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
        accs = [p["val_acc"] for p in c["points"]]
        table.add_row(str(c["tid"]), c["kind"], c["state"], str(c["outcome"]), str(len(accs)),
                      f"{accs[-1]:.4f}" if accs else "-", f"{max(accs):.4f}" if accs else "-")
    console.print(table)
    if png is not None:
        from service.report import plot_curves

        study = _call(client.study, sid)
        best_tid = study["best"]["tid"] if study["best"] else None
        _writing("--png", png, lambda: plot_curves(data, png, f"study {sid}", best_tid))
        console.print(f"plot written to {png}")


@app.command()
def report(study_id: str,
           out: Annotated[Path, typer.Option("--out", help="folder for the files")] = Path("report"),
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """A study as files: curves, best-so-far, parameter slices and importance as PNGs;
    trials.csv, curves.csv and study.json."""
    from service.report import write_report

    client = _client(api, token)
    sid = _sid(client, study_id)
    files, skipped = _writing("--out", out, lambda: _call(write_report, client, sid, out))
    for f in files:
        console.print(f"wrote {f}")
    for name, why in skipped.items():
        console.print(f"skipped {out / name}: {why}")


@app.command()
def delete(study_id: str,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
           api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Delete a study with its trials, curves and checkpoints (a running one is cancelled
    first)."""
    client = _client(api, token)
    sid = _sid(client, study_id)
    study = _call(client.study, sid)
    if not yes and not typer.confirm(f"delete study {sid} ({study['name']}, {study['state']}) "
                                     "with its trials, curves and checkpoints?"):
        console.print("not deleted")
        raise typer.Exit(1)
    _call(client.delete, sid)
    console.print(f"study {sid} deleted")


@app.command()
def cancel(study_id: str, api: ApiOpt = None, token: TokenOpt = None) -> None:
    """Cancel a study: queued trials now, running ones after their current epoch."""
    client = _client(api, token)
    r = _call(client.cancel, _sid(client, study_id))
    console.print(f"study {r['id']} cancelled: {r['queued_cancelled']} queued trial(s) cancelled, "
                  f"{r['running_stopping']} running trial(s) stopping")


from service.compare_cli import compare_app  # noqa: E402 (it uses the helpers above)

app.add_typer(compare_app, name="compare")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
