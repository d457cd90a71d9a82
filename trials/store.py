"""``Store``: the one door to the database. Nothing outside ``trials/`` imports pymongo or gridfs
(``tests/test_boundaries.py`` checks the import graph).

One ``Store`` bundles the named parts, each the only writer of its collections:

======================  =========================  ==============================================
part                    collections                 what it does
======================  =========================  ==============================================
``studies``             studies, signals           create, read, page, compare-and-set state
                                                   changes, the driver lease and summary, wake-ups
``jobs``                jobs, counters             the driver's: insert, promote, stop, cancel
``work``                jobs                       the worker protocol: reserve, heartbeat, finish,
                                                   pause, fail, retry, release, snapshots
``job_reads``           jobs                       changed since, pages, best-k, checkpoints
``upkeep``              jobs, counters             requeue stale jobs, release all, purge, orphans
``curves``              curves                     one curve per trial, written by its attempt only
``files``               snapshots.*, checkpoints.*  GridFS files, attached to jobs conditionally
``workers``/``leases``  workers, gpu_leases        live workers, GPU slot leases
``comparisons``         comparisons                 a comparison's request and its studies' ids
======================  =========================  ==============================================

``purge_study`` removes everything that names a study; ``collect_orphans`` removes files and
curves left by a process killed between two writes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pymongo.database import Database

from sru_hpo.settings import Settings
from trials.clock import ServerClock
from trials.comparisons import ComparisonRepo
from trials.connection import connect
from trials.curves import CurveStore
from trials.files import FileStore
from trials.job_protocol import WorkerJobs
from trials.job_reads import JobReads
from trials.job_upkeep import JobUpkeep
from trials.jobs import JobCollection, JobQueue, job_id
from trials.registry import GpuLeases, WorkerRegistry
from trials.studies import StudyRepo

__all__ = ["Store"]

J = TypeVar("J", bound=JobCollection)


class Store:
    def __init__(self, db: Database, *, heartbeat_interval: float = 10.0,
                 max_retries: int = 2) -> None:
        self.db = db
        self.clock = ServerClock(db)
        self.studies = StudyRepo(db, self.clock)
        self.comparisons = ComparisonRepo(db, self.clock)
        self.curves = CurveStore(db, self.clock)
        self.files = FileStore(db)
        def part(role: type[J]) -> J:
            return role(db, self.clock, self.curves, self.files,
                        heartbeat_interval=heartbeat_interval, max_retries=max_retries)

        self.jobs = part(JobQueue)  # the driver's: create, promote, stop, cancel
        self.work = part(WorkerJobs)  # the worker protocol
        self.job_reads = part(JobReads)  # queries and pages
        self.upkeep = part(JobUpkeep)  # requeue, release, purge, orphans
        self.workers = WorkerRegistry(db, self.clock, heartbeat_interval)
        self.leases = GpuLeases(db, self.clock)
        self.heartbeat_interval = heartbeat_interval

    @classmethod
    def connect(cls, url: str, db_name: str, *, timeout: float = 30.0,
                heartbeat_interval: float = 10.0, max_retries: int = 2,
                socket_timeout: float = 30.0) -> Store:
        return cls(connect(url, db_name, timeout=timeout, socket_timeout=socket_timeout),
                   heartbeat_interval=heartbeat_interval, max_retries=max_retries)

    @classmethod
    def for_service(cls, settings: Settings) -> Store:
        """The store of an API or orchestrator process, at ``settings.mongo_url``, indexed. A
        stalled database answers its reads with an error after 5 s instead of hanging them."""
        if not settings.mongo_url:
            raise ValueError("SRU_HPO_MONGO_URL: unset (`sru-hpo serve` and `up` start the "
                             "embedded database and set it)")
        store = cls.connect(settings.mongo_url, settings.db_name, timeout=settings.connect_timeout,
                            heartbeat_interval=settings.heartbeat_interval,
                            max_retries=settings.max_retries, socket_timeout=5.0)
        store.ensure_indexes()
        return store

    def ensure_indexes(self) -> None:
        """Create the indexes (idempotent; run by every process that starts)."""
        self.studies.ensure_indexes()
        self.comparisons.ensure_indexes()
        self.jobs.ensure_indexes()
        self.curves.ensure_indexes()

    def close(self) -> None:
        self.db.client.close()

    def release_orphans(self) -> int:
        """After a launcher that ran this (embedded) database was killed: its workers died with
        it (SIGKILL) holding jobs. Release those jobs (no retry spent), forget the workers and
        free their GPU leases. Only valid where no other live worker can use this database.
        Returns the jobs released."""
        released = self.upkeep.release_all_running()
        self.workers.remove_all()
        self.leases.release_all()
        return released

    def purge_study(self, sid: str) -> None:
        """Delete every job, curve, counter and file of a study (idempotent)."""
        self.upkeep.purge(sid)
        self.curves.purge(sid)
        self.files.purge(sid)

    def delete_study(self, sid: str) -> bool:
        """Hide the study at once, stop its jobs, purge everything, then drop its document.
        A crash part-way leaves a tombstone that the next service finishes."""
        if not self.studies.mark_deleted(sid):
            return False
        self.finish_deletion(sid)
        return True

    def finish_deletion(self, sid: str) -> None:
        """The rest of a deletion, from a tombstone: stop, purge, drop the document."""
        self.jobs.cancel_study(sid)
        self.purge_study(sid)
        self.studies.remove(sid)

    def collect_orphans(self, min_age: float = 600.0) -> int:
        """Files no job points to (a worker killed between writing and attaching one, or
        while writing it, or a study deleted meanwhile), and curves with no job (a driver
        killed between inserting a curve and its job), older than ``min_age`` seconds.
        Returns how many went."""
        now = self.clock.now()
        unclaimed = self.curves.unclaimed(older_than=now - min_age)
        jobless = sorted(set(unclaimed) - self.upkeep.existing(unclaimed))
        self.curves.delete(jobless)
        return len(jobless) + self._collect_files(now, min_age)

    def _collect_files(self, now: float, min_age: float) -> int:
        files = [f for f in self.files.all_files() if now - f[3] > min_age]
        ids = sorted({_owner(m) for _, _, m, _ in files})
        attached = self.upkeep.snapshot_ids(ids)
        gone = [(bucket, fid) for bucket, fid, meta, _ in files
                if fid not in attached.get(_owner(meta), ())]
        gone += self.files.unfinished(older_than=now - min_age)
        for bucket, fid in gone:
            self.files.delete(bucket, fid)
        return len(gone)


def _owner(meta: dict[str, Any]) -> str:
    """The id of the job a file's metadata names ("" when it names none: it matches no job)."""
    tid = meta.get("tid")
    return job_id(str(meta.get("exp_key")), int(tid)) if tid is not None else ""
