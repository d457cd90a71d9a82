"""One reserved job from start to report: where a trial is handled.

``TrialRun(worker, job).execute()``:

1. **resume**: load the job's snapshot (if a requeued or released job has one) and claim the
   curve for this reservation, keeping the points the snapshot covers;
2. **train** (workers/train.py, where an epoch is handled) with a heartbeat thread; after every
   epoch write the point, and stop when the worker is signalled, the job is lost or cancelled,
   or the pruner says so; every ``SRU_HPO_SNAPSHOT_SECONDS`` save the training state;
3. **report**: finish (ok / pruned / diverged, with the retrain's checkpoint), cancel, release
   back to the queue, or drop everything when the job is no longer ours.

Every write is conditional on the job still being this reservation's (trials/jobs.py), so a
worker that stalled and lost its job writes nothing when it wakes up.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trials.connection import DatabaseUnavailable
from trials.jobs import Job
from trials.pruning import make_pruner
from trials.scheduling import rung_scores
from trials.states import JobKind, Outcome
from workers.train import TrainResult, evaluate, get_data, load_checkpoint, train

if TYPE_CHECKING:
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
        self.curve: list[dict[str, Any]] = []  # this trial's points so far (for the pruner)
        self.why: str | None = None  # why training stopped early: signal|lost|cancel|pruned|...
        self.hb: Heartbeat | None = None

    def db(self, fn, what: str):  # noqa: ANN001, ANN201 - the worker's retrying wrapper
        return self.worker.db(fn, what)

    # -- 1. resume ----------------------------------------------------------------------------------
    def _resume(self) -> tuple[bool, bytes | None]:
        """(claimed, the snapshot to resume from or None); not claimed: the job is lost."""
        job = self.job
        snapshot = self.db(lambda: self.store.jobs.load_snapshot(job), "snapshot")
        if snapshot is not None:
            self.curve = [p for p in self.db(lambda: self.store.curves.get(job.id), "curve")
                          if p["epoch"] <= job.snapshot_epoch]
        carried = list(self.curve)
        claimed = self.db(lambda: self.store.curves.claim(job.id, job.attempt, carried), "curve")
        return claimed, snapshot

    # -- 2. train: the callbacks train() calls -------------------------------------------------------
    def on_epoch(self, point: dict[str, Any]) -> None:
        point = {**point, "at": time.time()}  # when it was measured (this host's clock)
        self.curve = [p for p in self.curve if p["epoch"] < point["epoch"]] + [point]
        job = self.job
        if not self.db(lambda: self.store.curves.add(job.id, job.attempt, point), "curve"):
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
            self.why = self.db(lambda: self.store.jobs.stop_request(self.job), "stop_request")
            if not self.why and self.job.pauses and self.curve[-1]["epoch"] >= (self.job.limit or 0):
                self.why = "rung"  # ASHA: report at the rung, snapshot, wait to be promoted
            elif not self.why and self.pruner is not None and self._prune():
                self.why = "pruned"
        return self.why is not None

    def _prune(self) -> bool:
        assert self.pruner is not None
        epoch, sid = self.curve[-1]["epoch"], self.job.exp_key
        peers = self.db(lambda: self.store.jobs.full_budget_tids(sid), "pruner")
        others = self.db(lambda: self.store.curves.of_jobs(peers, up_to_epoch=epoch), "pruner")
        return self.pruner.should_prune(epoch, self.curve, list(others.values()))

    def on_snapshot(self, data: bytes, epoch: int) -> None:
        if not self.db(lambda: self.store.jobs.save_snapshot(self.job, data, epoch), "snapshot"):
            self.why = "lost"

    def _beat(self) -> None:  # in the heartbeat thread: stay listed as live, keep the GPU lease
        w = self.worker
        epoch = self.curve[-1]["epoch"] if self.curve else 0
        self.store.workers.touch(w.owner, {"exp_key": self.job.exp_key, "tid": self.job.tid,
                                           "kind": self.job.kind, "epoch": epoch})
        self.store.leases.refresh(w.owner)

    # -- the whole run ------------------------------------------------------------------------------
    def execute(self) -> None:
        """The heartbeat runs from the moment the job is reserved: loading the snapshot, the
        dataset and the model can take longer than a heartbeat interval on a loaded machine."""
        job = self.job
        log.info("job %s (%s, %d epochs, attempt %d) reserved", job.id, job.kind, job.epochs,
                 job.attempt)
        with Heartbeat(lambda: self.store.jobs.heartbeat(job), self.store.heartbeat_interval,
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
        with tempfile.TemporaryDirectory(prefix="sru-hpo-ckpt-") as tmp:
            # the retrain's best weights go to a file (train's checkpoint_path), then to GridFS
            ckpt = Path(tmp) / "best.pt" if job.kind == JobKind.RETRAIN else None
            try:
                result = train(
                    job.params, epochs=job.epochs, device=self.worker.device,
                    checkpoint_path=ckpt, on_epoch=self.on_epoch, should_stop=self.should_stop,
                    resume=resume, on_snapshot=self.on_snapshot,
                    snapshot_every=self.worker.snapshot_every)
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad trial must not kill the worker
                self._report_exception(exc)
                return
            self._report(result, ckpt)

    # -- 3. report ----------------------------------------------------------------------------------
    def _report_exception(self, exc: BaseException) -> None:
        summary = "".join(traceback.format_exception_only(exc)).strip()
        tb = traceback.extract_tb(exc.__traceback__)[-3:]
        where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in tb)
        log.error("job %s failed: %s (at %s)", self.job.id, summary, where)
        self.db(lambda: self.store.jobs.fail(self.job, summary, where), "fail")

    def _test(self) -> None:
        """The one evaluation on the test set: the chosen retrain's checkpoint, loaded as
        tensors only."""
        job = self.job
        source = self.db(lambda: self.store.jobs.by_id(job.source or ""), "test source")
        data = self.db(lambda: self.store.jobs.load_checkpoint(source), "checkpoint") \
            if source else None
        try:
            if data is None:
                raise FileNotFoundError(f"the checkpoint of {job.source} is gone")
            model, payload = load_checkpoint(io.BytesIO(data), self.worker.device)
            test_loss, test_acc = evaluate(model, get_data(job.params["dataset"],
                                                           self.worker.device).test)
        except Exception as exc:  # noqa: BLE001 - reported on the job, the worker goes on
            self._report_exception(exc)
            return
        result = {"test_acc": test_acc, "test_loss": test_loss, "best_val_acc": payload["val_acc"],
                  "best_epoch": payload["epoch"], "epochs_run": 0, "device": self.worker.label}
        if self.db(lambda: self.store.jobs.finish(job, result, Outcome.OK.value), "finish"):
            self.db(self.store.studies.nudge, "nudge")
            log.info("job %s: test accuracy %.4f of %s", job.id, test_acc, job.source)

    def _report(self, result: TrainResult, ckpt: Path | None) -> None:
        job, why = self.job, self.why
        payload = {k: v for k, v in result.to_dict().items() if k != "curve"}
        payload["device"] = self.worker.label
        if job.rungs:  # ASHA: the score at every rung reached, and at the top
            payload["rung_scores"] = rung_scores(self.curve, [*job.rungs, job.epochs])
        if why == "rung":
            if self.db(lambda: self.store.jobs.pause(job, payload), "pause"):
                self.db(self.store.studies.nudge, "nudge")
                log.info("job %s paused at epoch %s", job.id, job.limit)
        elif why == "lost":
            log.warning("job %s is no longer ours; dropping its result", job.id)
        elif why == "signal":
            self.db(lambda: self.store.jobs.release(job), "release")
            log.info("job %s released back to the queue", job.id)
        elif why == "cancel":
            self.db(lambda: self.store.jobs.mark_cancelled(job, payload), "cancel")
        elif why == "heartbeat":
            reason = f"heartbeat thread failed: {self.hb.failed!r}" if self.hb else "heartbeat"
            self.db(lambda: self.store.jobs.fail(job, reason), "fail")
        else:  # finished: ok or diverged as train() says; "stopped" here can only be the pruner
            outcome = Outcome.PRUNED if why == "pruned" else Outcome(result.status)
            data = ckpt.read_bytes() if ckpt is not None and ckpt.exists() else None
            if data is not None:
                payload["checkpoint_bytes"] = len(data)
            if self.db(lambda: self.store.jobs.finish(job, payload, outcome.value, data),
                       "finish"):
                self.db(self.store.studies.nudge, "nudge")
                log.info("job %s %s: best val_acc %.4f", job.id, outcome, result.best_val_acc)
