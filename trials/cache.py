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

from trials.interface import DriverStore
from trials.records import JobRecord
from trials.states import FINISHED, JobKind, JobState, Outcome

__all__ = ["TrialCache", "count_trials"]

COUNTED_OUTCOMES = (Outcome.PRUNED.value, Outcome.DIVERGED.value, Outcome.STOPPED_AT_RUNG.value,
                    Outcome.INFEASIBLE.value, Outcome.TIMEOUT.value)
_LABELS = {int(s): s.label for s in JobState}  # counted per document: plain lookups
_OUTCOME_KEYS = {**{o: o for o in COUNTED_OUTCOMES}, Outcome.PAUSED.value: "paused"}


def count_trials(docs: list[dict[str, Any]]) -> dict[str, int]:
    """Search trials by state label (new, running, done, error, cancelled), by the outcomes
    done hides (pruned, diverged, infeasible, timeout, stopped_at_rung, and ``paused``: ASHA,
    waiting at a rung), and ``finished`` (done + error)."""
    counts = dict.fromkeys([s.label for s in JobState] + list(COUNTED_OUTCOMES)
                           + ["paused", "finished"], 0)
    for d in docs:
        if d.get("kind") == JobKind.TRIAL.value:
            counts[_LABELS[d["state"]]] += 1
            outcome = d.get("outcome")
            if outcome in _OUTCOME_KEYS:
                counts[_OUTCOME_KEYS[outcome]] += 1
    counts["finished"] = sum(counts[s.label] for s in FINISHED)
    return counts


class TrialCache:
    def __init__(self, store: DriverStore, sid: str, *, overlap: float = 3.0,
                 resync: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs, self.job_reads, self.sid = store.jobs, store.job_reads, sid
        self.server = store.clock
        self.overlap, self.resync, self.clock = overlap, resync, clock
        self.docs: dict[int, dict[str, Any]] = {}  # hyperopt's documents, by tid
        self._since: float | None = None  # server time the last read started
        self._last_full = -float("inf")
        self.reads = 0  # documents fetched so far (benchmarks print it)
        self.version = 0  # bumped whenever ``docs`` changes; what ``_memo`` was computed at
        self._memo: dict[Any, Any] = {}
        # the records of each kind by tid, kept in tid order as they change (a refresh adds
        # mostly new, higher tids), so ``of_kind`` does not sort the study every pass; one
        # record per version of a document, so a reader may key its own memo on the record
        self._kinds: dict[str, dict[int, JobRecord]] = {}

    def refresh(self, full: bool = False) -> int:
        """Bring the cache up to date; returns how many documents were read."""
        started = self.server.now()
        if full or self._since is None or self.clock() - self._last_full > self.resync:
            docs = self.job_reads.changed(self.sid, None)
            fresh = {int(d["tid"]): d for d in docs}
            if fresh != self.docs:
                self.docs = fresh
                self._kinds = {}
                for tid in sorted(fresh):
                    self._file(fresh[tid])
                self._changed()
            self._last_full = self.clock()
        else:
            docs = self.job_reads.changed(self.sid, self._since - self.overlap)
            self._keep(docs)
        self._since = started
        self.reads += len(docs)
        return len(docs)

    def insert(self, docs: list[dict[str, Any]]) -> None:
        """Insert new jobs through the queue and keep them without reading them back."""
        self.jobs.insert(docs)
        self._keep(docs)

    def _keep(self, docs: list[dict[str, Any]]) -> None:
        """Store ``docs``; the overlap re-reads recent documents, so most are unchanged."""
        changed = False
        for d in docs:
            tid = int(d["tid"])
            if self.docs.get(tid) != d:
                self.docs[tid] = d
                self._file(d)
                changed = True
        if changed:
            self._changed()

    def _file(self, d: dict[str, Any]) -> None:
        """Put ``d``'s record in its kind's tid-ordered dict (a tid below the last re-sorts
        it)."""
        tid, kind = int(d["tid"]), self._kinds.setdefault(str(d.get("kind")), {})
        late = tid not in kind and kind and tid < next(reversed(kind))
        kind[tid] = JobRecord(d)
        if late:
            self._kinds[str(d.get("kind"))] = dict(sorted(kind.items()))

    def _changed(self) -> None:
        self.version += 1
        self._memo.clear()

    def memoized(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per version of the cache (every pass reads the same views); the
        result is shared, so callers must not change it."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def of_kind(self, kind: JobKind) -> list[JobRecord]:
        """The records of one kind of job, by tid (a new list; the records are shared)."""
        return list(self._kinds.get(kind.value, {}).values())

    def records(self) -> list[JobRecord]:
        """Every job of the study, by kind then tid."""
        return [r for kind in self._kinds.values() for r in kind.values()]

    def counts(self) -> dict[str, int]:
        return dict(self.memoized("counts", lambda: count_trials(list(self.docs.values()))))
