"""The worker process: one flat loop — reserve a job, run it (workers/trial.py), repeat.

The worker holds the job (reservation, heartbeat, every database call); the training itself
runs in its trainer child (workers/trainer.py), started at the first job and reused, so a hung,
crashed or out-of-memory trial ends only its job, never the worker.

``sru-hpo worker [--device cuda:0|cpu|auto] [--slots-per-gpu N] [--max-jobs N] [--burst]
[--study ID] [--poll S]``

- One worker uses one device (or one slot of a shared GPU). Datasets are loaded once per trainer
  and reused between jobs; process-wide torch settings are made once, when the trainer starts.
  The worker itself imports torch only to find its GPU: a CPU worker never does.
- An empty queue is polled with backoff from 5 ms up to ``--poll``; while idle the worker sweeps
  for stale jobs, stays listed as live, keeps its GPU lease, and nudges the study drivers.
- Signals: the first SIGTERM/SIGINT lets the current epoch finish, puts the job back to new and
  exits; a second exits at once (the job's heartbeat then expires and it is requeued).
- Every database call goes through ``self.db``, the store with its calls retried
  (trials/retrying.py): a lost database makes the worker back off (bounded by
  ``connect_timeout``), not spin and not fail a good trial. The heartbeat thread alone uses the
  plain store.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
import uuid
from types import FrameType

from trials.connection import DatabaseUnavailable
from trials.registry import make_owner
from trials.requeue import StaleJobSweeper
from trials.retrying import RetryingStore
from trials.store import Store
from workers.scratch import sweep_scratch
from workers.trainer import Trainer
from workers.trial import TrialRun

__all__ = ["Worker"]

log = logging.getLogger("sru_hpo.worker")
MIN_POLL = 0.005


class Worker:
    def __init__(self, store: Store, *, device: str = "auto", max_jobs: int | None = None,
                 burst: bool = False, study: str | None = None, poll: float = 0.5,
                 db_timeout: float = 30.0, db_url: str = "", snapshot_every: float = 60.0,
                 slots_per_gpu: int = 1, stall_timeout: float = 300.0) -> None:
        self.store = store  # plain: the heartbeat thread's (it must not block in a retry)
        self.db = RetryingStore(store, timeout=db_timeout, url=db_url)  # everything else
        self.max_jobs, self.burst, self.study, self.poll = max_jobs, burst, study, poll
        self.snapshot_every = snapshot_every
        self.slot: int | None = None
        self.device, self.owner = "cpu", make_owner("cpu")
        if device != "cpu":
            self._take_device(device, slots_per_gpu)
        self.stall_timeout = stall_timeout
        self.trainer = Trainer(self.device)  # the child that trains (workers/trainer.py)
        self.sweeper = StaleJobSweeper(store.upkeep)
        self.stop_requested = False
        self.jobs_done = 0
        self._last_idle_beat = -float("inf")  # monotonic time of the last idle sweep/touch

    def _take_device(self, device: str, slots_per_gpu: int) -> None:
        """A GPU (and its slot) or the device asked for. Only here does the worker import torch:
        its trainer trains and imports torch itself, so a CPU worker spares the import (1.5 s of
        CPU, and the memory, per worker)."""
        import torch

        from workers.gpu import claim_device
        from workers.train import pick_device

        if device == "auto" and (torch.cuda.device_count() > 1 or slots_per_gpu > 1):
            self.owner = make_owner("gpu")
            store = self.store
            dev, self.slot = self.db.retry(lambda: claim_device(
                store.leases, self.owner, slots=slots_per_gpu,
                stale_after=3 * store.heartbeat_interval), "claim GPU")
        else:
            dev = pick_device(device)
            self.owner = make_owner(str(dev))
        self.device = str(dev)

    @property
    def label(self) -> str:
        return str(self.device) + (f" slot {self.slot}" if self.slot is not None else "")

    # -- signals ------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            log.warning("second signal: exiting now")
            os._exit(128 + signum)
        log.info("signal %d: finishing the current epoch, then releasing the job", signum)
        self.stop_requested = True

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped (or out of jobs with burst, or max_jobs done). Returns jobs done."""
        self.db.workers.register(self.owner, self.label)
        sweep_scratch()  # what killed workers left in the temporary directory
        log.info("worker %s ready on %s", self.owner, self.label)
        wait = MIN_POLL
        try:
            while not self.stop_requested:
                if self.max_jobs is not None and self.jobs_done >= self.max_jobs:
                    break
                job = self.reserve()
                if job is None:
                    if self.burst:
                        break
                    self.idle_beat(first=wait == MIN_POLL)
                    time.sleep(wait)
                    wait = min(wait * 2, self.poll)
                    continue
                wait = MIN_POLL
                TrialRun(self, job).execute()
                self.jobs_done += 1
                self.db.workers.touch(self.owner, None, done=True)
        except DatabaseUnavailable:
            log.exception("database lost for good")
            raise
        finally:
            self._leave()
        return self.jobs_done

    def reserve(self):  # noqa: ANN201 - Job | None
        """Reserve one job; a retry after a lost reply gets the same job back (same token)."""
        token, tries = uuid.uuid4().hex, itertools.count()
        return self.db.retry(lambda: self.store.work.reserve(
            self.owner, token=token, sid=self.study, retried=next(tries) > 0), "reserve")

    def idle_beat(self, first: bool) -> None:
        """While idle: nudge the study drivers once (a slot is free), and twice per heartbeat
        interval sweep for stale jobs, stay listed as live and keep the GPU lease (staleness
        needs 2 silent intervals, so this is often enough and the poll loop stays read-only)."""
        if first:
            self.db.studies.nudge()
        now = time.monotonic()
        if now - self._last_idle_beat < self.store.heartbeat_interval / 2:
            return
        self._last_idle_beat = now
        self.db.retry(self.sweeper.sweep, "sweep")
        self.db.workers.touch(self.owner)
        self.db.leases.refresh(self.owner)
        self.db.workers.remove_stale()

    def _leave(self) -> None:
        self.trainer.close()
        try:
            self.store.workers.unregister(self.owner)
            self.store.leases.release(self.owner)
        except Exception as exc:  # noqa: BLE001 - leaving anyway; the sweep removes it later
            log.warning("could not unregister: %s", exc)
