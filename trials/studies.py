"""The study repository: the ``studies`` collection and every write to it.

State changes are compare-and-set on the current state (``transition``), never read-then-write,
so a study that has just completed can not become cancelled. Only the holder of a study's driver
lease writes its ``summary`` (counts, best trial, epochs spent): a derived view of the study's
jobs kept for O(1) reads, rebuilt from the jobs by the driver's cache after any restart.

Deletion is two-phase so that a crash in the middle leaves nothing behind: ``mark_deleted`` hides
the study from every read at once, the caller purges its jobs, curves and files, then ``remove``
drops the document. A service that starts finds leftover tombstones with ``tombstones()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from trials.clock import ServerClock
from trials.records import Study
from trials.states import StudyState
from trials.summary_doc import Summary

__all__ = ["StudyRepo", "new_study_doc"]

# Every study document carries ``deleted: False`` from its creation: in an update filter,
# nx-27017 0.8.1 matches ``{"deleted": {"$ne": True}}`` against a missing field to nothing.
_VISIBLE = {"deleted": False}


def new_study_doc(sid: str, fields: dict[str, Any], now: float) -> dict[str, Any]:
    """A study document as created: queued, no driver, no summary yet."""
    return {"_id": sid, **fields, "state": StudyState.QUEUED.value, "created": now,
            "started": None, "search_finished": None, "finished": None, "error": None,
            "summary": None, "driver": None, "driver_until": 0.0, "deleted": False,
            "settled": False}


class StudyRepo:
    def __init__(self, db: Database, clock: ServerClock) -> None:
        self._col = db["studies"]
        self._signals = db["signals"]
        self.clock = clock

    def ensure_indexes(self) -> None:
        self._col.create_index([("created", DESCENDING)])
        self._col.create_index([("state", ASCENDING), ("created", DESCENDING)])

    # -- create and read -------------------------------------------------------------------------
    def create(self, sid: str, fields: dict[str, Any]) -> Study:
        doc = new_study_doc(sid, fields, self.clock.now())
        self._col.insert_one(doc)
        return Study.from_doc(doc)

    def create_once(self, sid: str, fields: dict[str, Any]) -> bool:
        """Create ``sid`` unless a document with that id exists (a study, or its tombstone);
        True when this call created it. Two services finishing one comparison's creation at
        once create each study once."""
        try:
            self.create(sid, fields)
        except DuplicateKeyError:
            return False
        return True

    def get(self, sid: str) -> Study | None:
        doc = self._col.find_one({"_id": sid})
        return None if doc is None or doc.get("deleted") else Study.from_doc(doc)

    def page(self, state: StudyState | None, offset: int, limit: int) -> tuple[int, list[Study]]:
        """(total, newest first from ``offset``), sorted and cut by the database."""
        q: dict[str, Any] = dict(_VISIBLE)
        if state is not None:
            q["state"] = state.value
        total = self._col.count_documents(q)
        docs = self._col.find(q).sort([("created", DESCENDING), ("_id", ASCENDING)])
        return total, [Study.from_doc(d) for d in docs.skip(offset).limit(limit)]

    def count_by_state(self) -> dict[str, int]:
        out = dict.fromkeys([s.value for s in StudyState], 0)
        for d in self._col.find(_VISIBLE, {"state": 1}):
            out[d["state"]] = out.get(d["state"], 0) + 1
        return out

    def active_summaries(self) -> list[tuple[str, Summary]]:
        """(id, summary) of every active study (for /metrics)."""
        q = {**_VISIBLE, "state": {"$in": StudyState.actives()}}
        return [(d["_id"], cast(Summary, d.get("summary") or {}))
                for d in self._col.find(q, {"summary": 1})]

    def to_drive(self) -> list[str]:
        """Studies a service should drive: active ones, and ended ones whose jobs have not all
        settled yet (their summary still changes as running jobs stop)."""
        q = {"$and": [_VISIBLE, {"$or": [{"state": {"$in": StudyState.actives()}},
                                         {"settled": False}]}]}
        return [d["_id"] for d in self._col.find(q, {"_id": 1})]

    def tombstones(self) -> list[str]:
        return [d["_id"] for d in self._col.find({"deleted": True}, {"_id": 1})]

    # -- state changes -----------------------------------------------------------------------------
    def transition(self, sid: str, frm: Iterable[StudyState], to: StudyState,
                   **fields: Any) -> bool:
        """Compare-and-set: move ``sid`` from one of ``frm`` to ``to``. False if it was in
        another state (someone else moved it first) or is gone."""
        q = {"_id": sid, "state": {"$in": [s.value for s in frm]}, **_VISIBLE}
        res = self._col.update_one(q, {"$set": {"state": to.value, **fields}})
        return res.matched_count == 1

    def end(self, sid: str, frm: Iterable[StudyState], to: StudyState, **fields: Any) -> bool:
        """A terminal transition: stamps ``finished`` and marks the study unsettled until the
        driver has seen its last running job stop."""
        return self.transition(sid, frm, to, finished=self.clock.now(), settled=False, **fields)

    def cancel(self, sid: str) -> StudyState | None:
        """Cancel an active study. Returns the state it was in before; a terminal state is
        returned unchanged (nothing written). None when the study does not exist."""
        while True:
            study = self.get(sid)
            if study is None:
                return None
            state = study.state
            if not state.active:
                return state
            if self.end(sid, [state], StudyState.CANCELLED):
                return state

    def mark_settled(self, sid: str) -> None:
        self._col.update_one({"_id": sid}, {"$set": {"settled": True}})

    def mark_deleted(self, sid: str) -> bool:
        res = self._col.update_one({"_id": sid, **_VISIBLE}, {"$set": {"deleted": True}})
        return res.matched_count == 1

    def remove(self, sid: str) -> None:
        self._col.delete_one({"_id": sid})

    # -- the driver's lease and summary --------------------------------------------------------------
    def lease(self, sid: str, holder: str, seconds: float) -> bool:
        """Hold (or renew) the study's driver lease, judged by the database server's clock, so
        two service processes on one database never drive one study at once."""
        now = self.clock.now()
        doc = self._col.find_one_and_update(
            # $and, not a top-level _id beside $or: nx-27017 0.8.1 drops the _id condition then
            {"$and": [{"_id": sid}, _VISIBLE,
                      # {"driver": None} inside $or misses an explicit null on nx-27017 0.8.1
                      {"$or": [{"driver": {"$in": [None, holder]}},
                               {"driver_until": {"$lt": now}}]}]},
            {"$set": {"driver": holder, "driver_until": now + seconds}},
            projection={"_id": 1}, return_document=ReturnDocument.AFTER)
        return doc is not None

    def release_lease(self, sid: str, holder: str) -> None:
        self._col.update_one({"_id": sid, "driver": holder}, {"$set": {"driver": None}})

    def write_summary(self, sid: str, holder: str, summary: Summary, **fields: Any) -> bool:
        res = self._col.update_one({"_id": sid, "driver": holder, **_VISIBLE},
                                   {"$set": {"summary": summary, **fields}})
        return res.matched_count == 1

    # -- wake-ups: workers nudge, the drivers watch one document ------------------------------------
    def nudge(self) -> None:
        """Tell the study drivers something changed (a trial finished, a worker is idle)."""
        self._signals.update_one({"_id": "drivers"}, {"$inc": {"seq": 1}}, upsert=True)

    def wake_seq(self) -> int:
        doc = self._signals.find_one({"_id": "drivers"})
        return int(doc["seq"]) if doc else 0
