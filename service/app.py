"""The FastAPI application: routers per resource (service/routes/), security, error handling.

Where a request is handled: ``service/routes/studies.py`` (``/studies``),
``service/routes/trials.py`` (trials and curves), ``service/routes/results.py`` (retrain and
checkpoint), ``service/routes/operations.py`` (workers, health, metrics),
``service/routes/pages.py`` (the dashboard). The study drivers run in threads started by the
lifespan (service/drivers.py). This process never imports torch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.errors import install_error_handlers
from service.routes import analysis, operations, pages, results, studies, trials
from service.runtime import Runtime
from service.security import RequestGuard
from trials.connection import request_deadline
from trials.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("sru_hpo.api")
REQUEST_DB_SECONDS = 3.5  # database time one request may take before its 503


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await asyncio.to_thread(Runtime, settings)
        app.state.rt = rt
        await asyncio.to_thread(rt.manager.resume_all)
        yield
        await asyncio.to_thread(rt.close)

    # max_body_size: FastAPI/Starlette answer 413 past the limit (Content-Length or streamed).
    # FastAPIOffline: /docs and /redoc with Swagger UI and ReDoc served from the package, no CDN.
    app = FastAPIOffline(title="sru-hpo", version="0.2.0", lifespan=lifespan,
                         max_body_size=settings.max_body_bytes,
                         description="Hyperparameter optimization for the Statistical Recurrent Unit")
    app.state.settings = settings
    app.add_middleware(RequestGuard, settings=settings)
    # a stalled database: a read's 503 within 5 s (3.5 s of database time, the rest margin)
    app.add_middleware(request_deadline, seconds=REQUEST_DB_SECONDS, exempt=("/checkpoint", "/healthz"))
    install_error_handlers(app)
    for r in (studies.router, trials.router, results.router, analysis.router, operations.router,
              pages.router):
        app.include_router(r)
    app.mount("/static", pages.assets, name="static")
    return app
