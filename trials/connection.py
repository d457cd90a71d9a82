"""Connecting to MongoDB with bounded retries; the URL is never printed with its password."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError

__all__ = ["DatabaseUnavailable", "NETWORK_ERRORS", "connect", "redact", "retrying"]

log = logging.getLogger(__name__)
NETWORK_ERRORS = (AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError)
T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database did not answer within the retry budget."""


def redact(url: str) -> str:
    """``mongodb://user:secret@host/`` -> ``mongodb://user:***@host/``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


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


def connect(url: str, db_name: str, *, timeout: float = 30.0) -> Database:
    """A Database handle after the server answered a ping (retried up to ``timeout`` s).

    Auth and TLS options in ``url`` pass through to pymongo unchanged.
    """
    client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000,
                                      tz_aware=True)
    retrying(lambda: client.admin.command("ping"), timeout=timeout, what="connect", url=url)
    return client[db_name]
