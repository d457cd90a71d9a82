"""Live workers (``workers`` collection) and GPU slot leases (``gpu_leases``), in server time.

A worker registers under its owner id (``host:pid:device:nonce`` — the nonce keeps two
containers with the same hostname apart), touches its document while it lives, and removes it
when it stops. Documents of workers that died without removing them are deleted by the sweep
(``remove_stale``). Liveness is judged by the database server's clock, never by comparing two
hosts' wall clocks.

A GPU slot lease is one document per (GPU UUID, slot): ``--slots-per-gpu N`` lets N workers share
one GPU, each holding one slot. A lease is free when released or when its holder has not
refreshed it for ``stale_after`` seconds.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from trials.clock import ServerClock

__all__ = ["WorkerRegistry", "WorkerRecord", "WorkingOn", "GpuLeases", "make_owner"]


class WorkingOn(TypedDict, total=False):
    """What a worker is doing, as its heartbeat says (workers/trial.py): the job and how far."""

    exp_key: str  # the study
    tid: int
    kind: str
    epoch: int  # the last epoch it reported
    steps: int  # training steps of this run so far
    idle_seconds: float  # since the last step
    stall_after: float  # the watchdog's limit (seconds without a step)


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A live worker as the registry lists it."""

    id: str  # its owner id: host:pid:device:nonce
    host: str
    pid: int
    device: str
    started: float  # server time
    last_seen: float
    job: WorkingOn | None = None  # None while it waits for work
    jobs_done: int = 0

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> WorkerRecord:
        return cls(id=str(doc["_id"]), host=str(doc["host"]), pid=int(doc["pid"]),
                   device=str(doc["device"]), started=float(doc["started"]),
                   last_seen=float(doc["last_seen"]), job=doc.get("job"),
                   jobs_done=int(doc.get("jobs_done") or 0))


def make_owner(device: str) -> str:
    """A worker's id: unique whatever the hostname (containers started from one image share it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{device}:{secrets.token_hex(3)}"


class WorkerRegistry:
    def __init__(self, db: Database, clock: ServerClock, heartbeat_interval: float) -> None:
        self._col = db["workers"]
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval

    def register(self, owner: str, device: str) -> None:
        host, pid = owner.split(":", 2)[:2]
        now = self.clock.now()
        self._col.replace_one({"_id": owner}, {
            "_id": owner, "host": host, "pid": int(pid), "device": device, "started": now,
            "last_seen": now, "job": None, "jobs_done": 0}, upsert=True)

    def touch(self, owner: str, job: WorkingOn | None = None, done: bool = False) -> None:
        update: dict[str, Any] = {"$set": {"last_seen": self.clock.now(), "job": job}}
        if done:
            update["$inc"] = {"jobs_done": 1}
        self._col.update_one({"_id": owner}, update)

    def unregister(self, owner: str) -> None:
        self._col.delete_one({"_id": owner})

    def live(self, within: float | None = None) -> list[WorkerRecord]:
        """Workers seen in the last ``within`` seconds (default 3 heartbeats)."""
        horizon = self.clock.now() - (within if within is not None else 3 * self.heartbeat_interval)
        return [WorkerRecord.from_doc(d) for d in self._col.find({"last_seen": {"$gte": horizon}})]

    def remove_all(self) -> int:
        """Forget every worker (a launcher's start on its own embedded database)."""
        return self._col.delete_many({}).deleted_count

    def remove_stale(self, older_than: float | None = None) -> int:
        """Delete documents of workers not seen for ``older_than`` s (default 10 heartbeats)."""
        age = older_than if older_than is not None else 10 * self.heartbeat_interval
        return self._col.delete_many({"last_seen": {"$lt": self.clock.now() - age}}).deleted_count


class GpuLeases:
    def __init__(self, db: Database, clock: ServerClock) -> None:
        self._col = db["gpu_leases"]
        self.clock = clock

    def claim(self, gpus: list[str], slots: int, owner: str, stale_after: float
              ) -> tuple[int, int] | None:
        """Claim a free (GPU, slot): slot 0 of every GPU first, so workers spread over GPUs
        before they share one. Returns (GPU index, slot), or None when all are held."""
        for slot in range(slots):
            for index, uuid in enumerate(gpus):
                key = f"{uuid}#{slot}"
                try:  # create once; no upsert (nx-27017 and MongoDB differ on a missed one)
                    self._col.insert_one({"_id": key, "owner": None, "last_seen": 0.0})
                except DuplicateKeyError:
                    pass
                now = self.clock.now()
                # $and, not a top-level _id beside $or: nx-27017 0.8.1 drops the _id condition
                # {"owner": None} inside $or misses an explicit null on nx-27017 0.8.1: $in
                free = {"$and": [{"_id": key}, {"$or": [
                    {"owner": {"$in": [None, owner]}}, {"last_seen": {"$lt": now - stale_after}}]}]}
                doc = self._col.find_one_and_update(
                    free, {"$set": {"owner": owner, "last_seen": now, "index": index,
                                    "slot": slot}},
                    return_document=ReturnDocument.AFTER)
                if doc is not None and doc["owner"] == owner:
                    return index, slot
        return None

    def refresh(self, owner: str) -> None:
        self._col.update_many({"owner": owner}, {"$set": {"last_seen": self.clock.now()}})

    def release(self, owner: str) -> None:
        self._col.update_many({"owner": owner}, {"$set": {"owner": None}})

    def release_all(self) -> None:
        self._col.update_many({}, {"$set": {"owner": None}})

    def holders(self) -> dict[str, str | None]:
        return {d["_id"]: d.get("owner") for d in self._col.find({}, {"owner": 1})}
