"""What the API process holds while it runs: settings, the database, the store, the drivers."""

from __future__ import annotations

import logging

from service.drivers import DriverManager
from service.embedded_db import EmbeddedMongo
from trials.connection import HealthProbe, connect, redact
from trials.settings import Settings
from trials.store import Store

__all__ = ["Runtime"]

log = logging.getLogger("sru_hpo.api")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedMongo | None = None
        url = settings.mongo_url
        if not url:
            self.embedded = EmbeddedMongo(settings.home / "db").start()
            url = self.embedded.url
            log.info("embedded database at %s (data in %s)", url, settings.home / "db")
        self.url = url
        # a stalled database answers reads with 503 after 5 s instead of hanging them
        self.store = Store(connect(url, settings.db_name, timeout=settings.connect_timeout,
                                   socket_timeout=5.0),
                           heartbeat_interval=settings.heartbeat_interval,
                           max_retries=settings.max_retries)
        self.store.ensure_indexes()
        # /healthz answers within 2 s: its own client gives up after 1 s
        self.health = HealthProbe(url, timeout=1.0)
        self.manager = DriverManager(
            self.store, poll=settings.driver_poll,
            lease_seconds=max(5.0, 10 * settings.driver_poll),
            fail_fast=settings.fail_fast_trials)

    def ping(self) -> None:
        self.health.ping()

    @property
    def database(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self.manager.stop()
        self.health.close()
        self.store.close()
        if self.embedded is not None:
            self.embedded.stop()
