"""Shared fixtures: a real MongoDB-protocol server over TCP, and helpers to start real processes.

``SRU_HPO_TEST_MONGO_URL`` points the tests at a real MongoDB; otherwise an nx-27017 server is
started on a free port for the session. Each test gets its own database name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# One thread per torch in the test processes and what they start (the spawned workers' env sets
# it too): ``make test`` runs a pytest process per core and one more, and a torch with a thread
# per core each spins OpenMP threads on cores the others hold. Set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pymongo import MongoClient  # noqa: E402

from service.launcher.embedded_db import EmbeddedMongo  # noqa: E402
from trials.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Heartbeat interval for real worker processes in tests: a job is stale after 2 silent
#: intervals (6 s), so a 2 s stall of a loaded machine never requeues a live job.
HB = "3"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with a slow test run first, the rest after them in their usual order. ``make test``
    hands each pytest process one file at a time (xdist loadfile): a long file handed out last
    kept the other processes idle until it ended, while short files now fill in at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within each part


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("SRU_HPO_TEST_MONGO_URL")
    if url:
        yield url
        return
    with EmbeddedMongo(tmp_path_factory.mktemp("nx27017")) as db:
        yield db.url


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(mongo_url, db_name):
    client: MongoClient = MongoClient(mongo_url, tz_aware=True)
    yield client[db_name]
    client.drop_database(db_name)
    client.close()


@pytest.fixture
def store(db) -> Store:
    s = Store(db, heartbeat_interval=0.5, max_retries=2)
    s.ensure_indexes()
    return s


def proc_env(mongo_url: str, db_name: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SRU_HPO_MONGO_URL": mongo_url, "SRU_HPO_DB_NAME": db_name,
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "SRU_HPO_HEARTBEAT_INTERVAL": HB}
    env.update(extra)
    return env


@pytest.fixture
def spawn(tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a real process (`python -m sru_hpo ...`); every one is killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], name: str = "proc") -> subprocess.Popen:
        log = open(tmp_path / f"{name}-{len(procs)}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen([sys.executable, "-m", "sru_hpo", *args], env=env, cwd=ROOT,
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        p.log_path = log.name  # type: ignore[attr-defined]
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def read_log(p: subprocess.Popen) -> str:
    return Path(p.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def assert_nothing_names(store: Store, sid: str) -> None:
    """No document of any collection and no GridFS file mentions the study ``sid``."""
    db = store.db
    for name in db.list_collection_names():
        if name.endswith((".files", ".chunks")):
            continue  # GridFS: checked through its own API below
        for d in db[name].find():
            assert sid not in repr(d), (name, d)
    assert [f for f in store.files.all_files() if f[2].get("exp_key") == sid] == []
