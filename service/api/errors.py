"""How errors leave the API: one JSON shape, documented status codes, no NaN, right ``Allow``.

- A database that does not answer is a 503 with ``Retry-After`` (never a bare 500).
- A 422 names the field and the reason in plain words (service/api/messages.py); the offending
  input is not echoed back (it may hold NaN or Infinity, which are not JSON, or be megabytes
  long).
- A 405 lists in ``Allow`` every method the path has (Starlette lists only the first route's).
- ``responses(...)`` gives each route's OpenAPI its status codes, so the schema is the contract
  the fuzzer (tests/service/test_fuzz.py) checks.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.messages import plain_errors
from service.studies.schemas import Problem
from trials.connection import NETWORK_ERRORS, DatabaseUnavailable

__all__ = ["install_error_handlers", "responses", "unprocessable", "RETRY_AFTER"]

RETRY_AFTER = 5
_DESCRIPTIONS = {
    400: "the body could not be parsed (not UTF-8, or not JSON)",
    401: "missing or wrong bearer token", 403: "Host or Origin not allowed",
    404: "no such study or trial", 409: "the study already ended", 413: "request body too large",
    415: "a write needs Content-Type: application/json or an Authorization header",
    422: "invalid input: each error names the field and the reason",
    503: "the database is unreachable; retry after Retry-After seconds",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error codes (403 and 503 are added to every route)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 403, 503}):
        if code == 422:
            continue  # FastAPI documents 422 itself where a route validates input
        out[code] = {"model": Problem, "description": _DESCRIPTIONS[code]}
    return out


def unprocessable(field: str, msg: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape for a check made inside a route."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": msg}])


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _methods_of(app: FastAPI, path: str) -> list[str]:
    """Every method the OpenAPI lists for the path templates ``path`` matches."""
    if not hasattr(app.state, "path_templates"):
        app.state.path_templates = {
            re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(p))): list(ops)
            for p, ops in app.openapi()["paths"].items()}
    return sorted({m.upper() for template, ops in app.state.path_templates.items()
                   if template.fullmatch(path) for m in ops})


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _finite(plain_errors(exc.errors()))}, status_code=422)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"database unreachable: {type(exc).__name__}"},
                        status_code=503, headers={"Retry-After": str(RETRY_AFTER)})


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_methods_of(request.app, request.url.path))
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    for exc_type in NETWORK_ERRORS:
        app.add_exception_handler(exc_type, _unavailable)
