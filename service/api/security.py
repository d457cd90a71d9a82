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

import re
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Header, HTTPException, Request, status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sru_hpo.settings import Settings

__all__ = ["RequestGuard", "require_writer", "require_reader", "Writer", "Reader", "OPEN_PATHS"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/healthz",)


_HOST = re.compile(r"(?P<name>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])"
                   r"(?::(?P<port>[0-9]{1,5}))?")
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A plain ``host[:port]`` (a name, an IPv4 address or a bracketed IPv6 one) as (host,
    port); None for anything else (``[::1]evil.example``, a user part, a path, two ports)."""
    m = _HOST.fullmatch(value.strip().lower())
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        return None
    return m["name"], int(m["port"]) if m["port"] is not None else None


class RequestGuard:
    """ASGI middleware: Host for every request; Origin and Content-Type for writes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        names = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
        self.any_host = "*" in names
        self.hosts = names | {settings.host.lower()}

    def _allowed(self, host: str) -> bool:
        parsed = parse_host(host)
        return parsed is not None and (self.any_host or parsed[0] in self.hosts)

    def _same_port(self, origin: str, host: str) -> bool:
        """The Origin names the port this request reached (a page served on another local port
        is another origin): the Host's port, or the scheme's default when it has none."""
        url, reached = urlsplit(origin), parse_host(host)
        try:
            port = url.port or DEFAULT_PORTS.get(url.scheme)
        except ValueError:
            return False
        return reached is not None and port == (reached[1] or DEFAULT_PORTS.get(url.scheme))

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        if scope["path"] in OPEN_PATHS:
            return None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self._allowed(host):
            return 403, (f"Host {host!r} is not allowed; it must be a plain host[:port] named "
                         "in SRU_HPO_ALLOWED_HOSTS")
        if scope["method"] not in WRITE_METHODS:
            return None
        origin = headers.get("origin")
        if origin == "null":
            return 403, "Origin 'null' is not allowed"
        if origin and not self.any_host and not (
                self._allowed(urlsplit(origin).netloc) and self._same_port(origin, host)):
            return 403, (f"Origin {origin!r} is not allowed: it must be this server's own "
                         "host and port, with the host in SRU_HPO_ALLOWED_HOSTS")
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
