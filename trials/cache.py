"""A study's jobs in memory, refreshed incrementally: what the study driver reads every pass.

After one cold load, a refresh fetches only the job documents whose ``updated`` stamp (server
clock) is at or after the previous read's start minus ``overlap`` seconds; the overlap covers a
write stamped just before a read and committed just after it. Every ``resync`` seconds a full
reload replaces the cache (it also drops documents deleted behind its back, and catches a
writer that stalled longer than the overlap between stamping and committing). A killed service
rebuilds the cache with one cold load. ``tests/trials/test_cache.py`` checks that a refreshed
cache equals a cold load after new, updated, requeued and deleted trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from trials.jobs import JobQueue
from trials.states import JobKind, JobState, Outcome

__all__ = ["TrialCache", "count_trials"]

COUNTED_OUTCOMES = (Outcome.PRUNED.value, Outcome.DIVERGED.value, Outcome.STOPPED_AT_RUNG.value)


def count_trials(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Search trials by state label (new, running, done, error, cancelled), by the outcomes
    done hides (pruned, diverged, stopped_at_rung, and ``paused``: ASHA, waiting at a rung),
    and ``finished`` (done + error)."""
    counts = dict.fromkeys([s.label for s in JobState] + list(COUNTED_OUTCOMES)
                           + ["paused", "finished"], 0)
    for d in docs:
        if d.get("kind") != JobKind.TRIAL.value:
            continue
        state = JobState(d["state"])
        counts[state.label] += 1
        counts["finished"] += state.is_finished()
        if d.get("outcome") in COUNTED_OUTCOMES:
            counts[d["outcome"]] += 1
        counts["paused"] += d.get("outcome") == Outcome.PAUSED.value
    return counts


class TrialCache:
    def __init__(self, jobs: JobQueue, exp_key: str, *, overlap: float = 3.0,
                 resync: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs, self.exp_key = jobs, exp_key
        self.overlap, self.resync, self.clock = overlap, resync, clock
        self.docs: dict[int, dict[str, Any]] = {}
        self._since: float | None = None  # server time the last read started
        self._last_full = -float("inf")
        self.reads = 0  # documents fetched so far (benchmarks print it)

    def refresh(self, full: bool = False) -> int:
        """Bring the cache up to date; returns how many documents were read."""
        started = self.jobs.clock.now()
        if full or self._since is None or self.clock() - self._last_full > self.resync:
            docs = self.jobs.changed(self.exp_key, None)
            self.docs = {int(d["tid"]): d for d in docs}
            self._last_full = self.clock()
        else:
            docs = self.jobs.changed(self.exp_key, self._since - self.overlap)
            for d in docs:
                self.docs[int(d["tid"])] = d
        self._since = started
        self.reads += len(docs)
        return len(docs)

    def insert(self, docs: list[dict[str, Any]]) -> None:
        """Insert new jobs through the queue and keep them without reading them back."""
        self.jobs.insert(docs)
        for d in docs:
            self.docs[int(d["tid"])] = d

    def of_kind(self, kind: JobKind) -> list[dict[str, Any]]:
        return sorted((d for d in self.docs.values() if d.get("kind") == kind.value),
                      key=lambda d: d["tid"])

    def counts(self) -> dict[str, int]:
        return count_trials(list(self.docs.values()))
