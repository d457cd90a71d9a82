"""The worker process: one flat loop — sweep stale jobs, reserve, train with a heartbeat, report.

``sru-hpo worker [--device cuda:0|cpu|auto] [--max-jobs N] [--burst] [--study ID]``

- One worker uses one device. Datasets are loaded once per process and reused between jobs.
- Every epoch's point goes to the ``curves`` collection as it is produced. Every
  ``SRU_HPO_SNAPSHOT_SECONDS`` (and when stopped early) the whole training state is saved to
  GridFS, so a job requeued after its worker died or was stopped resumes from there.
- After every epoch the worker checks whether its job was cancelled, lost (requeued after a
  stall), or should be pruned, and stops training if so.
- Signals: the first SIGTERM/SIGINT lets the current epoch finish, puts the job back to new
  and exits; a second exits at once (the job's heartbeat then expires and it is requeued).
- A training exception marks that job error with the traceback summary; the loop goes on.
  Losing the database makes the worker back off (bounded by ``connect_timeout``), not spin.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from pymongo.errors import PyMongoError

from trials.connection import DatabaseUnavailable, retrying
from trials.pruning import make_pruner
from trials.requeue import StaleJobSweeper
from trials.states import JobKind, JobState, Outcome
from trials.store import Job, JobStore, make_owner
from workers.gpu import claim_gpu, refresh_lease, release_lease
from workers.train import pick_device, train

__all__ = ["Worker", "Heartbeat"]

log = logging.getLogger("sru_hpo.worker")


class Heartbeat:
    """Context manager: a daemon thread that bumps the job's heartbeat every ``interval`` s.
    ``lost`` turns True when the store says the job is no longer ours."""

    def __init__(self, store: JobStore, job: Job, interval: float,
                 on_beat: Callable[[], None] | None = None) -> None:
        self.store, self.job, self.interval, self.on_beat = store, job, interval, on_beat
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.tid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.store.heartbeat(self.job):
                    self.lost = True
                    return
                if self.on_beat is not None:
                    self.on_beat()
            except PyMongoError as exc:  # database briefly away: try again next beat
                log.warning("heartbeat failed: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Worker:
    def __init__(
        self,
        store: JobStore,
        *,
        device: str = "auto",
        max_jobs: int | None = None,
        burst: bool = False,
        study: str | None = None,
        poll: float = 0.5,
        db_timeout: float = 30.0,
        db_url: str = "",
        snapshot_every: float = 60.0,
    ) -> None:
        self.store = store
        self.leases = store.db["gpu_leases"]
        if device == "auto" and torch.cuda.device_count() > 1:
            self.owner = make_owner("gpu")
            self.device = claim_gpu(self.leases, self.owner, 3 * store.heartbeat_interval)
        else:
            self.device = pick_device(device)
            self.owner = make_owner(str(self.device))
        self.max_jobs, self.burst, self.study, self.poll = max_jobs, burst, study, poll
        self.db_timeout, self.db_url = db_timeout, db_url
        self.snapshot_every = snapshot_every
        self.sweeper = StaleJobSweeper(store)
        self.stop_requested = False
        self.jobs_done = 0
        self._last_idle_beat = 0.0  # monotonic time of the last sweep/touch while idle

    # -- signals ------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            log.warning("second signal: exiting now")
            os._exit(128 + signum)
        log.info("signal %d: finishing the current epoch, then releasing the job", signum)
        self.stop_requested = True

    def _db(self, fn, what: str):  # noqa: ANN001, ANN202 - thin wrapper
        return retrying(fn, timeout=self.db_timeout, what=what, url=self.db_url)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped (or out of jobs with burst, or max_jobs done). Returns jobs done."""
        self._db(lambda: self.store.register_worker(self.owner, str(self.device)), "register")
        log.info("worker %s ready", self.owner)
        try:
            while not self.stop_requested:
                if self.max_jobs is not None and self.jobs_done >= self.max_jobs:
                    break
                job = self._db(lambda: self.store.reserve(self.owner, exp_key=self.study), "reserve")
                if job is None:
                    if self.burst:
                        break
                    self._idle_beat()
                    time.sleep(self.poll)
                    continue
                self.run_job(job)
        except DatabaseUnavailable:
            log.exception("database lost for good")
            raise
        finally:
            try:
                self.store.unregister_worker(self.owner)
                release_lease(self.leases, self.owner)
            except PyMongoError:
                pass
        return self.jobs_done

    def _idle_beat(self) -> None:
        """While idle: sweep for stale jobs, stay listed as live, keep the GPU lease. Twice per
        heartbeat interval is enough for all three (staleness needs 2 silent intervals), so the
        poll loop does not write to the database on every poll."""
        now = time.monotonic()
        if now - self._last_idle_beat < self.store.heartbeat_interval / 2:
            return
        self._last_idle_beat = now
        self._db(lambda: self.sweeper.sweep(), "sweep")
        self._db(lambda: self.store.touch_worker(self.owner), "touch")
        self._db(lambda: refresh_lease(self.leases, self.owner), "lease")

    def run_job(self, job: Job) -> None:
        log.info("job %s/%d (%s, %d epochs) reserved", job.exp_key, job.tid, job.kind, job.epochs)
        self._db(lambda: self.store.touch_worker(self.owner, job), "touch")
        with tempfile.TemporaryDirectory(prefix="sru-hpo-ckpt-") as tmp:
            # the retrain's best weights go to a file (train's checkpoint_path), then to GridFS
            ckpt = Path(tmp) / "best.pt" if job.kind == JobKind.RETRAIN else None
            self._train_and_report(job, ckpt)
        self.jobs_done += 1
        self._db(lambda: self.store.touch_worker(self.owner, None, done=True), "touch")

    def _train_and_report(self, job: Job, ckpt: Path | None) -> None:
        pruner = make_pruner(job.pruning) if job.pruning else None
        resume = self._db(lambda: self.store.load_snapshot(job), "snapshot")
        # The pruner needs the whole curve: a resumed run starts from the points already stored
        # (those past its snapshot are dropped as the run re-sends their epochs).
        curve = self._db(lambda: self.store.curve(job.exp_key, job.tid), "curve") if resume else []
        reason: dict[str, str] = {}

        def on_epoch(point: dict[str, Any]) -> None:
            curve[:] = [p for p in curve if p["epoch"] < point["epoch"]] + [point]
            self._db(lambda: self.store.add_curve_point(job, point), "curve")

        def should_stop() -> bool:
            if self.stop_requested:
                reason["why"] = "signal"
                return True
            if hb.lost:
                reason["why"] = "lost"
                return True
            req = self._db(lambda: self.store.stop_request(job), "stop_request")
            if req:
                reason["why"] = req
                return True
            if pruner is not None:
                epoch = curve[-1]["epoch"]
                others = self._finished_curves(job, epoch)
                if pruner.should_prune(epoch, curve, others):
                    reason["why"] = "pruned"
                    return True
            return False

        def beat() -> None:  # the worker stays listed as live and keeps its GPU lease
            self.store.touch_worker(self.owner, job)
            refresh_lease(self.leases, self.owner)

        with Heartbeat(self.store, job, self.store.heartbeat_interval, on_beat=beat) as hb:
            try:
                result = train(
                    job.params, epochs=job.epochs, device=self.device, checkpoint_path=ckpt,
                    on_epoch=on_epoch, should_stop=should_stop,
                    evaluate_test=job.kind == JobKind.RETRAIN, resume=resume,
                    on_snapshot=lambda data: self._db(
                        lambda: self.store.save_snapshot(job, data), "snapshot"),
                    snapshot_every=self.snapshot_every,
                )
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad trial must not kill the worker
                summary = "".join(traceback.format_exception_only(exc)).strip()
                tb = traceback.extract_tb(exc.__traceback__)[-3:]
                where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in tb)
                log.error("job %s/%d failed: %s", job.exp_key, job.tid, summary)
                self._db(lambda: self.store.fail(job, f"{summary} (at {where})"), "fail")
                self._db(lambda: self.store.delete_snapshot(job), "snapshot")
                return
        payload = {k: v for k, v in result.to_dict().items() if k != "curve"}
        payload["device"] = str(self.device)
        why = reason.get("why")
        if why != "lost":  # points a dead earlier owner wrote past where this run ended
            self._db(lambda: self.store.trim_curve(job, result.epochs_run), "curve")
        if why not in ("signal", "lost"):  # finished for good: the snapshot is not needed
            self._db(lambda: self.store.delete_snapshot(job), "snapshot")
        if why == "signal":
            self._db(lambda: self.store.release(job), "release")
            log.info("job %s/%d released back to the queue", job.exp_key, job.tid)
        elif why == "lost":
            log.warning("job %s/%d is no longer ours; dropping its result", job.exp_key, job.tid)
        elif why == "cancel":
            self._db(lambda: self.store.mark_cancelled(job, payload), "cancel")
        else:
            # "ok" and "diverged" are outcomes as they are; "stopped" here can only be the pruner
            outcome = Outcome.PRUNED if why == "pruned" else Outcome(result.status)
            if ckpt is not None and ckpt.exists():
                data = ckpt.read_bytes()
                self._db(lambda: self.store.save_checkpoint(job.exp_key, data), "checkpoint")
                payload["checkpoint_bytes"] = len(data)
            self._db(lambda: self.store.finish(job, payload, outcome.value), "finish")
            log.info("job %s/%d %s: best val_acc %.4f", job.exp_key, job.tid,
                     outcome, result.best_val_acc)

    def _finished_curves(self, job: Job, epoch: int) -> list[list[dict[str, Any]]]:
        """Curves up to ``epoch`` of the study's trials that ran their whole budget."""
        finished = [d["tid"] for d in self.store.jobs.find(
            {"exp_key": job.exp_key, "kind": JobKind.TRIAL.value, "state": int(JobState.DONE),
             "outcome": Outcome.OK.value}, {"tid": 1})]
        if not finished:
            return []
        return list(self.store.study_curves(job.exp_key, finished, up_to_epoch=epoch).values())
