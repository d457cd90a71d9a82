"""The storage interface the orchestrator is written against, as typing Protocols: what a study
driver (service/orchestrator/driver.py), its search (search.py), its cache (trials/cache.py)
and TPE's view (trials/mongo_trials.py) may call. Two implementations satisfy it:

- ``trials.store.Store``, over MongoDB (the service);
- ``trials.memory.MemoryStore``, over dictionaries on a clock the caller moves (the replay
  benchmark's simulator, and unit tests that need no server).

mypy checks both against it (``trials/memory.py`` ends with the check for the twin; the
service passes a ``Store`` wherever a ``DriverStore`` is asked for). One scenario runs against
both and must leave the same documents (``tests/trials/test_memory.py``): the contract test.

Ownership rules (who writes what) are in trials/store.py's table; every method here has the
same meaning in both implementations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from trials.records import JobRecord, Study
from trials.states import StudyState
from trials.summary_doc import Summary

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from trials.jobs import JobSpec

__all__ = ["Clock", "StudyOps", "DriverJobOps", "JobReadOps", "DriverStore"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on the store's clock (the server's, or the simulation's)."""
        ...


class StudyOps(Protocol):
    """A study (a typed record): read, compare-and-set transitions, the driver lease, the summary."""

    def get(self, sid: str) -> Study | None: ...

    def transition(self, sid: str, frm: Iterable[StudyState], to: StudyState,
                   **fields: Any) -> bool: ...

    def end(self, sid: str, frm: Iterable[StudyState], to: StudyState, **fields: Any) -> bool: ...

    def mark_settled(self, sid: str) -> None: ...

    def lease(self, sid: str, holder: str, seconds: float) -> bool:
        """Take or renew the study's driver lease; False while another holder has it."""
        ...

    def write_summary(self, sid: str, holder: str, summary: Summary,
                      **fields: Any) -> bool:
        """Publish the summary, only while ``holder`` holds the lease."""
        ...

    def nudge(self) -> None: ...

    def wake_seq(self) -> int: ...


class DriverJobOps(Protocol):
    """The driver's job operations: create, promote and stop paused trials, cancel."""

    def job_fields(self, **spec: Unpack[JobSpec]) -> dict[str, Any]: ...

    def next_tids(self, sid: str, n: int) -> list[int]: ...

    def new_job_doc(self, sid: str, tid: int, **fields: Unpack[JobSpec]) -> dict[str, Any]: ...

    def insert(self, docs: list[dict[str, Any]]) -> None: ...

    def enqueue(self, sid: str, **fields: Unpack[JobSpec]) -> int: ...

    def promote(self, sid: str, tid: int, limit: int, priority: int = ...) -> bool: ...

    def stop_at_rung(self, sid: str, tid: int) -> bool: ...

    def cancel_study(self, sid: str) -> tuple[int, int]: ...


class JobReadOps(Protocol):
    """The reads a driver's pass and a trial's pruner make."""

    def changed(self, sid: str, since: float | None) -> list[dict[str, Any]]: ...

    def get(self, sid: str, tid: int) -> JobRecord | None: ...

    def by_id(self, jid: str) -> JobRecord | None: ...

    def full_budget_tids(self, sid: str) -> list[str]: ...


class DriverStore(Protocol):
    """What a study driver holds."""

    @property
    def clock(self) -> Clock: ...

    @property
    def studies(self) -> StudyOps: ...

    @property
    def jobs(self) -> DriverJobOps: ...

    @property
    def job_reads(self) -> JobReadOps: ...

    def purge_study(self, sid: str) -> None: ...
