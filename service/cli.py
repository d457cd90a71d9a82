"""The ``sru-hpo`` command: train, worker, serve, up, demo and the API client commands."""

from __future__ import annotations

import typer

from workers.cli import train_command, worker_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter optimization for the Statistical Recurrent Unit.")
app.command("train")(train_command)
app.command("worker")(worker_command)


@app.callback()
def _root() -> None:
    """Hyperparameter optimization for the Statistical Recurrent Unit."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
