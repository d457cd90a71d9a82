"""Finding jobs whose worker died, judged by one clock: the requeuer's own monotonic clock.

A worker increments the job's ``heartbeat`` counter every ``heartbeat_interval`` seconds. The
sweeper remembers, per running job, the (owner, heartbeat) it last saw and *when it saw it by
its own clock*. A job whose pair has not changed for more than ``2 × heartbeat_interval`` (the
interval the worker recorded when it reserved the job) is stale.

Why this clock: comparing a worker's wall-clock timestamp with the requeuer's would mix two
hosts' clocks (skew would requeue live jobs or never requeue dead ones), and nx-27017 has no
server-side ``$currentDate`` comparison we could rely on. The price: a requeuer that just started
waits one grace period before it can judge anything. The requeue write itself is conditional on
the observed (owner, heartbeat), so any number of sweepers (every idle worker and the service
run one) requeue a job at most once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trials.states import JobState
from trials.store import JobStore

__all__ = ["StaleJobSweeper"]


class StaleJobSweeper:
    def __init__(self, store: JobStore, clock: Callable[[], float] = time.monotonic,
                 grace_factor: float = 2.0) -> None:
        self.store = store
        self.clock = clock
        self.grace_factor = grace_factor
        self._seen: dict[Any, tuple[tuple[Any, int], float]] = {}

    def sweep(self, exp_key: str | None = None) -> list[tuple[str, int, str]]:
        """One pass; returns (exp_key, tid, "requeued" | "error") for each job it acted on."""
        now = self.clock()
        query: dict[str, Any] = {"state": int(JobState.RUNNING)}
        if exp_key is not None:
            query["exp_key"] = exp_key
        fields = {"owner": 1, "heartbeat": 1, "heartbeat_interval": 1, "retries": 1,
                  "previous_owners": 1, "exp_key": 1, "tid": 1, "stop": 1}
        acted: list[tuple[str, int, str]] = []
        running = set()
        for doc in self.store.jobs.find(query, fields):
            running.add(doc["_id"])
            sig = (doc.get("owner"), int(doc.get("heartbeat", 0)))
            prev = self._seen.get(doc["_id"])
            if prev is None or prev[0] != sig:
                self._seen[doc["_id"]] = (sig, now)
                continue
            interval = float(doc.get("heartbeat_interval") or self.store.heartbeat_interval)
            silent = now - prev[1]
            if silent > self.grace_factor * interval:
                reason = f"worker {sig[0]} sent no heartbeat for {silent:.1f} s"
                outcome = self.store.requeue_stale(doc, reason)
                self._seen.pop(doc["_id"], None)
                if outcome:
                    acted.append((doc["exp_key"], int(doc["tid"]), outcome))
        for gone in set(self._seen) - running:
            del self._seen[gone]
        return acted
