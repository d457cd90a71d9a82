"""Files in GridFS: snapshots of running trials (resume) and retrained checkpoints.

A file is written first and attached to its job afterwards with a conditional update
(trials/jobs.py), so a worker that lost its job never replaces the new owner's file: its own
file is deleted when the attach is refused. Every file records its study in ``metadata``, so a
deleted study's files are found and removed whatever was attached when. ``Store.collect_orphans``
removes files left by a process killed between writing and attaching (``all_files``), and the
chunks of one killed while writing (``unfinished``).
"""

from __future__ import annotations

from typing import Any

import gridfs
from bson import ObjectId
from pymongo.database import Database

__all__ = ["FileStore", "SNAPSHOTS", "CHECKPOINTS"]

SNAPSHOTS, CHECKPOINTS = "snapshots", "checkpoints"


class FileStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._fs = {b: gridfs.GridFS(db, collection=b) for b in (SNAPSHOTS, CHECKPOINTS)}

    def put(self, bucket: str, data: bytes, *, sid: str, tid: int, attempt: int) -> ObjectId:
        return self._fs[bucket].put(
            data, filename=f"{sid}:{tid}:{attempt}",
            metadata={"exp_key": sid, "tid": tid, "attempt": attempt})

    def get(self, bucket: str, file_id: Any) -> bytes | None:
        if file_id is None:
            return None
        try:
            return self._fs[bucket].get(file_id).read()
        except gridfs.errors.NoFile:
            return None

    def delete(self, bucket: str, file_id: Any) -> None:
        if file_id is not None:
            self._fs[bucket].delete(file_id)

    def of_study(self, sid: str) -> list[tuple[str, Any]]:
        return [(b, f._id) for b, fs in self._fs.items()
                for f in fs.find({"metadata.exp_key": sid})]

    def all_files(self) -> list[tuple[str, Any, dict[str, Any], float]]:
        """(bucket, id, metadata, upload time as UNIX seconds) of every file."""
        return [(b, f._id, f.metadata or {}, _seconds(f.upload_date))
                for b, fs in self._fs.items() for f in fs.find()]

    def unfinished(self, older_than: float) -> list[tuple[str, Any]]:
        """(bucket, id) of writes killed before their end, begun before ``older_than`` (UNIX
        seconds, read from the id's ObjectId). GridFS writes the chunks first and the file
        document last, so MongoDB keeps such chunks with no file; nx-27017 instead makes a file
        document with no metadata, which ``all_files`` lists."""
        found = []
        for bucket in self._fs:
            old = [fid for fid in self.db[f"{bucket}.chunks"].distinct("files_id")
                   if isinstance(fid, ObjectId) and fid.generation_time.timestamp() < older_than]
            if not old:
                continue
            files = self.db[f"{bucket}.files"].find({"_id": {"$in": old}}, {"_id": 1})
            whole = {d["_id"] for d in files}
            found += [(bucket, fid) for fid in old if fid not in whole]
        return found

    def count(self, bucket: str) -> int:
        return sum(1 for _ in self._fs[bucket].find())

    def purge(self, sid: str) -> int:
        found = self.of_study(sid)
        for bucket, fid in found:
            self.delete(bucket, fid)
        return len(found)


def _seconds(value: Any) -> float:
    """nx-27017 returns GridFS upload dates as ISO strings, MongoDB as datetimes."""
    import datetime as dt

    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return 0.0
