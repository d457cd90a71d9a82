"""What the API process holds while it runs: settings, the store, the health probe and, unless
``SRU_HPO_DRIVE_STUDIES`` is off, the study drivers (service/orchestrator/drivers.py)."""

from __future__ import annotations

from service.orchestrator.drivers import DriverManager
from sru_hpo.settings import Settings
from trials.connection import HealthProbe, redact
from trials.store import Store

__all__ = ["Runtime"]


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.mongo_url or ""
        self.store = Store.for_service(settings)
        # /healthz answers within 2 s: its own client gives up after 1 s
        self.health = HealthProbe(self.url, timeout=1.0)
        self.manager = (DriverManager.for_service(self.store, settings)
                        if settings.drive_studies else None)

    def start(self) -> None:
        if self.manager is not None:
            self.manager.resume_all()

    def drive(self, sid: str) -> None:
        """A study was created or changed: drive it here, or tell the orchestrators."""
        if self.manager is not None:
            self.manager.start(sid)
        else:
            self.store.studies.nudge()

    @property
    def studies_driven(self) -> int:
        return self.manager.active if self.manager is not None else 0

    def ping(self) -> None:
        self.health.ping()

    @property
    def database(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        if self.manager is not None:
            self.manager.stop()
        self.health.close()
        self.store.close()
