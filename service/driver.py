"""The study driver: keeps a study's queue filled with TPE suggestions, then retrains the best.

``StudyDriver.step(study_id)`` is one idempotent pass that reads everything it needs from
MongoDB, so the service can be killed and restarted at any point without duplicating trials:

1. queued -> running.
2. running: count the study's search trials. done + error (pruned and diverged are done)
   count toward ``n_trials``. While fewer than ``n_trials`` exist, top the queue up to
   ``parallelism`` new+running jobs: warm-start points first, then TPE (or random) suggestions
   from everything in the history. Stale jobs are requeued by the store's sweeper, not here.
3. When ``n_trials`` are finished: pick the best validation accuracy and enqueue one retrain
   job with ``retrain_epochs`` (only if none exists yet) -> retraining.
4. retraining: when the retrain job is done record its test accuracy -> completed; error ->
   failed.

``DriverManager`` runs one asyncio task per unfinished study (each calls ``step`` in a thread)
and a task that sweeps stale jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from hyperopt import Domain, rand, space_eval, tpe
from hyperopt.base import miscs_update_idxs_vals
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from search_spaces.schema import SpaceSpec, flatten_sample, point_to_vals, to_hyperopt
from trials.mongo_trials import MongoTrials
from trials.requeue import StaleJobSweeper
from trials.states import JobKind, JobState
from trials.store import JobStore

__all__ = ["StudyDriver", "DriverManager", "ACTIVE_STATES"]

log = logging.getLogger("sru_hpo.driver")
ACTIVE_STATES = ("queued", "running", "retraining")


def _never_called(_: Any) -> float:  # the workers evaluate; hyperopt only needs a Domain
    raise RuntimeError("trials are evaluated by workers, not in the service")


class StudyDriver:
    def __init__(self, store: JobStore, studies: Collection, lease_seconds: float = 10.0) -> None:
        self.store = store
        self.studies = studies
        self.lease_seconds = lease_seconds
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._domains: dict[str, tuple[SpaceSpec, Domain]] = {}

    def _lease(self, sid: str) -> bool:
        """Hold the study's driver lease (renewed every pass), so that two service processes on
        one database (a rolling restart, a second replica) never top up the same study twice.
        A dead holder's lease expires after ``lease_seconds`` by the service hosts' clocks."""
        now = time.time()
        doc = self.studies.find_one_and_update(
            # $and, not a top-level _id beside $or: nx-27017 0.8.1 drops the _id condition then
            {"$and": [{"_id": sid}, {"$or": [{"driver": None}, {"driver": self.id},
                                             {"driver_until": {"$lt": now}}]}]},
            {"$set": {"driver": self.id, "driver_until": now + self.lease_seconds}},
        )
        return doc is not None

    def _domain(self, study: dict[str, Any]) -> tuple[SpaceSpec, Domain]:
        sid = study["_id"]
        if sid not in self._domains:
            spec = SpaceSpec.model_validate(study["space"])
            self._domains[sid] = (spec, Domain(_never_called, to_hyperopt(spec)))
        return self._domains[sid]

    def _set(self, sid: str, **fields: Any) -> None:
        self.studies.update_one({"_id": sid}, {"$set": fields})

    def step(self, sid: str) -> bool:
        """One pass over study ``sid``. Returns True when the study needs no more passes."""
        study = self.studies.find_one({"_id": sid})
        if study is None or study["state"] not in ACTIVE_STATES:
            return True
        if not self._lease(sid):
            return False  # another service process drives it; take over if its lease lapses
        if study["state"] == "queued":
            self._set(sid, state="running", started=time.time())
            study["state"] = "running"
        done = self._search(study) if study["state"] == "running" else self._retrain(study)
        # A cancel or delete that landed while this pass was inserting jobs: the API cancels
        # what existed when it looked; cancel again here so nothing inserted since can run.
        now = self.studies.find_one({"_id": sid}, {"state": 1})
        if now is None:
            self.store.delete(sid)
            return True
        if now["state"] == "cancelled":
            self.store.cancel(sid)
            return True
        return done

    # -- search ---------------------------------------------------------------------------------
    def _search(self, study: dict[str, Any]) -> bool:
        sid, n_trials = study["_id"], study["n_trials"]
        counts = self.store.trial_counts(sid)
        created = sum(counts[s.label] for s in JobState)
        active = counts["new"] + counts["running"]
        finished = counts["done"] + counts["error"]
        room = min(study["parallelism"] - active, n_trials - created)
        if room > 0:
            self._suggest(study, created, room)
            return False
        if finished < n_trials:
            return False
        return self._start_retrain(study)

    def _job_params(self, study: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "model": study["model"], "dataset": study["dataset"],
                "seed": study["seed"]}

    def _suggest(self, study: dict[str, Any], created: int, room: int) -> None:
        sid = study["_id"]
        spec, domain = self._domain(study)
        trials = MongoTrials(self.store, sid)
        pruning = study["pruning"] if study["pruning"].get("rule", "off") != "off" else None
        warm = study.get("warm_start") or []
        for i in range(room):
            index = created + i
            (tid,) = trials.new_trial_ids(1)
            if index < len(warm):  # warm-start points go first, in the order given
                vals = point_to_vals(spec, warm[index])
                idxs = {k: [tid] for k in vals}
                misc = {"tid": tid, "cmd": domain.cmd, "workdir": domain.workdir}
                miscs_update_idxs_vals([misc], idxs, vals)
                docs = trials.new_trial_docs([tid], [None], [domain.new_result()], [misc])
            else:
                algo = tpe.suggest if study["algorithm"] == "tpe" else rand.suggest
                docs = algo([tid], domain, trials, seed=(study["seed"] * 100_003 + tid) % 2**31)
            for doc in docs:
                vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
                params = flatten_sample(spec, space_eval(domain.expr, vals))
                doc.update(self.store.job_fields(
                    kind=JobKind.TRIAL.value, params=self._job_params(study, params),
                    epochs=study["trial_epochs"], pruning=pruning))
            trials.insert_trial_docs(docs)
            trials.refresh()
        log.info("study %s: queued %d trial(s)", sid, room)

    def _start_retrain(self, study: dict[str, Any]) -> bool:
        sid = study["_id"]
        best = next(iter(self.store.best_trials(sid, k=1)), None)
        if best is None:
            self._set(sid, state="failed", finished=time.time(),
                      error="no search trial finished successfully; nothing to retrain")
            return True
        if self.store.count(sid, kind=JobKind.RETRAIN.value) == 0:
            self.store.enqueue(sid, kind=JobKind.RETRAIN.value, params=best["params"],
                               epochs=study["retrain_epochs"])
        self._set(sid, state="retraining", search_finished=time.time())
        log.info("study %s: search done, retraining trial %d", sid, best["tid"])
        return False

    # -- retrain --------------------------------------------------------------------------------
    def _retrain(self, study: dict[str, Any]) -> bool:
        sid = study["_id"]
        job = self.store.jobs.find_one({"exp_key": sid, "kind": JobKind.RETRAIN.value})
        if job is None:  # killed between the state change and the insert: do it again
            return self._start_retrain(study)
        if job["state"] == JobState.DONE:  # its result (test accuracy) stays on the job
            self._set(sid, state="completed", finished=time.time())
            log.info("study %s completed: test_acc %s", sid, job["result"].get("test_acc"))
            return True
        if job["state"] in (JobState.ERROR, JobState.CANCELLED):
            self._set(sid, state="failed", finished=time.time(),
                      error=f"retrain job {JobState(job['state']).label}: {job.get('error')}")
            return True
        return False


class DriverManager:
    """One asyncio task per active study, plus one stale-job sweeper; all state is in MongoDB."""

    def __init__(self, driver: StudyDriver, poll: float) -> None:
        self.driver = driver
        self.poll = poll
        self.tasks: dict[str, asyncio.Task] = {}
        self._sweeper = StaleJobSweeper(driver.store)
        self._sweep_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, sid: str) -> None:
        """Start driving ``sid``; callable from the event loop or from a worker thread."""
        assert self._loop is not None, "resume_all() first"
        self._loop.call_soon_threadsafe(self._start, sid)

    def _start(self, sid: str) -> None:
        task = self.tasks.get(sid)
        if task is None or task.done():
            self.tasks[sid] = asyncio.create_task(self._drive(sid), name=f"study-{sid}")

    async def resume_all(self) -> None:
        """Start a driver for every study the database says is unfinished."""
        self._loop = asyncio.get_running_loop()
        docs = await asyncio.to_thread(
            lambda: list(self.driver.studies.find({"state": {"$in": list(ACTIVE_STATES)}},
                                                  {"_id": 1})))
        for d in docs:
            self._start(d["_id"])
        self._sweep_task = asyncio.create_task(self._sweep(), name="sweeper")

    async def _drive(self, sid: str) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.driver.step, sid):
                    break
            except PyMongoError as exc:  # database away: keep trying, the state is safe there
                log.warning("study %s: database error %s; retrying", sid, exc)
            except Exception:  # a bug must not kill the other studies' drivers
                log.exception("study %s: driver step failed", sid)
            await asyncio.sleep(self.poll)
        self.tasks.pop(sid, None)

    async def _sweep(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self._sweeper.sweep)
            except PyMongoError as exc:
                log.warning("sweeper: %s", exc)
            await asyncio.sleep(self.driver.store.heartbeat_interval / 2)

    async def stop(self) -> None:
        tasks = [*self.tasks.values(), *([self._sweep_task] if self._sweep_task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()

    @property
    def active(self) -> int:
        return sum(1 for t in self.tasks.values() if not t.done())
