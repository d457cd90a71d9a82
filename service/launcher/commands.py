"""The CLI's commands that start parts: serve (the API), orchestrate (the study drivers on their
own), up (a supervised local cluster) and demo. ``sru_hpo/cli.py`` registers them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.client.cli_io import call as _call
from service.client.cli_io import client_for as _client
from service.client.cli_io import console
from service.client.commands import ACTIVE_STATES, final_report

if TYPE_CHECKING:
    from service.studies.schemas import JsonObject, StudyPublic

__all__ = ["COMMANDS", "DemoStudy", "DEMO_SCHEDULERS"]

#: The demo's schedulers (the API's ``scheduler`` field).
DEMO_SCHEDULERS: dict[str, dict[str, str | int]] = {
    "median": {"rule": "median", "warmup": 3, "min_trials": 3},
    "asha": {"rule": "asha", "min_epochs": 1, "reduction": 3},
    "off": {"rule": "off"},
}


@dataclass(frozen=True)
class DemoStudy:
    """The demo study: a budgeted ASHA search of SRUs on digits (README "Measured" compares it
    with the median rule at the same budget; the replay benchmark with everything else)."""

    budget: int = 100  # trial epochs the search may spend
    n_trials: int | None = None  # at most this many configurations as well
    retrain_epochs: int = 150
    scheduler: str = "asha"  # a key of DEMO_SCHEDULERS
    trial_epochs: int = 10
    parallelism: int = 2

    def body(self) -> JsonObject:
        """The POST /studies body."""
        return {"name": "demo", "model": "sru", "dataset": "digits", "space": "sru_digits",
                "algorithm": "tpe", "budget": {"epochs": self.budget}, "n_trials": self.n_trials,
                "parallelism": self.parallelism, "trial_epochs": self.trial_epochs,
                "retrain_epochs": self.retrain_epochs, "seed": 0,
                "scheduler": DEMO_SCHEDULERS[self.scheduler]}


DEMO = DemoStudy()


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def serve() -> None:
    """Run the API (and the study drivers, unless SRU_HPO_DRIVE_STUDIES=false). Without
    SRU_HPO_MONGO_URL: an embedded database."""
    import logging

    import uvicorn

    from service.api.app import create_app
    from service.launcher.embedded_db import DatabaseInUse, start_embedded
    from sru_hpo.settings import Settings

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
            db = start_embedded(settings.home)
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


def orchestrate() -> None:
    """Drive the studies apart from the API: run the API with SRU_HPO_DRIVE_STUDIES=false and one
    or more of these on the same SRU_HPO_MONGO_URL (a study's lease keeps one driver at a time).
    SIGINT/SIGTERM stop it; another orchestrator takes its studies over within the lease."""
    import logging

    from service.launcher.cluster import stop_signals
    from service.orchestrator.drivers import DriverManager
    from sru_hpo.settings import Settings
    from trials.store import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    if not settings.mongo_url:
        raise typer.BadParameter("unset: the orchestrator drives the studies of the API's "
                                 "database, so it needs its mongodb:// URL",
                                 param_hint="SRU_HPO_MONGO_URL")
    stop = stop_signals()
    store = Store.for_service(settings)
    manager = DriverManager.for_service(store, settings, adopt=True)
    try:
        manager.resume_all()
        logging.getLogger("sru_hpo.driver").info("orchestrating %d studies", manager.active)
        stop.wait()
    finally:
        manager.stop()
        store.close()


def _start_cluster(cluster) -> None:  # noqa: ANN001
    from service.launcher.cluster import PortBusy
    from service.launcher.embedded_db import DatabaseInUse

    try:
        cluster.start()
    except (PortBusy, DatabaseInUse) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from None


DeviceOpt = Annotated[str, typer.Option(help="the workers' --device (auto | cpu | cuda:N)")]
PortOpt = Annotated[int | None, typer.Option(min=1, max=65535, help="the API's port "
                                             "[default: SRU_HPO_PORT, 8000]")]


def up(workers: Annotated[int, typer.Option(min=0, help="local worker processes")] = 2,
       device: DeviceOpt = "auto",
       max_restarts: Annotated[int, typer.Option(
           min=0, help="give up when one part restarts more than this many times in 60 s")] = 5,
       port: PortOpt = None,
       ) -> None:
    """Embedded database (unless SRU_HPO_MONGO_URL is set), the API and N workers, supervised:
    a part that dies is restarted. Ctrl-C (or SIGTERM/SIGHUP) stops them all."""
    from service.launcher.cluster import Cluster, GiveUp, stop_signals
    from sru_hpo.settings import Settings

    stop = stop_signals()
    cluster = Cluster(Settings(), workers, port=port, device=device,
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


def demo(
    workers: Annotated[int, typer.Option(min=1)] = 2,
    budget: Annotated[int, typer.Option(min=1, help="trial epochs the search may spend")
                      ] = DEMO.budget,
    trials: Annotated[int | None, typer.Option(
        min=1, help="at most this many configurations as well (whichever ends first)")] = None,
    retrain_epochs: Annotated[int, typer.Option(min=1)] = DEMO.retrain_epochs,
    scheduler: Annotated[str, typer.Option(help="asha | median | off")] = "asha",
    keep_serving: Annotated[bool, typer.Option(
        help="keep the API and the dashboard up after the report, until Ctrl-C")] = False,
    port: PortOpt = None,
) -> None:
    """`up` plus a demo study on digits: search, retrain the best, report test accuracy."""
    if scheduler not in DEMO_SCHEDULERS:
        raise typer.BadParameter(f"one of {', '.join(DEMO_SCHEDULERS)}", param_hint="--scheduler")
    if budget < DEMO.trial_epochs:
        raise typer.BadParameter(f"at least trial_epochs ({DEMO.trial_epochs})",
                                 param_hint="--budget")

    from service.launcher.cluster import Cluster, GiveUp, stop_signals
    from service.launcher.embedded_db import free_port, port_is_free
    from sru_hpo.settings import Settings

    settings = Settings()
    if port is None:
        port = settings.port if port_is_free(settings.host, settings.port) else free_port()
    stop = stop_signals()
    cluster = Cluster(settings, workers, port=port,
                      say=lambda m: console.print(f"[yellow]{m}"))
    try:
        _start_cluster(cluster)
        client = _client(cluster.api_url, settings.api_token)
        demo_study = DemoStudy(budget, trials, retrain_epochs, scheduler)
        study = _call(client.submit, demo_study.body())
        size = f"SRU trials for {budget} epochs" + (f" (at most {trials})" if trials else "")
        console.print(f"API {cluster.api_url} · study {study.id}: {size} on digits "
                      f"({scheduler}) with {workers} workers, then a {retrain_epochs}-epoch retrain")
        console.print(f"dashboard: {cluster.api_url}/ (while the demo runs)")
        progress = _Progress(client, study, retrain_epochs)
        cluster.supervise(stop, tick=2.0, while_running=progress.update)
        if stop.is_set():
            console.print("interrupted")
            raise typer.Exit(130)
        final_report(client, progress.study, settings.home / "demo")
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

    def __init__(self, client, study: StudyPublic, retrain_epochs: int) -> None:  # noqa: ANN001
        self.client, self.study = client, study
        self.retrain_epochs = retrain_epochs
        self.t0, self.last = time.monotonic(), ""

    def update(self) -> bool:
        s = self.study = _call(self.client.study, self.study.id)
        c, best = s.counts, s.best
        line = (f"{s.state:10s} finished {c.finished}"
                + (f"/{s.n_trials}" if s.n_trials else "")
                + f", epochs {s.epochs_spent}"
                + (f"/{s.budget_epochs:.0f}" if s.budget_epochs else "") + " "
                f"(running {c.running}, paused {c.paused}, stopped at a rung "
                f"{c.stopped_at_rung}, pruned {c.pruned}, diverged {c.diverged}, "
                f"error {c.error})" + (f" best val_acc {best.best_val_acc:.4f}"
                                       if best and best.best_val_acc is not None else ""))
        if s.state == "retraining":
            curve = _call(self.client.retrain, s.id).curve
            if curve:
                line += f" · retrain epoch {curve[-1].epoch}/{self.retrain_epochs}"
        if line != self.last:
            console.print(f"[{time.monotonic() - self.t0:6.0f} s] {line}")
            self.last = line
        return s.state in ACTIVE_STATES


COMMANDS: dict[str, Callable[..., Any]] = {"serve": serve, "orchestrate": orchestrate, "up": up,
                                           "demo": demo}
