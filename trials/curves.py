"""Learning curves: one document per trial, its points keyed by epoch, fenced by attempt.

A curve document (``_id`` = the job's ``_id``) is created with its job and carries the
``attempt`` of the reservation allowed to write it. A worker that reserves the job claims the
curve for its own attempt, carrying over the points its snapshot covers (``claim``); every point
it adds is an update conditional on that attempt (``add``). A worker that lost its job
(requeued after a stall, or its study deleted) therefore writes nothing: its update matches no
document, and a refused write leaves nothing behind. Each write is one update by ``_id``, so
its cost does not grow with the database.

``updated`` (server clock) lets readers fetch only the curves that changed since a cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database

from trials.clock import ServerClock
from trials.records import Curve, Point

__all__ = ["CurveStore", "points_of"]


def points_of(doc: Mapping[str, Any] | None, since_epoch: int = 0,
              up_to_epoch: int | None = None) -> list[Point]:
    """The points of a curve document, sorted by epoch, optionally cut to a window."""
    return Curve(doc).points(since_epoch, up_to_epoch) if doc else []


class CurveStore:
    def __init__(self, db: Database, clock: ServerClock) -> None:
        self._col = db["curves"]
        self.clock = clock

    def ensure_indexes(self) -> None:
        self._col.create_index([("exp_key", ASCENDING), ("updated", ASCENDING)])
        self._col.create_index([("attempt", ASCENDING), ("updated", ASCENDING)])  # orphans

    def create(self, jobs: Iterable[dict[str, Any]]) -> None:
        """Empty curves for newly inserted jobs (attempt 0: nobody may write yet)."""
        now = self.clock.now()
        docs = [{"_id": j["_id"], "exp_key": j["exp_key"], "tid": j["tid"], "kind": j["kind"],
                 "attempt": 0, "points": {}, "updated": now} for j in jobs]
        if docs:
            self._col.insert_many(docs)

    def claim(self, job_id: str, attempt: int, points: list[Point]) -> bool:
        """Make ``attempt`` the curve's only writer, keeping ``points`` (what its snapshot
        covers; points an earlier owner wrote past them are dropped). False when the curve is
        gone or a later attempt already holds it."""
        res = self._col.update_one(
            {"_id": job_id, "attempt": {"$lt": attempt}},
            {"$set": {"attempt": attempt, "updated": self.clock.now(),
                      "points": {str(int(p["epoch"])): p for p in points}}})
        return res.matched_count == 1

    def add(self, job_id: str, attempt: int, point: Point) -> bool:
        """Add (or replace) one epoch's point; False when ``attempt`` no longer holds the curve."""
        res = self._col.update_one(
            {"_id": job_id, "attempt": attempt},
            {"$set": {f"points.{int(point['epoch'])}": point, "updated": self.clock.now()}})
        return res.matched_count == 1

    # -- reads --------------------------------------------------------------------------------------
    def get(self, job_id: str) -> list[Point]:
        return points_of(self._col.find_one({"_id": job_id}))

    def of_ids(self, job_ids: list[str]) -> list[Curve]:
        return [Curve(d) for d in self._col.find({"_id": {"$in": job_ids}})] if job_ids else []

    def of_jobs(self, job_ids: list[str], up_to_epoch: int | None = None
                ) -> dict[str, list[Point]]:
        if not job_ids:
            return {}
        docs = self._col.find({"_id": {"$in": job_ids}})
        return {d["_id"]: points_of(d, up_to_epoch=up_to_epoch) for d in docs}

    def changed(self, sid: str, after: float, limit: int) -> list[Curve]:
        """Curves of a study updated after ``after`` (server seconds), oldest change first, at
        most ``limit``."""
        q = {"exp_key": sid, "updated": {"$gt": after}}
        docs = self._col.find(q).sort([("updated", ASCENDING), ("_id", ASCENDING)]).limit(limit)
        return [Curve(d) for d in docs]

    def unclaimed(self, older_than: float) -> list[str]:
        """Ids of curves nobody ever claimed (attempt 0), created before ``older_than``."""
        q = {"attempt": 0, "updated": {"$lt": older_than}}
        return [d["_id"] for d in self._col.find(q, {"_id": 1})]

    def delete(self, job_ids: list[str]) -> None:
        if job_ids:
            self._col.delete_many({"_id": {"$in": job_ids}})

    def purge(self, sid: str) -> None:
        self._col.delete_many({"exp_key": sid})
