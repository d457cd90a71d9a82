"""``DriverManager``: one thread per study being driven, a wake-up watcher, and the sweeper.

Each study gets its own thread running ``StudyDriver.step`` in a loop, so a slow pass of one
study (a TPE suggestion over thousands of trials) never delays another. A thread sleeps up to
``SRU_HPO_DRIVER_POLL`` seconds between passes, and wakes early when a worker nudges the drivers
(a trial finished, a worker went idle): the watcher polls one small document for that, every
10 ms at first and backing off to the poll interval while nothing happens. The sweeper thread
requeues jobs of dead workers and removes orphaned files.
"""

from __future__ import annotations

import logging
import threading
import time

from service.orchestrator.driver import StudyDriver, make_holder
from service.studies import comparisons
from sru_hpo.settings import Settings
from trials.connection import NETWORK_ERRORS
from trials.requeue import StaleJobSweeper
from trials.store import Store

__all__ = ["DriverManager"]

log = logging.getLogger("sru_hpo.driver")
WATCH_MIN = 0.01
PUBLISH_EVERY = 1.0  # seconds between a running study's summary writes (the end: at once)


class DriverManager:
    def __init__(self, store: Store, *, poll: float, lease_seconds: float, fail_fast: int,
                 orphan_age: float = 600.0, adopt: bool = False) -> None:
        self.store, self.poll, self.adopt = store, poll, adopt
        self.lease_seconds, self.fail_fast, self.orphan_age = lease_seconds, fail_fast, orphan_age
        self.holder = make_holder()
        self._threads: dict[str, threading.Thread] = {}
        self._wake: dict[str, threading.Event] = {}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._background: list[threading.Thread] = []

    @classmethod
    def for_service(cls, store: Store, settings: Settings, adopt: bool = False) -> DriverManager:
        """The drivers of an API process, or (``adopt``) of an ``sru-hpo orchestrate`` process,
        which also takes up studies the API created when it is nudged."""
        return cls(store, poll=settings.driver_poll,
                   lease_seconds=max(5.0, 10 * settings.driver_poll),
                   fail_fast=settings.fail_fast_trials, adopt=adopt)

    # -- lifecycle ---------------------------------------------------------------------------------
    def resume_all(self) -> None:
        """Finish deletions a crash interrupted, create the studies of a comparison a crash
        left without them, drive every unfinished study, start the watcher and the sweeper."""
        for tomb in self.store.comparisons.tombstones():
            comparisons.finish_deletion(self.store, tomb)
        for sid in self.store.studies.tombstones():
            self.store.finish_deletion(sid)
        for c in self.store.comparisons.unfinished():  # killed between creating two studies
            comparisons.ensure_studies(self.store, c)
        for sid in self.store.studies.to_drive():
            self.start(sid)
        for target, name in ((self._watch, "driver-wake"), (self._sweep, "sweeper")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._background.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        with self._lock:
            for ev in self._wake.values():
                ev.set()
            threads = list(self._threads.values()) + self._background
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def start(self, sid: str) -> None:
        """Drive ``sid`` (no-op if it is already driven here)."""
        with self._lock:
            t = self._threads.get(sid)
            if t is not None and t.is_alive():
                self._wake[sid].set()
                return
            driver = StudyDriver(self.store, sid, holder=self.holder,
                                 lease_seconds=self.lease_seconds, fail_fast=self.fail_fast,
                                 publish_every=PUBLISH_EVERY)
            self._wake[sid] = threading.Event()
            t = threading.Thread(target=self._drive, args=(driver,), name=f"study-{sid}",
                                 daemon=True)
            self._threads[sid] = t
            t.start()

    def wake(self, sid: str | None = None) -> None:
        with self._lock:
            for key, ev in self._wake.items():
                if sid is None or key == sid:
                    ev.set()

    @property
    def active(self) -> int:
        with self._lock:
            return sum(1 for t in self._threads.values() if t.is_alive())

    # -- threads -----------------------------------------------------------------------------------
    def _drive(self, driver: StudyDriver) -> None:
        ev = self._wake[driver.sid]
        while not self._stopping.is_set():
            try:
                if driver.step():
                    break
            except NETWORK_ERRORS as exc:  # database away: keep trying, the state is safe there
                log.warning("study %s: database error %s; retrying", driver.sid, exc)
            except Exception:  # a bug must not kill the other studies' drivers
                log.exception("study %s: driver step failed", driver.sid)
            ev.wait(self.poll)
            ev.clear()
        with self._lock:
            if self._threads.get(driver.sid) is threading.current_thread():
                del self._threads[driver.sid]
                del self._wake[driver.sid]

    def _watch(self) -> None:
        """Wake every driver when a worker nudged; back off while nothing happens."""
        last, wait = None, WATCH_MIN
        while not self._stopping.wait(wait):
            try:
                seq = self.store.studies.wake_seq()
            except NETWORK_ERRORS:
                wait = self.poll
                continue
            if seq != last:
                if last is not None:
                    self._take_up_new()
                    self.wake()
                last, wait = seq, WATCH_MIN
            else:
                wait = min(wait * 2, self.poll)

    def _take_up_new(self) -> None:
        """An orchestrator apart from the API learns of a new study by a nudge: drive every
        study that needs it and is not driven here yet (its lease keeps one driver per study
        across processes)."""
        if not self.adopt:
            return
        try:
            for sid in self.store.studies.to_drive():
                self.start(sid)
        except NETWORK_ERRORS as exc:
            log.warning("orchestrator: %s", exc)

    def _sweep(self) -> None:
        sweeper = StaleJobSweeper(self.store.upkeep)
        last_gc = time.monotonic()
        while not self._stopping.wait(self.store.heartbeat_interval / 2):
            try:
                for sid, _, _ in sweeper.sweep():
                    self.wake(sid)
                self.store.workers.remove_stale()
                if time.monotonic() - last_gc > self.orphan_age / 2:
                    self.store.collect_orphans(self.orphan_age)
                    last_gc = time.monotonic()
            except NETWORK_ERRORS as exc:
                log.warning("sweeper: %s", exc)
            except Exception:
                log.exception("sweeper failed")
