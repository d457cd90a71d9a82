"""The API against the test database: a real server process (uvicorn on a free port), or the
app in this process (``in_process_api``: FastAPI's TestClient, the lifespan and the study drivers
included) for route logic that needs no process of its own."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from service.client.api_client import http_client
from service.launcher.embedded_db import free_port
from tests.conftest import HB, ROOT, proc_env, wait_for
from trials.store import Store

TOKEN = "s3cret-token"


@dataclass
class Api:
    url: str
    proc: subprocess.Popen
    db_name: str
    log: Path
    env: dict

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http_client(self.url, headers, 60)  # the CLI's: resends a GET the server reset


def wait_healthy(port: int, proc: subprocess.Popen, why_exited, timeout: float = 120) -> None:  # noqa: ANN001
    """Until the API on ``port`` answers /healthz; an exit of ``proc`` fails at once with
    ``why_exited()``."""
    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(why_exited())
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout, "API health")


def start_api(env: dict, log: Path, port: int) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115
    p = subprocess.Popen([sys.executable, "-m", "sru_hpo", "serve"], env=env, cwd=ROOT,
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_healthy(port, p, lambda: f"API exited: {log.read_text()[-3000:]}")
    return p


def make_api(mongo_url: str, tmp: Path, **extra: str) -> Api:
    db_name = f"api_{uuid.uuid4().hex[:10]}"
    port = free_port()
    settings = {"SRU_HPO_PORT": str(port), "SRU_HPO_API_TOKEN": TOKEN,
                "SRU_HPO_HOME": str(tmp), "SRU_HPO_DRIVER_POLL": "0.2"}
    env = proc_env(mongo_url, db_name, **{**settings, **extra})
    log = tmp / "api.log"
    p = start_api(env, log, port)
    return Api(f"http://127.0.0.1:{port}", p, db_name, log, env)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def api(mongo_url, tmp_path_factory) -> Iterator[Api]:
    a = make_api(mongo_url, tmp_path_factory.mktemp("api"), SRU_HPO_MAX_BODY_BYTES="20000")
    yield a
    stop(a.proc)
    MongoClient(mongo_url).drop_database(a.db_name)


@pytest.fixture
def api_store(api, mongo_url) -> Store:
    return Store(MongoClient(mongo_url)[api.db_name], heartbeat_interval=3)


@dataclass
class InProcessApi:
    """The app in the test's process; ``client()`` answers like ``Api.client()``."""

    app: Any
    db_name: str
    base_url: str = "http://127.0.0.1:8000"  # a loopback Host, as the Host guard expects

    def client(self, token: str | None = TOKEN) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # not entered: the lifespan ran once for the app (see in_process_api); this client only
        # sends requests to it
        return TestClient(self.app, base_url=self.base_url, headers=headers)


@contextmanager
def in_process_api(mongo_url: str, tmp: Path, **settings: Any) -> Iterator[InProcessApi]:
    from service.api.app import create_app
    from sru_hpo.settings import Settings

    db_name = f"api_{uuid.uuid4().hex[:10]}"
    config = Settings(**{"mongo_url": mongo_url, "db_name": db_name, "api_token": TOKEN,
                         "home": tmp, "driver_poll": 0.2, "heartbeat_interval": float(HB),
                         **settings})
    app = create_app(config)
    try:
        with TestClient(app, base_url=InProcessApi.base_url):  # runs the lifespan: drivers up
            yield InProcessApi(app, db_name)
    finally:
        MongoClient(mongo_url).drop_database(db_name)
