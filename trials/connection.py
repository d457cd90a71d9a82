"""Connecting to MongoDB with bounded retries; the URL is never printed with its password."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import pymongo
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
)

__all__ = ["DatabaseUnavailable", "NETWORK_ERRORS", "connect", "redact", "retrying",
           "SECRET_OPTIONS", "HealthProbe", "answers", "request_deadline"]

log = logging.getLogger(__name__)
#: A database that is away or too slow (ExecutionTimeout: a client-side deadline ran out).
NETWORK_ERRORS = (AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError, ExecutionTimeout)
T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database did not answer within the retry budget."""


#: URL options that carry a secret (or a path to one) in a MongoDB connection string.
SECRET_OPTIONS = frozenset(o.lower() for o in (
    "password", "tlsCertificateKeyFilePassword", "sslPEMKeyPassword", "sslClientCertificateKeyPassword",
    "authMechanismProperties", "tlsCertificateKeyFile", "sslPEMKeyFile", "sslClientCertificateKeyFile",
    "tlsCRLFile", "secret", "token", "awsSessionToken", "aws_session_token", "authSource_password",
))


def redact(url: str) -> str:
    """The URL without its secrets: the password of the user-info part and the value of every
    credential-bearing option (``tlsCertificateKeyFilePassword``, ``authMechanismProperties``,
    ...) become ``***``. Anything unparsable is hidden whole."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = "&".join(
            f"{k}=***" if k.lower() in SECRET_OPTIONS or "password" in k.lower()
            or "secret" in k.lower() or "token" in k.lower() else f"{k}={v}"
            for k, _, v in (item.partition("=") for item in parts.query.split("&") if item))
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return "mongodb://***"


def retrying(fn: Callable[[], T], *, timeout: float, what: str, url: str = "") -> T:
    """Call ``fn``; on network errors retry with exponential backoff (0.1 s .. 2 s) for up to
    ``timeout`` seconds, then raise DatabaseUnavailable naming the (redacted) URL."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            return fn()
        except NETWORK_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"{what}: database at {redact(url) or '?'} unreachable for {timeout:.0f} s: {exc}"
                ) from exc
            log.warning("%s: database unreachable (%s), retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def connect(url: str, db_name: str, *, timeout: float = 30.0,
            socket_timeout: float = 30.0) -> Database:
    """A Database handle after the server answered a ping (retried up to ``timeout`` s).

    An operation on a server that stopped answering fails after ``socket_timeout`` s (pymongo's
    default is to wait forever). Auth and TLS options in ``url`` pass through unchanged.
    """
    client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000,
                                      socketTimeoutMS=int(socket_timeout * 1000), tz_aware=True)
    retrying(lambda: client.admin.command("ping"), timeout=timeout, what="connect", url=url)
    return client[db_name]


def answers(url: str, timeout: float = 0.3) -> bool:
    """True when a server at ``url`` answers a ping within ``timeout`` seconds."""
    ms = int(timeout * 1000)
    client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                                      socketTimeoutMS=ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


class HealthProbe:
    """A client of its own with short timeouts, so a health check answers within ~2 s even
    when the main client's operations are stuck behind a stalled server."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.timeout = timeout
        ms = int(timeout * 1000)
        self._client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=ms,
                                                connectTimeoutMS=ms, socketTimeoutMS=ms)

    def ping(self) -> None:
        # one deadline for the whole ping (selection, handshake, reply), also when it runs
        # inside a request's longer one (request_deadline): the shorter wins
        with pymongo.timeout(self.timeout):
            self._client.admin.command("ping")

    def close(self) -> None:
        self._client.close()


class request_deadline:  # noqa: N801 - used like pymongo.timeout, which it wraps
    """ASGI middleware: every database operation an HTTP request makes shares one deadline of
    ``seconds`` (pymongo's client-side timeout, a context variable the request's worker threads
    inherit), so a stalled database answers the request with a 503 in bounded time. The socket
    timeout alone bounded each step, not the request: a first request after a stall waited for
    the socket, server selection and a new connection's handshake, 8–9 s. Paths in ``exempt``
    (a file download streaming for as long as it takes) keep the per-step bounds; a shorter
    ``pymongo.timeout`` inside (the health probe's) wins."""

    def __init__(self, app, seconds: float, exempt: tuple[str, ...] = ()) -> None:  # noqa: ANN001
        self.app, self.seconds, self.exempt = app, seconds, exempt

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["path"].endswith(self.exempt):
            await self.app(scope, receive, send)
            return
        with pymongo.timeout(self.seconds):
            await self.app(scope, receive, send)
