"""``sru-hpo up`` and ``sru-hpo demo``: the embedded database, the API and N workers, supervised.

The launcher is a small process manager:

- every part is a child (``python -m sru_hpo serve|worker``) that dies with the launcher,
  even after a SIGKILL of the launcher (service/launcher/processes.py; the kernel then sends SIGKILL, so
  nothing of the home outlives it by more than a moment); the next start on the same home
  releases the jobs its workers held, with no retry spent;
- the port is checked before anything starts, and the health check confirms it reached *this*
  launcher's API (``/healthz`` reports the instance id the launcher gave it);
- a worker or the API that exits is restarted with backoff (0.5 s doubling to 10 s), each
  restart printed on the console; more than ``max_restarts`` restarts of one part within
  ``window`` seconds means something is wrong for good: the launcher stops everything and
  exits non-zero with the reason;
- SIGINT, SIGTERM and SIGHUP stop everything in order: workers first (they release their jobs),
  then the API, then the database.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from service.client.api_client import ApiClient, ApiError
from service.launcher.embedded_db import EmbeddedMongo, port_is_free, start_embedded
from service.launcher.processes import spawn
from sru_hpo.settings import Settings
from trials.store import Store

__all__ = ["Cluster", "GiveUp", "PortBusy", "stop_signals"]

BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0


class GiveUp(RuntimeError):
    """A part keeps dying: the launcher stopped everything."""


class PortBusy(RuntimeError):
    """The API port is taken before anything started."""


def stop_signals() -> threading.Event:
    """SIGINT/SIGTERM/SIGHUP set the returned event instead of raising, so a signal at any
    moment, start-up included, ends in Cluster.stop()."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@dataclass
class Part:
    """One supervised child: how to start it, and its restart history."""

    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: deque = field(default_factory=deque)  # monotonic times of recent restarts
    backoff: float = BACKOFF_FIRST
    due: float | None = None  # when a dead part is started again

    @property
    def pid(self) -> int | None:
        return getattr(self.proc, "pid", None)


class Cluster:
    def __init__(self, settings: Settings, workers: int, port: int | None = None,
                 worker_threads: int | None = None, device: str = "auto",
                 max_restarts: int = 5, window: float = 60.0,
                 say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.n_workers, self.device = workers, device
        self.port = port or settings.port
        # the cores split between the workers: each trainer's torch would otherwise start a
        # thread per core, and OpenMP threads spinning on cores another trainer holds made a
        # one-epoch retrain take 54 s instead of 2 (the paper dry run, 2 workers on 2 cores)
        self.worker_threads = worker_threads or max(1, (os.cpu_count() or 2) // max(workers, 1))
        self.max_restarts, self.window = max_restarts, window
        self.say = say
        self.instance = secrets.token_hex(8)
        self.db: EmbeddedMongo | None = None
        self.parts: list[Part] = []
        self.logs = settings.home / "logs"

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    # -- start --------------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> Cluster:
        if not port_is_free(self.settings.host, self.port):
            raise PortBusy(f"port {self.port} on {self.settings.host} is already in use (another "
                           "sru-hpo?); stop it or set SRU_HPO_PORT to a free port")
        url = self.settings.mongo_url
        if not url:
            self.db = start_embedded(self.settings.home)
            url = self.db.url
            self._release_orphans(url)
        env = {**os.environ, "SRU_HPO_MONGO_URL": url, "SRU_HPO_PORT": str(self.port),
               "SRU_HPO_HOME": str(self.settings.home), "PYTHONUNBUFFERED": "1"}
        threads = {"OMP_NUM_THREADS": str(self.worker_threads)}
        self.parts = [Part("api", ["serve"], {**env, "SRU_HPO_INSTANCE_ID": self.instance})]
        self.parts += [Part(f"worker-{i}", ["worker", "--device", self.device], {**env, **threads})
                       for i in range(self.n_workers)]
        for part in self.parts:
            self._launch(part)
        self._wait_healthy(timeout)
        return self

    def _release_orphans(self, url: str) -> None:
        """Jobs a killed launcher's workers held (they died with it, see ``_launch``) go back
        to the queue with no retry spent: this home's embedded database has no other workers."""
        store = Store.connect(url, self.settings.db_name, timeout=self.settings.connect_timeout)
        try:
            store.ensure_indexes()
            if n := store.release_orphans():
                self.say(f"released {n} job(s) the last run of this home left running")
        finally:
            store.close()

    def _launch(self, part: Part) -> None:
        """Every part gets SIGKILL when the launcher dies without stopping it (kill -9): a
        worker can not release its job into a database that died with the launcher, and must
        not wait for it; the next start releases that job (``_release_orphans``)."""
        part.proc = spawn([sys.executable, "-m", "sru_hpo", *part.args], env=part.env,
                          log=self.logs / f"{part.name}.log", death_signal=signal.SIGKILL)
        part.due = None

    def _wait_healthy(self, timeout: float) -> None:
        client = ApiClient(self.api_url, token=self.settings.api_token, timeout=5)
        api, deadline = self.parts[0], time.monotonic() + timeout
        while True:
            try:
                if _instance(client) == self.instance:
                    return
                raise PortBusy(f"another server answers on {self.api_url}; set SRU_HPO_PORT")
            except ApiError as exc:
                if api.proc is None or api.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the API did not start: {exc}; see "
                                       f"{self.logs / 'api.log'}") from exc
                time.sleep(0.3)

    # -- supervise ----------------------------------------------------------------------------------
    def supervise(self, stop: threading.Event, tick: float = 0.5,
                  while_running: Callable[[], bool] | None = None) -> None:
        """Restart parts that exit until ``stop`` is set (or ``while_running`` says done).
        Raises GiveUp when a part restarted more than ``max_restarts`` times in ``window`` s."""
        while not stop.wait(tick):
            self.check()
            if while_running is not None and not while_running():
                return

    def check(self) -> None:
        now = time.monotonic()
        for part in self.parts:
            assert part.proc is not None
            code = part.proc.poll()
            if code is None:
                if part.restarts and now - part.restarts[-1] > self.window:
                    part.backoff = BACKOFF_FIRST  # it has been fine for a while
                continue
            if part.due is None:
                while part.restarts and now - part.restarts[0] > self.window:
                    part.restarts.popleft()
                if len(part.restarts) >= self.max_restarts:
                    reason = (f"{part.name} exited {len(part.restarts) + 1} times within "
                              f"{self.window:.0f} s (last exit code {code}); see "
                              f"{self.logs / (part.name + '.log')}")
                    self.say(f"giving up: {reason}")
                    self.stop()
                    raise GiveUp(reason)
                part.due = now + part.backoff
                self.say(f"{part.name} (pid {part.pid}) exited with {code}; restarting in "
                         f"{part.backoff:.1f} s")
                part.backoff = min(part.backoff * 2, BACKOFF_MAX)
            elif now >= part.due:
                part.restarts.append(now)
                self._launch(part)
                self.say(f"{part.name} restarted (pid {part.pid})")

    # -- stop -----------------------------------------------------------------------------------
    def stop(self, timeout: float = 60.0) -> None:
        """Workers first (they release their jobs), then the API, then the database."""
        workers, api = self.parts[1:], self.parts[:1]
        for group in (workers, api):
            live = [p.proc for p in group if p.proc is not None and p.proc.poll() is None]
            for proc in live:
                proc.send_signal(signal.SIGTERM)
            for proc in live:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.db is not None:
            self.db.stop()

    def log_dir(self) -> Path:
        return self.logs


def _instance(client: ApiClient) -> str | None:
    """The instance id of the API answering ``/healthz``; None for a server that is not one
    (its answer does not read as the API's ``Health``)."""
    try:
        return client.health().instance
    except ValidationError:
        return None
