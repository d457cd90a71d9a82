"""One reserved job from start to report: where a trial is handled.

``TrialRun(worker, job).execute()``:

1. **resume**: load the job's snapshot (if a requeued or released job has one) and claim the
   curve for this reservation, keeping the points the snapshot covers;
2. **train** in the worker's trainer child (workers/trainer.py; workers/train.py is where an
   epoch is handled) with a heartbeat thread here; after every epoch write the point, and stop
   when the worker is signalled, the job is lost or cancelled, or the pruner says so; every
   ``SRU_HPO_SNAPSHOT_SECONDS`` save the training state. The trainer's watchdog ends a run that
   makes no progress (``stalled``) or trains past the study's ``trial_timeout``;
3. **report**: finish (ok / pruned / diverged / timeout, with the retrain's checkpoint), cancel,
   release back to the queue, drop everything when the job is no longer ours; an infrastructure
   failure (stalled, crashed trainer, out of memory, CUDA fault) is requeued with a retry spent,
   an exception the model raised for these parameters ends the trial ``infeasible``.

Every write is conditional on the job still being this reservation's (trials/jobs.py), so a
worker that stalled and lost its job writes nothing when it wakes up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from trials.jobs import Job
from trials.pruning import make_pruner
from trials.records import Point, RunReport
from trials.registry import WorkingOn
from trials.scheduling import rung_scores
from trials.states import JobKind, Outcome
from workers.scratch import Scratch
from workers.trainer import Ending, TestRequest, TrainRequest, Watchdog

if TYPE_CHECKING:
    from trials.retrying import RetryingStore
    from workers.worker import Worker

__all__ = ["TrialRun", "Heartbeat"]

log = logging.getLogger("sru_hpo.worker")


class Heartbeat:
    """Context manager: a daemon thread that bumps the job's heartbeat every ``interval`` s.
    ``lost`` turns True when the store says the job is no longer ours; ``failed`` holds any
    other exception the thread met (it is logged, and the trial then ends cleanly)."""

    def __init__(self, beat: Callable[[], bool], interval: float, name: str,
                 on_beat: Callable[[], None] | None = None) -> None:
        self.beat, self.interval, self.on_beat = beat, interval, on_beat
        self.lost = False
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        from trials.connection import NETWORK_ERRORS

        # a fixed rate: the time the beat's own writes take does not widen the gap between beats
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.interval, time.monotonic())
            try:
                if not self.beat():
                    self.lost = True
                    return
                if self.on_beat is not None:
                    self.on_beat()
            except NETWORK_ERRORS as exc:  # database briefly away: try again next beat
                log.warning("heartbeat failed: %s", exc)
            except Exception as exc:  # noqa: BLE001 - never die silently
                log.exception("heartbeat thread failed; ending the trial")
                self.failed = exc
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrialRun:
    def __init__(self, worker: Worker, job: Job) -> None:
        self.worker, self.job = worker, job
        self.store = worker.store
        self.pruner = make_pruner(job.pruning) if job.pruning else None
        self.curve: list[Point] = []  # this trial's points so far (for the pruner)
        self.why: str | None = None  # why training stopped early: signal|lost|cancel|pruned|...
        self.hb: Heartbeat | None = None
        self.watchdog: Watchdog | None = None  # the trainer's progress, while a run is on

    @property
    def db(self) -> RetryingStore:
        """The store with every call retried (trials/retrying.py); ``self.store`` is the plain
        one, for the heartbeat thread."""
        return self.worker.db

    # -- 1. resume ----------------------------------------------------------------------------------
    def _resume(self) -> tuple[bool, bytes | None]:
        """(claimed, the snapshot to resume from or None); not claimed: the job is lost."""
        job = self.job
        snapshot = self.db.work.load_snapshot(job)
        if snapshot is not None:
            self.curve = [p for p in self.db.curves.get(job.id)
                          if p["epoch"] <= job.snapshot_epoch]
        carried = list(self.curve)
        claimed = self.db.curves.claim(job.id, job.attempt, carried)
        return claimed, snapshot

    # -- 2. train: the callbacks train() calls -------------------------------------------------------
    def on_epoch(self, point: Point) -> None:
        point = {**point, "at": time.time()}  # when it was measured (this host's clock)
        self.curve = [p for p in self.curve if p["epoch"] < point["epoch"]] + [point]
        job = self.job
        if not self.db.curves.add(job.id, job.attempt, point):
            self.why = "lost"

    def should_stop(self) -> bool:
        if self.why:  # set by a refused write
            return True
        assert self.hb is not None
        if self.worker.stop_requested:
            self.why = "signal"
        elif self.hb.lost:
            self.why = "lost"
        elif self.hb.failed is not None:
            self.why = "heartbeat"
        else:
            self.why = self.db.work.stop_request(self.job)
            if not self.why and self.job.pauses and self.curve[-1]["epoch"] >= (self.job.limit or 0):
                self.why = "rung"  # ASHA: report at the rung, snapshot, wait to be promoted
            elif not self.why and self.pruner is not None and self._prune():
                self.why = "pruned"
        return self.why is not None

    def _prune(self) -> bool:
        assert self.pruner is not None
        epoch, sid = self.curve[-1]["epoch"], self.job.sid
        peers = self.db.job_reads.full_budget_tids(sid)
        others = self.db.curves.of_jobs(peers, up_to_epoch=epoch)
        return self.pruner.should_prune(epoch, self.curve, list(others.values()))

    def on_snapshot(self, data: bytes, epoch: int) -> None:
        if not self.db.work.save_snapshot(self.job, data, epoch):
            self.why = "lost"

    def _beat(self) -> None:  # in the heartbeat thread: stay listed as live, keep the GPU lease
        w = self.worker
        epoch = self.curve[-1]["epoch"] if self.curve else 0
        wd = self.watchdog
        doing: WorkingOn = {"exp_key": self.job.sid, "tid": self.job.tid, "kind": self.job.kind,
                            "epoch": epoch}
        if wd is not None:
            doing.update({"steps": wd.steps, "idle_seconds": round(wd.idle, 1),
                          "stall_after": round(wd.stall_after)})
        self.store.workers.touch(w.owner, doing)
        self.store.leases.refresh(w.owner)

    # -- the whole run ------------------------------------------------------------------------------
    def execute(self) -> None:
        """The heartbeat runs from the moment the job is reserved: loading the snapshot, the
        dataset and the model can take longer than a heartbeat interval on a loaded machine."""
        job = self.job
        log.info("job %s (%s, %d epochs, attempt %d) reserved", job.id, job.kind, job.epochs,
                 job.attempt)
        with Heartbeat(lambda: self.store.work.heartbeat(job), self.store.heartbeat_interval,
                       f"heartbeat-{job.tid}", on_beat=self._beat) as self.hb:
            if job.kind == JobKind.TEST:
                self._test()
            else:
                self._train()

    def _train(self) -> None:
        job = self.job
        claimed, resume = self._resume()
        if not claimed:
            log.warning("job %s was taken over before it started; dropping it", job.id)
            return
        self._beat()
        # a retrain's best weights go to a file (train's checkpoint_path), then to GridFS; a
        # trial keeps none and makes no folder
        with Scratch() if job.kind == JobKind.RETRAIN else nullcontext() as folder:
            ckpt = folder / "best.pt" if folder is not None else None
            request: TrainRequest = {
                "params": job.params, "epochs": job.epochs, "resume": resume,
                "checkpoint": str(ckpt) if ckpt is not None else None,
                "snapshot_every": self.worker.snapshot_every}
            ending = self._in_trainer(("train", request))
            if not self._failed(ending):
                self._report(ending.result, ckpt)

    def _in_trainer(self, request: tuple) -> Ending:
        """Run ``request`` in the worker's trainer child under a fresh watchdog (a trial's
        timeout counts the seconds it trained in earlier segments too)."""
        timeout = self.job.timeout if self.job.kind == JobKind.TRIAL else None
        self.watchdog = Watchdog(self.worker.stall_timeout, timeout, trained=self._trained_seconds())
        return self.worker.trainer.run(request, self._on_message, self.watchdog)

    def _on_message(self, msg: tuple) -> bool | None:
        """The trainer's epoch, snapshot and ask messages (workers/trainer.py)."""
        if msg[0] == "epoch":
            self.on_epoch(msg[1])
        elif msg[0] == "snapshot":
            self.on_snapshot(msg[1], msg[2])
        elif msg[0] == "ask":
            return self.should_stop()
        return None

    def _trained_seconds(self) -> float:
        """The training seconds of this job's curve so far (every segment and attempt)."""
        return sum(float(p.get("seconds", 0.0)) for p in self.curve)

    # -- 3. report ----------------------------------------------------------------------------------
    def _failed(self, ending: Ending) -> bool:
        """Report a run the trainer did not finish (False when it did): a configuration error
        ends the job infeasible, anything else goes through ``_after_failure``."""
        if ending.how == "done":
            return False
        if ending.how == "raised" and ending.failure is None:
            self._infeasible(ending)
        else:
            self._after_failure(ending)
        return True

    def _after_failure(self, ending: Ending) -> None:
        """The trainer failed through no fault of the parameters (or a timeout ended a trial):
        an infrastructure failure is retried (trials/states.py), a timeout is a result."""
        job = self.job
        if ending.how == "timeout":
            self._finish(self._reached(), Outcome.TIMEOUT, None)
            return
        kind = {"stalled": "stalled", "died": "crashed"}.get(ending.how) or ending.failure
        reason = ending.reason + (f" (at {ending.where})" if ending.where else "")
        outcome = self.db.work.retry(job, str(kind), reason)
        log.error("job %s: %s: %s; %s", job.id, kind, reason, outcome or "no longer ours")
        if outcome is not None:
            self.db.studies.nudge()

    def _infeasible(self, ending: Ending) -> None:
        """The model raised for these parameters: a trial ends infeasible (never retried; TPE
        sees the worst loss); a retrain or test job ends as error."""
        job = self.job
        log.error("job %s failed: %s (at %s)", job.id, ending.reason, ending.where)
        if job.kind == JobKind.TRIAL:
            self.db.work.infeasible(job, self._reached(), ending.reason,
                                                       ending.where)
            self.db.studies.nudge()
        else:
            self.db.work.fail(job, ending.reason, ending.where)

    def _reached(self) -> RunReport:
        """The result of a run that ended without the trainer's own report: what its curve
        reached."""
        best = max(self.curve, key=lambda p: p["val_acc"], default=None)
        payload: RunReport = {
            "best_val_acc": best["val_acc"] if best else 0.0, "best_epoch": best["epoch"] if best
            else 0, "epochs_run": self.curve[-1]["epoch"] if self.curve else 0,
            "seconds": self._trained_seconds(),
            "device": self.worker.label, "seed": self.job.params.get("seed")}
        if self.job.rungs:
            payload["rung_scores"] = rung_scores(self.curve, [*self.job.rungs, self.job.epochs])
        return payload

    def _test(self) -> None:
        """The one evaluation on the test set: the chosen retrain's checkpoint, loaded as
        tensors only, in the trainer."""
        job = self.job
        source = self.db.job_reads.by_id(job.source or "")
        data = self.db.job_reads.load_checkpoint(source) \
            if source else None
        if data is None:
            self.db.work.fail(job, f"the checkpoint of {job.source} is gone")
            return
        request: TestRequest = {"checkpoint": data, "dataset": job.params["dataset"]}
        ending = self._in_trainer(("test", request))
        if self._failed(ending):
            return
        result: RunReport = {**ending.result, "device": self.worker.label}
        if self.db.work.finish(job, result, Outcome.OK.value):
            self.db.studies.nudge()
            log.info("job %s: test accuracy %.4f of %s", job.id, result["test_acc"], job.source)

    def _report(self, result: RunReport, ckpt: Path | None) -> None:
        job, why = self.job, self.why
        payload: RunReport = {**result, "device": self.worker.label}
        if job.rungs:  # ASHA: the score at every rung reached, and at the top
            payload["rung_scores"] = rung_scores(self.curve, [*job.rungs, job.epochs])
        if why == "rung":
            if self.db.work.pause(job, payload):
                self.db.studies.nudge()
                log.info("job %s paused at epoch %s", job.id, job.limit)
        elif why == "lost":
            log.warning("job %s is no longer ours; dropping its result", job.id)
        elif why == "signal":
            self.db.work.release(job)
            log.info("job %s released back to the queue", job.id)
        elif why == "cancel":
            self.db.work.mark_cancelled(job, payload)
        elif why == "heartbeat":
            reason = f"heartbeat thread failed: {self.hb.failed!r}" if self.hb else "heartbeat"
            self.db.work.fail(job, reason)
        else:  # finished: ok or diverged as train() says; "stopped" here can only be the pruner
            outcome = Outcome.PRUNED if why == "pruned" else Outcome(result["status"])
            self._finish(payload, outcome, ckpt)

    def _finish(self, payload: RunReport, outcome: Outcome, ckpt: Path | None) -> None:
        job = self.job
        data = ckpt.read_bytes() if ckpt is not None and ckpt.exists() else None
        if data is not None:
            payload["checkpoint_bytes"] = len(data)
        if self.db.work.finish(job, payload, outcome.value, data):
            self.db.studies.nudge()
            log.info("job %s %s: best val_acc %.4f", job.id, outcome, payload["best_val_acc"])
