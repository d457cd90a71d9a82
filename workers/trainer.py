"""The trainer: a child process where a trial trains, apart from the worker that holds its job.

The worker (the parent) keeps the reservation, the heartbeat and every database call. It starts
one trainer with ``python -m workers.trainer`` on a socket pair and reuses it job after job (the
datasets stay loaded, torch stays imported). A trainer that dies (a segfault, a CUDA fault, the
watchdog's SIGKILL) ends only its job; the next job gets a fresh trainer and the worker lives on.

One job's conversation (▶ parent to child, ◀ child to parent)::

    ▶ ("train", request)      ◀ ("progress", steps)        at most once a second while training
                              ◀ ("epoch", point)           after every epoch
                              ◀ ("ask",)                   before the next epoch; the answer:
    ▶ True (stop) | False     ◀ ("snapshot", bytes, epoch)
                              ◀ ("done", result)  or  ("raised", kind, summary, where)
    ▶ ("test", request)       ◀ ("done", result)  or  ("raised", ...)

``kind`` of a raised exception is its failure class's word: "oom", "cuda" or "host"
(infrastructure: the job is retried) or None (configuration: the parameters made the model fail).

**The watchdog** (:class:`Watchdog`, parent side): a job whose trainer sends nothing for
``stall_after`` seconds (the larger of ``SRU_HPO_STALL_TIMEOUT`` and 20 × its mean step time) is
killed and ends ``stalled``; a trial past its study's ``trial_timeout`` ends ``timeout``. Time
the child spends waiting for the parent's answer is not counted as a stall.

**Peak memory**: the trainer's resident set (the kernel's high-water mark, reset per job) and,
on a GPU, ``torch.cuda.max_memory_allocated``, in MiB, come back with every result.

The trainer dies with its parent (``PR_SET_PDEATHSIG`` SIGKILL, and the socket's EOF), and
ignores SIGINT/SIGTERM: the worker decides when training stops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypedDict

from search_spaces.params import Params
from trials.records import RunReport

__all__ = ["Trainer", "Ending", "Watchdog", "TrainRequest", "TestRequest", "failure_kind",
           "STALL_FACTOR"]

log = logging.getLogger("sru_hpo.worker")

STALL_FACTOR = 20  # a stall is this many mean step times without progress (or the setting)
PROGRESS_EVERY = 1.0  # seconds between the child's progress messages
READY_TIMEOUT = 300  # seconds a new trainer may take to import torch
POLL = 0.2  # seconds the parent waits for a message before it checks the child and the clock


class TrainRequest(TypedDict):
    """▶ ("train", request): train ``params`` to epoch ``epochs``."""

    params: Params
    epochs: int
    resume: bytes | None  # the snapshot to continue from
    checkpoint: str | None  # a file for the best weights (a retrain's)
    snapshot_every: float  # seconds between snapshots


class TestRequest(TypedDict):
    """▶ ("test", request): the one test-set evaluation of a checkpoint."""

    checkpoint: bytes
    dataset: str


# -- the parent's side ---------------------------------------------------------------------------
@dataclass
class Ending:
    """How a job's run in the trainer ended.

    ``how``: done (``result`` holds it), raised (``failure`` is "oom", "cuda", "host", or None
    for a configuration error), died (the trainer exited), stalled or timeout (the watchdog killed it).
    """

    how: str
    result: RunReport = field(default_factory=RunReport)
    failure: str | None = None
    reason: str = ""
    where: str | None = None


class Watchdog:
    """Decides when a job's trainer has made no progress for too long, or ran past its time.

    ``timeout``: the trial's limit in training seconds (None: none); ``trained`` the seconds it
    trained before this run (earlier segments, from its curve)."""

    def __init__(self, stall_timeout: float, timeout: float | None = None, trained: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_timeout, self.timeout, self.trained = stall_timeout, timeout, trained
        self.clock = clock
        self.started = self.last = clock()
        self._first: tuple[float, int] | None = None  # (when, steps) of the first progress
        self.steps = 0
        self.step_seconds: float | None = None  # mean seconds per step so far

    def progress(self, steps: int | None = None) -> None:
        now = self.clock()
        self.last = now
        if steps is None or steps <= self.steps:
            return
        self.steps = steps
        if self._first is None:
            self._first = (now, steps)
        elif steps > self._first[1]:
            self.step_seconds = (now - self._first[0]) / (steps - self._first[1])

    @property
    def idle(self) -> float:
        """Seconds since the last progress."""
        return self.clock() - self.last

    @property
    def stall_after(self) -> float:
        return max(self.stall_timeout, STALL_FACTOR * (self.step_seconds or 0.0))

    def check(self) -> tuple[str, str] | None:
        """("stalled" | "timeout", why) when the run must end now."""
        now = self.clock()
        if self.timeout is not None and self.trained + now - self.started > self.timeout:
            return "timeout", f"trained past its trial_timeout of {self.timeout:g} s"
        if now - self.last > self.stall_after:
            return "stalled", (f"no training progress for {now - self.last:.0f} s (stall "
                               f"timeout {self.stall_after:.0f} s, {self.steps} steps done)")
        return None


class Trainer:
    """The worker's handle on its trainer child: started on first use, replaced when it dies."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None

    def _start(self) -> bool:
        """Start a trainer and wait until it has imported torch (that wait is not a job's)."""
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "workers.trainer", str(theirs.fileno()), str(os.getpid()),
               self.device]
        self._proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self._conn = Connection(ours.detach())
        try:
            ready = self._conn.poll(READY_TIMEOUT) and self._conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            log.error("trainer %d did not start within %d s", self._proc.pid, READY_TIMEOUT)
            self.kill()
            return False
        log.info("trainer %d started on %s", self._proc.pid, self.device)
        return True

    def run(self, request: tuple, handle: Callable[[tuple], Any], watchdog: Watchdog) -> Ending:
        """Send ``request`` and serve the child until the job ends. ``handle(message)`` gets every
        epoch, snapshot and ask message; its return value answers an ask."""
        if self._proc is None or self._proc.poll() is not None:
            self.kill()
            if not self._start():
                return Ending("died", reason="the trainer did not start")
        assert self._conn is not None
        try:
            self._conn.send(request)
        except OSError:
            return self._died()
        watchdog.progress()
        while True:
            if self._conn.poll(POLL):
                try:
                    msg = self._conn.recv()
                except (EOFError, OSError):
                    return self._died()
                if msg[0] == "done":
                    return Ending("done", result=msg[1])
                if msg[0] == "raised":
                    return Ending("raised", failure=msg[1], reason=msg[2], where=msg[3])
                if msg[0] == "progress":
                    watchdog.progress(msg[1])
                else:
                    reply = handle(msg)
                    if msg[0] == "ask":
                        self._conn.send(bool(reply))
                    watchdog.progress()  # the parent's own time is not the child's stall
            else:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    return self._died()
            fired = watchdog.check()
            if fired is not None:
                self.kill()
                return Ending(fired[0], reason=fired[1])

    def _died(self) -> Ending:
        assert self._proc is not None
        code = self._proc.wait()
        self.kill()
        why = (f"the trainer was killed by {signal.Signals(-code).name}" if code < 0
               else f"the trainer exited with status {code}")
        return Ending("died", reason=why)

    def kill(self) -> None:
        """Kill the child if it still runs and forget it (the next job starts a fresh one)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None

    def close(self) -> None:
        """At the worker's exit: the child sees EOF and exits; killed if it does not soon."""
        if self._proc is None or self._conn is None:
            return
        self._conn.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


# -- the child's side ----------------------------------------------------------------------------
def failure_kind(exc: BaseException) -> str | None:
    """The infrastructure kind of an exception raised in training ("oom", "cuda", or "host":
    an OSError such as a dataset missing on this host or a failed download), or None: the
    parameters made the model fail (a configuration failure)."""
    import torch

    oom = (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError),
           getattr(torch.cuda, "OutOfMemoryError", MemoryError))
    text = str(exc)
    if isinstance(exc, oom) or "out of memory" in text.lower():
        return "oom"
    if any(s in text for s in ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error",
                               "NCCL", "device-side assert")):
        return "cuda"
    from workers.data import DatasetUnavailable

    if isinstance(exc, OSError | DatasetUnavailable):
        return "host"
    return None


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the socket's EOF still ends the child
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class _Peaks:
    """This job's peak memory: the kernel's resident high-water mark, reset per job."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def read(self) -> RunReport:
        import resource

        import torch

        rss = None
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) / 1024
        except OSError:
            pass
        if rss is None:  # not Linux: the process's lifetime peak
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peaks: RunReport = {"peak_rss_mb": round(rss, 1)}
        if self.cuda:
            peaks["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return peaks


class _Child:
    """The trainer's loop: one request at a time, answered on the same socket."""

    def __init__(self, conn: Connection, device: str) -> None:
        from workers.gpu import configure_process
        from workers.train import pick_device

        self.conn, self.device = conn, pick_device(device)
        configure_process(self.device)
        self._steps, self._sent = 0, time.monotonic()
        conn.send(("ready", os.getpid()))

    def serve(self) -> None:
        while True:
            try:
                what, request = self.conn.recv()
            except (EOFError, OSError):
                return
            peaks, self._steps = _Peaks(self.device), 0
            try:
                result = self._train(request) if what == "train" else self._test(request)
            except Exception as exc:  # noqa: BLE001 - reported to the parent, who classifies it
                summary = "".join(traceback.format_exception_only(exc)).strip()
                tb = traceback.extract_tb(exc.__traceback__)[-3:]
                where = "; ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in tb)
                self.conn.send(("raised", failure_kind(exc), summary, where))
                continue
            self.conn.send(("done", result | peaks.read()))

    def _step(self) -> None:
        self._steps += 1
        now = time.monotonic()
        if now - self._sent >= PROGRESS_EVERY:
            self._sent = now
            self.conn.send(("progress", self._steps))

    def _ask(self) -> bool:
        self.conn.send(("ask",))
        return bool(self.conn.recv())

    def _train(self, r: TrainRequest) -> RunReport:
        from workers.train import train

        result = train(r["params"], epochs=r["epochs"], device=self.device,
                       checkpoint_path=r.get("checkpoint"), resume=r.get("resume"),
                       snapshot_every=r["snapshot_every"], on_step=self._step,
                       on_epoch=lambda point: self.conn.send(("epoch", point)),
                       should_stop=self._ask,
                       on_snapshot=lambda data, epoch: self.conn.send(("snapshot", data, epoch)))
        return result.report()

    def _test(self, r: TestRequest) -> RunReport:
        import io

        from workers.train import evaluate, get_data, load_checkpoint

        model, payload = load_checkpoint(io.BytesIO(r["checkpoint"]), self.device)
        test_loss, test_acc = evaluate(model, get_data(r["dataset"], self.device).test)
        return {"test_acc": test_acc, "test_loss": test_loss, "best_val_acc": payload["val_acc"],
                "best_epoch": payload["epoch"], "epochs_run": 0}


def main(argv: list[str]) -> None:
    fd, parent, device = int(argv[0]), int(argv[1]), argv[2]
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when training stops
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    _Child(Connection(fd), device).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
