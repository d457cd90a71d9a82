"""``sru-hpo up`` and ``sru-hpo demo``: the embedded database, the API and N workers on one machine.

Every part is a child process (``python -m service.cli serve|worker``) with the database URL in
its environment; Ctrl-C (or SIGTERM) stops the workers gracefully (their jobs go back to the
queue), then the API, then the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from service.client import ApiClient, ApiError
from service.embedded_db import EmbeddedMongo, free_port
from trials.settings import Settings

__all__ = ["Cluster"]


class Cluster:
    def __init__(self, settings: Settings, workers: int, port: int | None = None,
                 worker_threads: int | None = None) -> None:
        self.settings = settings
        self.n_workers = workers
        self.port = port or settings.port or free_port()
        self.worker_threads = worker_threads
        self.db: EmbeddedMongo | None = None
        self.procs: list[subprocess.Popen] = []
        self.logs = settings.home / "logs"

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        p = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def start(self, timeout: float = 120.0) -> Cluster:
        url = self.settings.mongo_url
        if not url:
            self.db = EmbeddedMongo(self.settings.home / "db").start()
            url = self.db.url
        env = {**os.environ, "SRU_HPO_MONGO_URL": url, "SRU_HPO_PORT": str(self.port),
               "SRU_HPO_HOME": str(self.settings.home), "PYTHONUNBUFFERED": "1"}
        self._spawn(["serve"], env, "api")
        wenv = dict(env)
        if self.worker_threads:
            wenv["OMP_NUM_THREADS"] = str(self.worker_threads)
        for i in range(self.n_workers):
            self._spawn(["worker", "--device", "auto"], wenv, f"worker-{i}")
        client = ApiClient(self.api_url, token=self.settings.api_token)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.health()
                return self
            except ApiError as exc:
                if self.procs[0].poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the API did not start; see {self.logs / 'api.log'}") from exc
                time.sleep(0.3)

    def stop(self, timeout: float = 60.0) -> None:
        workers, api = self.procs[1:], self.procs[:1]
        for group in (workers, api):  # workers first, so they can still release their jobs
            for p in group:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in group:
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.db is not None:
            self.db.stop()

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def log_dir(self) -> Path:
        return self.logs
