"""Who may call what: bearer tokens, and the guard against cross-site and rebinding requests.

- Writes (POST, DELETE) need ``Authorization: Bearer $SRU_HPO_API_TOKEN`` when that is set.
- Reads need ``$SRU_HPO_READ_TOKEN`` (or the write token) when that is set. Exempt: ``/healthz``
  (orchestrators probe it) and the dashboard's page shells and assets, which hold no data; the
  pages ask for the token and send it with every data request.
- Every request but ``/healthz`` must carry a ``Host`` in ``SRU_HPO_ALLOWED_HOSTS`` (default
  loopback names), which defeats DNS rebinding; a state-changing request must also carry an
  allowed ``Origin`` when it has one, and ``Content-Type: application/json`` or an
  ``Authorization`` header, which a cross-site HTML form can not send. This holds with or without
  a token.

Starlette's TrustedHostMiddleware checks the Host but can not exempt the health probe or look at
Origin and Content-Type, hence this small middleware.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Header, HTTPException, Request, status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from trials.settings import Settings

__all__ = ["RequestGuard", "require_writer", "require_reader", "Writer", "Reader", "OPEN_PATHS"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/healthz",)


def _host_only(value: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``[::1]``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class RequestGuard:
    """ASGI middleware: Host for every request; Origin and Content-Type for writes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        names = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
        self.any_host = "*" in names
        self.hosts = names | {settings.host.lower()}

    def _allowed(self, host: str) -> bool:
        return self.any_host or _host_only(host) in self.hosts

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        if scope["path"] in OPEN_PATHS:
            return None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not self._allowed(headers.get("host", "")):
            return 403, (f"Host {headers.get('host', '')!r} is not allowed; add it to "
                         "SRU_HPO_ALLOWED_HOSTS")
        if scope["method"] not in WRITE_METHODS:
            return None
        origin = headers.get("origin")
        if origin and origin != "null" and not self._allowed(urlsplit(origin).netloc):
            return 403, f"Origin {origin!r} is not allowed; add its host to SRU_HPO_ALLOWED_HOSTS"
        if origin == "null":
            return 403, "Origin 'null' is not allowed"
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json" and "authorization" not in headers:
            return 415, ("a state-changing request needs Content-Type: application/json or an "
                         "Authorization header")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                code, detail = refusal
                await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _bearer_matches(authorization: str | None, *tokens: str | None) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return any(t and secrets.compare_digest(given.encode(), t.encode()) for t in tokens)


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing or wrong bearer token ({what})",
                         headers={"WWW-Authenticate": "Bearer"})


def require_writer(request: Request,
                   authorization: Annotated[str | None, Header(include_in_schema=False)] = None
                   ) -> None:
    """Write endpoints: 401 unless ``Authorization: Bearer <SRU_HPO_API_TOKEN>`` (when set)."""
    token = request.app.state.settings.api_token
    if token and not _bearer_matches(authorization, token):
        raise _unauthorized("SRU_HPO_API_TOKEN")


def require_reader(request: Request,
                   authorization: Annotated[str | None, Header(include_in_schema=False)] = None
                   ) -> None:
    """Read endpoints: 401 unless the read (or write) token is given, when a read token is set."""
    s: Settings = request.app.state.settings
    if s.read_token and not _bearer_matches(authorization, s.read_token, s.api_token):
        raise _unauthorized("SRU_HPO_READ_TOKEN")


Writer = Annotated[None, Depends(require_writer)]
Reader = Annotated[None, Depends(require_reader)]
