"""Shared fixtures: a real MongoDB-protocol server over TCP, and helpers to start real processes.

``SRU_HPO_TEST_MONGO_URL`` points the tests at a real MongoDB; otherwise an nx-27017 server is
started on a free port for the session. Each test gets its own database name.
"""

from __future__ import annotations

import json
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


#: Each test file's seconds in the last ``make test-durations`` run (make test reads it to order
#: the files: the longest first).
DURATIONS = Path(__file__).with_name("durations.json")
#: The seconds assumed for a file with a slow test that ``durations.json`` does not list yet.
UNLISTED_SLOW_S = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test file's seconds to {DURATIONS.name} (make test-durations)")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first, the rest after them by their recorded seconds. ``make test``
    hands each pytest process one file at a time (xdist loadfile): a long file handed out last
    kept the other processes idle until it ended, while short files fill in at the end (the
    longest-processing-time-first rule). A file not in ``durations.json`` counts
    ``UNLISTED_SLOW_S`` if it holds a slow test and nothing otherwise."""
    seconds: dict[str, float] = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    slow = {_file_of(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def weight(item: pytest.Item) -> float:
        name = _file_of(item.nodeid)
        return seconds.get(name, UNLISTED_SLOW_S if name in slow else 0.0)

    items.sort(key=weight, reverse=True)  # stable: the order within a file is kept


class _Durations:
    """``--store-durations``: sums each file's setup, call and teardown seconds as the reports
    come in (from every xdist process) and, when the run has passed, writes them over the
    recorded ones: a run of some files keeps the others' seconds; a file that is gone is
    dropped."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = _file_of(report.nodeid)
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus == 0 and not hasattr(session.config, "workerinput"):
            old = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
            merged = {**old, **{k: round(v, 1) for k, v in self.seconds.items()}}
            kept = {k: v for k, v in merged.items() if (ROOT / k).exists()}
            ordered = dict(sorted(kept.items(), key=lambda kv: -kv[1]))
            DURATIONS.write_text(json.dumps(ordered, indent=1) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--store-durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Durations(), "sru-hpo-durations")


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
