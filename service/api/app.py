"""The FastAPI application: routers per resource (service/api/routes/), security, error handling.

Where a request is handled: ``service/api/routes/studies.py`` (``/studies``),
``service/api/routes/trials.py`` (trials and curves), ``service/api/routes/results.py`` (retrain and
checkpoint), ``service/api/routes/comparisons.py`` (``/comparisons``: variants tuned at one budget),
``service/api/routes/operations.py`` (workers, health, metrics),
``service/api/routes/pages.py`` (the dashboard). The study drivers run in threads started by the
lifespan (service/orchestrator/drivers.py). This process never imports torch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from service import __version__
from service.api.errors import install_error_handlers
from service.api.routes import analysis, comparisons, operations, pages, results, studies, trials
from service.api.runtime import Runtime
from service.api.security import RequestGuard
from sru_hpo.settings import Settings
from trials.connection import request_deadline

__all__ = ["create_app"]

log = logging.getLogger("sru_hpo.api")
REQUEST_DB_SECONDS = 3.5  # database time one request may take before its 503


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await asyncio.to_thread(Runtime, settings)
        app.state.rt = rt
        await asyncio.to_thread(rt.start)
        yield
        await asyncio.to_thread(rt.close)

    # max_body_size: FastAPI/Starlette answer 413 past the limit (Content-Length or streamed).
    # FastAPIOffline: /docs and /redoc with Swagger UI and ReDoc served from the package, no CDN.
    app = FastAPIOffline(title="sru-hpo", version=__version__, lifespan=lifespan,
                         max_body_size=settings.max_body_bytes,
                         description="Hyperparameter optimization for the Statistical Recurrent Unit")
    app.state.settings = settings
    app.add_middleware(RequestGuard, settings=settings)
    # a stalled database: a read's 503 within 5 s (3.5 s of database time, the rest margin)
    app.add_middleware(request_deadline, seconds=REQUEST_DB_SECONDS, exempt=("/checkpoint",))
    install_error_handlers(app)
    for r in (studies.router, trials.router, results.router, analysis.router, comparisons.router,
              operations.router, pages.router):
        app.include_router(r)
    app.mount("/static", pages.assets, name="static")
    app.openapi = lambda: _with_links(app)  # type: ignore[method-assign]
    return app


def _with_links(app: FastAPI) -> dict:
    """The OpenAPI, with a link from the study ``POST /studies`` creates to every per-study
    operation (``sid`` = the new study's ``id``): clients and fuzzers (schemathesis' stateful
    phase) can follow them to routes that a random id would only ever answer with 404."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        links = {}
        for path, ops in schema["paths"].items():
            if "{sid}" not in path:
                continue
            for method, op in ops.items():
                links[op["operationId"]] = {
                    "operationId": op["operationId"], "parameters": {"sid": "$response.body#/id"},
                    "description": f"{method.upper()} {path} of the study just created"}
        schema["paths"]["/studies"]["post"]["responses"]["201"]["links"] = links
        app.openapi_schema = schema
    return app.openapi_schema
