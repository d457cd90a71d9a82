"""The ``sru-hpo`` command: every part's commands, composed here.

- ``train``, ``worker``: workers/cli.py (a worker process and one-off training);
- ``serve``, ``orchestrate``, ``up``, ``demo``: service/launcher/commands.py (starting parts);
- ``submit``, ``status``, ``best``, ``curves``, ``report``, ``delete``, ``cancel``:
  service/client/commands.py (the API's client);
- ``compare submit|status|report``: service/client/compare_commands.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service.client import commands as client_commands
from service.client.cli_io import console
from service.client.compare_commands import compare_app
from service.launcher import commands as launcher_commands
from workers.cli import train_command, worker_command

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hyperparameter optimization for the Statistical Recurrent Unit.")
app.command("train")(train_command)
app.command("worker")(worker_command)
for name, command in {**launcher_commands.COMMANDS, **client_commands.COMMANDS}.items():
    app.command(name)(command)
app.add_typer(compare_app, name="compare")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
