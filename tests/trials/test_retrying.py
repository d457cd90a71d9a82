"""The worker's retrying store (trials/retrying.py): every call of a part is retried while the
database is unreachable, and gives up naming the call and the redacted URL."""

from __future__ import annotations

import pytest
from pymongo.errors import AutoReconnect

from trials.connection import DatabaseUnavailable
from trials.retrying import Retrying, RetryingStore


class Flaky:
    """A part whose ``finish`` fails ``fails`` times with a network error, then answers."""

    limit = 7

    def __init__(self, fails: int) -> None:
        self.fails, self.calls = fails, []

    def finish(self, job: str, *, outcome: str) -> str:
        self.calls.append((job, outcome))
        if len(self.calls) <= self.fails:
            raise AutoReconnect("connection refused")
        return f"{job}:{outcome}"


def test_a_call_is_retried_with_the_same_arguments_until_it_answers():
    part = Flaky(fails=2)
    jobs = Retrying(part, "jobs", timeout=30, url="mongodb://u:secret@db:27017")
    assert jobs.finish("s:1", outcome="ok") == "s:1:ok"
    assert part.calls == [("s:1", "ok")] * 3
    assert jobs.limit == 7  # attributes that are not methods pass through


def test_it_gives_up_naming_the_call_and_never_the_password():
    part = Flaky(fails=10**6)
    jobs = Retrying(part, "jobs", timeout=0.5, url="mongodb://u:secret@db:27017")
    with pytest.raises(DatabaseUnavailable) as err:  # it gives up: no clock read here
        jobs.finish("s:1", outcome="ok")
    assert "jobs.finish" in str(err.value) and "secret" not in str(err.value)


def test_other_errors_are_not_retried():
    class Broken:
        calls = 0

        def fail(self) -> None:
            Broken.calls += 1
            raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        Retrying(Broken(), "jobs", timeout=30, url="").fail()
    assert Broken.calls == 1


def test_the_retrying_store_is_the_real_store_underneath(store):
    db = RetryingStore(store, timeout=5)
    tid = db.jobs.enqueue("rs", kind="retrain", params={"seed": 1}, epochs=2)
    assert db.job_reads.get("rs", tid).params == {"seed": 1}
    assert db.plain is store and db.heartbeat_interval == store.heartbeat_interval
    assert db.retry(lambda: store.job_reads.get("rs", tid).tid, "read") == tid
