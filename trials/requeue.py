"""Finding jobs whose worker died, judged by one clock: the requeuer's own monotonic clock.

A worker increments the job's ``heartbeat`` counter every ``heartbeat_interval`` seconds. The
sweeper remembers, per running job, the (attempt, heartbeat) it last saw and *when it saw it by
its own clock*. A job whose pair has not changed for more than ``2 × heartbeat_interval`` (the
interval the worker recorded when it reserved the job) is stale.

Why this clock: comparing a worker's timestamp with the requeuer's would mix two hosts' clocks
(skew would requeue live jobs or never requeue dead ones). The price: a requeuer that just
started waits one grace period before it can judge anything. The requeue write itself is
conditional on the observed (attempt, heartbeat), so any number of sweepers (every idle worker
and the service run one) requeue a job at most once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trials.job_upkeep import JobUpkeep

__all__ = ["StaleJobSweeper"]


class StaleJobSweeper:
    def __init__(self, jobs: JobUpkeep, clock: Callable[[], float] = time.monotonic,
                 grace_factor: float = 2.0) -> None:
        self.jobs = jobs
        self.clock = clock
        self.grace_factor = grace_factor
        self._seen: dict[Any, tuple[tuple[Any, int], float]] = {}

    def sweep(self, sid: str | None = None) -> list[tuple[str, int, str]]:
        """One pass; returns (sid, tid, "requeued" | "cancelled" | "error") per job it
        acted on."""
        now = self.clock()
        acted: list[tuple[str, int, str]] = []
        running = set()
        for doc in self.jobs.running(sid):
            running.add(doc["_id"])
            sig = (doc.get("attempt"), int(doc.get("heartbeat", 0)))
            prev = self._seen.get(doc["_id"])
            if prev is None or prev[0] != sig:
                self._seen[doc["_id"]] = (sig, now)
                continue
            interval = float(doc.get("heartbeat_interval") or self.jobs.heartbeat_interval)
            silent = now - prev[1]
            if silent > self.grace_factor * interval:
                reason = f"worker {doc.get('owner')} sent no heartbeat for {silent:.1f} s"
                outcome = self.jobs.requeue_stale(doc, reason)
                self._seen.pop(doc["_id"], None)
                if outcome:
                    acted.append((doc["exp_key"], int(doc["tid"]), outcome))
        for gone in set(self._seen) - running:
            del self._seen[gone]
        return acted
