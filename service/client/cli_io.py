"""What every ``sru-hpo`` client command shares: the consoles, the --api/--token options, API
calls with their errors printed, one-line usage errors, and reading a YAML/JSON body."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from service.studies.schemas import FieldError, JsonObject

__all__ = ["console", "err_console", "ApiOpt", "TokenOpt", "client_for", "call", "field_errors",
           "usage_error", "writing", "load_body"]

T = TypeVar("T")


def _console(stderr: bool = False) -> Console:
    """Lines are never wrapped by rich (soft_wrap: a message, a path or a progress line stays one
    line; a terminal wraps it itself), and tables get full width where output is not a terminal
    (a pipe, a log file), where rich would assume 80 columns. COLUMNS, when set, still decides
    a table's width."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=1000 if wide else None, soft_wrap=True)


console = _console()
err_console = _console(stderr=True)

ApiOpt = Annotated[str | None, typer.Option("--api", envvar="SRU_HPO_API_URL",
                                            help="API base URL [default: http://127.0.0.1:8000]")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="SRU_HPO_API_TOKEN",
                                              help="bearer token for write endpoints")]


def client_for(api: str | None, token: str | None):  # noqa: ANN202
    from service.client.api_client import ApiClient

    return ApiClient(api, token)


def call(fn, *args: Any, what: str = "study") -> Any:  # noqa: ANN001
    """``fn(*args)``; an API error is printed (a 422 one line per field) and exits 2 for bad
    input, 1 otherwise."""
    from service.client.api_client import ApiError

    try:
        return fn(*args)
    except ApiError as exc:
        if exc.status == 422 and isinstance(exc.detail, list):
            console.print(f"[red]error:[/red] HTTP 422: the {what} is not valid")
            for line in field_errors(exc.detail):
                console.print(f"  [red]{line}")
        else:
            console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2 if exc.status in (400, 404, 409, 413, 422) or 300 <= exc.status < 400
                         else 1) from None


def field_errors(errors: list[FieldError]) -> list[str]:
    """One line per 422 error: ``field.path: reason`` (the API words them: service/api/messages.py)."""
    return [f"{'.'.join(str(x) for x in e.get('loc', []) if x != 'body') or 'study'}: "
            f"{e.get('msg', '')}" for e in errors]


def usage_error(param: str, message: str) -> NoReturn:
    """Bad input on the command line: one line naming the argument or flag, exit 2."""
    err_console.print(f"[red]error:[/red] {param}: {message}", soft_wrap=True)
    raise typer.Exit(2)


def writing(param: str, path: Path, write: Callable[[], T]) -> T:
    """``write()``, with a path that can not be written reported as one line naming ``param``."""
    try:
        return write()
    except OSError as exc:
        usage_error(param, f"can not write {path}: {exc.strerror or exc}")


def load_body(path: Path, param: str, what: str) -> JsonObject:
    """A YAML/JSON file holding a mapping that JSON can carry, or a one-line usage error."""
    import yaml

    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        usage_error(param, f"not valid YAML/JSON{where}: {problem}")
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(param, f"can not read {path}: {exc}")
    if not isinstance(body, dict):
        usage_error(param, f"must hold a mapping ({what})")
    try:
        json.dumps(body, allow_nan=False)
    except ValueError:
        usage_error(param, f"holds NaN or infinity (.nan/.inf), which {what} can not carry; "
                     "write a number")
    except TypeError as exc:
        usage_error(param, f"holds a value JSON can not carry: {exc}")
    return body
