"""``sru-hpo train``: one training run from the command line, with a progress bar per epoch."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from search_spaces.params import DATASETS, MODELS, Params
from trials.records import Point

__all__ = ["train_command", "parse_alphas"]


def parse_alphas(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from exc


def _fail_on_flag(exc: ValueError) -> typer.BadParameter:
    """Turn 'phi_size: reason' from the model/train validators into an error naming --phi-size."""
    key, _, reason = str(exc).partition(":")
    return typer.BadParameter(reason.strip() or str(exc), param_hint=f"--{key.replace('_', '-')}")


def train_command(
    model: Annotated[str, typer.Option(help=" | ".join(MODELS))] = "sru",
    dataset: Annotated[str, typer.Option(help=" | ".join(DATASETS))] = "digits",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    phi_size: Annotated[int | None, typer.Option(help="SRU phi units")] = None,
    r_size: Annotated[int | None, typer.Option(help="SRU r units (0 = iid variant)")] = None,
    out_size: Annotated[int | None, typer.Option(help="SRU o units")] = None,
    alphas: Annotated[str | None, typer.Option(help="SRU set A, e.g. 0,0.5,0.9,0.99,0.999")] = None,
    learn_alphas: Annotated[bool, typer.Option(help="learn A (sigmoid of a logit)")] = False,
    hidden_size: Annotated[int | None, typer.Option(help="GRU/LSTM units")] = None,
    num_layers: Annotated[int | None, typer.Option(help="GRU/LSTM layers")] = None,
    forget_bias: Annotated[float | None, typer.Option(help="GRU/LSTM keep-gate bias")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam | sgd")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    lr_decay: Annotated[float | None, typer.Option(help="lr factor per epoch")] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    dropout: Annotated[float | None, typer.Option(help="dropout before the head")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    clip_norm: Annotated[float | None, typer.Option(help="gradient clipping norm, 0 = off")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="cpu | cuda[:N] | auto")] = "auto",
    checkpoint: Annotated[Path | None, typer.Option(help="write the best weights here")] = None,
    test: Annotated[bool, typer.Option(help="evaluate the best weights on the test split")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train one model and print its learning curve and result."""
    from workers.train import train

    given = {
        "phi_size": phi_size, "r_size": r_size, "out_size": out_size,
        "alphas": parse_alphas(alphas) if alphas is not None else None,
        "hidden_size": hidden_size, "num_layers": num_layers, "forget_bias": forget_bias,
        "optimizer": optimizer, "lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
        "dropout": dropout, "batch_size": batch_size, "clip_norm": clip_norm,
        "learn_alphas": True if learn_alphas else None,
    }
    params = _checked_params(model, dataset, seed, given)
    console = Console(stderr=as_json)
    with Progress(
        TextColumn("[bold]epoch {task.completed}/{task.total}"), BarColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
        transient=as_json,
    ) as bar:
        task = bar.add_task("", total=epochs)

        def on_epoch(point: Point) -> None:
            bar.update(task, advance=1, description=(
                f"train_loss {point['train_loss']:.4f}  val_acc {point['val_acc']:.4f}"))

        result = train(params, epochs=epochs, device=device, checkpoint_path=checkpoint,
                       on_epoch=on_epoch, evaluate_test=test)
    if as_json:
        typer.echo(json.dumps({"params": params, **asdict(result)}, indent=2))
    else:
        _print_result(console, f"{model} on {dataset}", result)


def _checked_params(model: str, dataset: str, seed: int, given: Params) -> Params:
    """The flags as a parameter dict, checked against the parameter table (a bad value names
    its flag)."""
    from search_spaces.params import resolve

    params: Params = {"model": model, "dataset": dataset, "seed": seed}
    params |= {k: v for k, v in given.items() if v is not None}
    if dataset not in DATASETS:
        raise typer.BadParameter(f"unknown dataset {dataset!r}", param_hint="--dataset")
    try:
        resolve(params)
    except ValueError as exc:
        raise _fail_on_flag(exc) from exc
    return params


def _print_result(console: Console, title: str, result: Any) -> None:  # noqa: ANN401
    table = Table(title=f"{title}: {result.status}")
    for col in ("epoch", "train_loss", "val_loss", "val_acc", "lr", "seconds"):
        table.add_column(col, justify="right")
    for p in result.curve:
        table.add_row(str(p["epoch"]), f"{p['train_loss']:.4f}", f"{p['val_loss']:.4f}",
                      f"{p['val_acc']:.4f}", f"{p['lr']:.3g}", f"{p['seconds']:.2f}")
    console.print(table)
    console.print(f"best val_acc {result.best_val_acc:.4f} at epoch {result.best_epoch} "
                  f"({result.n_params} parameters, {result.seconds:.1f} s)")
    if result.test_acc is not None:
        console.print(f"test_acc {result.test_acc:.4f}")
    if result.reason:
        console.print(f"[red]{result.reason}")


def worker_command(
    device: Annotated[str, typer.Option(help="cuda:N | cpu | auto (GPU from CUDA_VISIBLE_DEVICES)")] = "auto",
    max_jobs: Annotated[int | None, typer.Option(min=1, help="exit after this many jobs")] = None,
    burst: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    study: Annotated[str | None, typer.Option(help="only take jobs of this study id")] = None,
    poll: Annotated[float, typer.Option(min=0.01, help="longest wait between polls of an empty "
                                        "queue (polls back off from 5 ms up to this)")] = 0.5,
    slots_per_gpu: Annotated[int | None, typer.Option(
        min=1, max=64, help="workers that may share one GPU [default: SRU_HPO_GPU_SLOTS or 1]")
    ] = None,
) -> None:
    """Take jobs from the database and train them, until stopped. The database is the one at
    SRU_HPO_MONGO_URL (a mongodb:// URL; `sru-hpo up` sets it for the workers it starts). The
    embedded database listens on 127.0.0.1 only: workers on other machines need a real MongoDB."""
    import logging

    from sru_hpo.settings import Settings
    from trials.store import Store
    from workers.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    if not settings.mongo_url:
        raise typer.BadParameter(
            "no database: set SRU_HPO_MONGO_URL (sru-hpo up sets it for the workers it starts)",
            param_hint="SRU_HPO_MONGO_URL")
    if device != "cpu":  # a CPU worker imports no torch (its trainer does)
        from workers.train import pick_device

        try:
            pick_device(device)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--device") from exc
    store = Store.connect(settings.mongo_url, settings.db_name, timeout=settings.connect_timeout,
                          heartbeat_interval=settings.heartbeat_interval,
                          max_retries=settings.max_retries)
    store.ensure_indexes()
    worker = Worker(store, device=device, max_jobs=max_jobs, burst=burst, study=study, poll=poll,
                    db_timeout=settings.connect_timeout, db_url=settings.mongo_url,
                    snapshot_every=settings.snapshot_seconds,
                    slots_per_gpu=slots_per_gpu or settings.gpu_slots,
                    stall_timeout=settings.stall_timeout)
    worker.install_signal_handlers()
    worker.run()
