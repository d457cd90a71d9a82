"""``RetryingStore``: the store as a worker uses it, every call retried while the database is
unreachable, in one place instead of call by call.

``RetryingStore(store, timeout=30, url=...)`` has the store's parts (``jobs``, ``curves``,
``studies``, ``files``, ``workers``, ``leases``); each method call on them goes through
``trials.connection.retrying`` (exponential backoff 0.1 → 2 s for up to ``timeout`` seconds, then
``DatabaseUnavailable`` naming the redacted URL and the call, ``jobs.finish`` say). A retried
call must be safe to repeat: that is the parts' own rule (every write a worker makes is fenced by
its reservation, so a repeated finish or pause matches nothing the second time). A call whose
retry needs more than repeating (``reserve`` asks again with ``retried=True`` to get the job the
lost reply held) builds its own closure for ``retrying``. The heartbeat thread uses the plain
store: it must not block in a retry, its failure ends the trial (workers/trial.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from trials.connection import retrying
from trials.curves import CurveStore
from trials.files import FileStore
from trials.job_protocol import WorkerJobs
from trials.job_reads import JobReads
from trials.jobs import JobQueue
from trials.registry import GpuLeases, WorkerRegistry
from trials.store import Store
from trials.studies import StudyRepo

__all__ = ["RetryingStore", "Retrying"]

class Retrying:
    """One store part, its methods retried (other attributes passed through)."""

    def __init__(self, part: Any, name: str, timeout: float, url: str) -> None:
        self._part, self._name, self._timeout, self._url = part, name, timeout, url

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._part, attr)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            return retrying(lambda: value(*args, **kwargs), timeout=self._timeout,
                            what=f"{self._name}.{attr}", url=self._url)

        return call


class RetryingStore:
    def __init__(self, store: Store, *, timeout: float, url: str = "") -> None:
        self.plain, self.timeout, self.url = store, timeout, url
        self.heartbeat_interval = store.heartbeat_interval

        def part(name: str) -> Any:  # typed as the part itself: the same methods, retried
            return Retrying(getattr(store, name), name, timeout, url)

        self.jobs: JobQueue = part("jobs")
        self.work: WorkerJobs = part("work")
        self.job_reads: JobReads = part("job_reads")
        self.curves: CurveStore = part("curves")
        self.studies: StudyRepo = part("studies")
        self.files: FileStore = part("files")
        self.workers: WorkerRegistry = part("workers")
        self.leases: GpuLeases = part("leases")

    def retry(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()`` retried as a whole (a call that is more than one repeatable store call)."""
        return retrying(fn, timeout=self.timeout, what=what, url=self.url)
