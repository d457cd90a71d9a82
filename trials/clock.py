"""The database server's clock, read through ``hello``: one clock for every host.

Leases (the study driver's, the GPU slots'), worker liveness and the ``updated`` stamps the
incremental readers use are compared across hosts, so they are all written and judged in
server time. MongoDB and nx-27017 both answer ``hello`` with ``localTime``
(tests/trials/test_clock.py pins it). The offset to the local monotonic clock is measured once
and again every ``resync`` seconds; between measurements time advances by the monotonic clock,
so a jump of the local wall clock changes nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from pymongo.database import Database

from trials.connection import NETWORK_ERRORS

__all__ = ["ServerClock"]


def _seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # BSON dates are UTC
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise TypeError(f"hello.localTime: expected a datetime, got {value!r}")


class ServerClock:
    """``now()``: float seconds since the epoch by the database server's clock (±RTT/2)."""

    def __init__(self, db: Database, resync: float = 300.0) -> None:
        self.db, self.resync = db, resync
        self._anchor: tuple[float, float] | None = None  # (monotonic, server seconds)
        self._lock = threading.Lock()

    def _measure(self) -> tuple[float, float]:
        t0 = time.monotonic()
        server = _seconds(self.db.client.admin.command("hello")["localTime"])
        t1 = time.monotonic()
        return (t0 + t1) / 2, server

    def now(self) -> float:
        with self._lock:
            mono = time.monotonic()
            if self._anchor is None:
                self._anchor = self._measure()
            elif mono - self._anchor[0] > self.resync:
                try:
                    self._anchor = self._measure()
                except NETWORK_ERRORS:  # keep counting from the last measurement
                    pass
            return self._anchor[1] + (mono - self._anchor[0])
