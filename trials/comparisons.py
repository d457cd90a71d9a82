"""The comparison repository: the ``comparisons`` collection.

A comparison holds its request (the variants, the shared budget, scheduler, seeds) and the id of
the study each variant runs as (``studies``: variant -> study id), chosen before any study is
created. The studies carry their own state; nothing of theirs is copied here. Creation writes
this document first and the studies after it, so a service killed in between finds the
comparison on its next start and creates the studies it has not ``made`` yet
(``service/studies/comparisons.py``).
Deletion is two-phase like a study's: ``mark_deleted`` hides it, its studies are deleted, then
``remove`` drops the document; ``tombstones()`` lists the ones a crash left.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from trials.clock import ServerClock
from trials.records import Comparison

__all__ = ["ComparisonRepo"]

_VISIBLE = {"deleted": False}


class ComparisonRepo:
    def __init__(self, db: Database, clock: ServerClock) -> None:
        self._col = db["comparisons"]
        self.clock = clock

    def ensure_indexes(self) -> None:
        self._col.create_index([("created", DESCENDING)])

    def create(self, cid: str, request: dict[str, Any], studies: dict[str, str]) -> Comparison:
        doc = {"_id": cid, "request": request, "studies": studies, "made": [],
               "created": self.clock.now(), "deleted": False}
        self._col.insert_one(doc)
        return Comparison.from_doc(doc)

    def get(self, cid: str) -> Comparison | None:
        doc = self._col.find_one({"_id": cid})
        return None if doc is None or doc.get("deleted") else Comparison.from_doc(doc)

    def page(self, offset: int, limit: int) -> tuple[int, list[Comparison]]:
        total = self._col.count_documents(_VISIBLE)
        docs = self._col.find(_VISIBLE).sort([("created", DESCENDING), ("_id", ASCENDING)]) \
            .skip(offset).limit(limit)
        return total, [Comparison.from_doc(d) for d in docs]

    def mark_made(self, cid: str, sid: str) -> None:
        """``sid`` was created: never create it again (a study deleted on its own stays gone)."""
        self._col.update_one({"_id": cid}, {"$addToSet": {"made": sid}})

    def unfinished(self) -> list[Comparison]:
        """Comparisons with a study not made yet (a service killed while creating them)."""
        return [Comparison.from_doc(d) for d in self._col.find(_VISIBLE)
                if len(d.get("made") or []) < len(d["studies"])]

    def mark_deleted(self, cid: str) -> bool:
        res = self._col.update_one({"_id": cid, **_VISIBLE}, {"$set": {"deleted": True}})
        return res.matched_count == 1

    def tombstones(self) -> list[Comparison]:
        return [Comparison.from_doc(d) for d in self._col.find({"deleted": True})]

    def remove(self, cid: str) -> None:
        self._col.delete_one({"_id": cid})
