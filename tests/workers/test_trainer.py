"""The trainer child under attack: stopped, killed and segfaulted while a real worker holds its
job; a configuration that diverges; a trial past its timeout; the watchdog's rule.

Timing rules (a loaded 2-core machine): heartbeats are 3 s and the stall timeout 10 s, so a 2 s
stall of the machine trips neither; every wait is for a condition with a generous deadline.
"""

from __future__ import annotations

import os
import signal

import pytest

from service.launcher.processes import pid_alive
from tests.conftest import children_of, proc_env, read_log, wait_for
from tests.trials.test_jobs import enqueue
from tests.workers.test_worker import SNAP, TINY, doc, epochs
from trials.states import JobState
from workers.trainer import STALL_FACTOR, Watchdog

pytestmark = pytest.mark.slow

STALL = {"SRU_HPO_STALL_TIMEOUT": "10", **SNAP}


def trainer_of(worker_pid: int) -> int:
    (pid,) = wait_for(lambda: children_of(worker_pid), 120, "the worker's trainer")
    return pid


@pytest.mark.parametrize("sig, kind", [(signal.SIGSTOP, "stalled"), (signal.SIGKILL, "crashed"),
                                       (signal.SIGSEGV, "crashed")])
def test_a_trainer_that_hangs_or_dies_costs_a_retry_never_the_worker(
        store, db, spawn, mongo_url, db_name, sig, kind):
    """SIGSTOP of the trainer alone (its worker keeps beating, so only the watchdog can see it),
    SIGKILL or SIGSEGV: the worker lives on, kills what is left, and the job is retried from its
    snapshot with a retry spent and the reason, in a fresh trainer."""
    tid = enqueue(store, params=TINY, epochs=10_000)
    w = spawn(["worker", "--device", "cpu", "--max-jobs", "2"],  # the attempt that fails, the next
              proc_env(mongo_url, db_name, **STALL), "w")
    first = trainer_of(w.pid)
    wait_for(lambda: len(epochs(store, tid)) >= 2, 180, "two epochs")
    os.kill(first, sig)
    wait_for(lambda: doc(db, tid)["attempt"] == 2, 120, "the job reserved again")
    d = doc(db, tid)
    assert d["failures"] == {kind: 1} and d["retries"] == 1, d
    assert d["last_requeue_reason"].startswith(f"{kind}: "), d["last_requeue_reason"]
    if kind == "stalled":
        assert "no training progress" in d["last_requeue_reason"]
    else:
        assert signal.Signals(sig).name in d["last_requeue_reason"]
    stopped_at = d["snapshot_epoch"]
    wait_for(lambda: max(epochs(store, tid)) > stopped_at + 1, 180, "training goes on")
    assert w.poll() is None and not pid_alive(first)
    assert trainer_of(w.pid) != first
    assert d["owner"] == doc(db, tid)["owner"]  # the same worker process took it again
    store.jobs.cancel_study("s")
    assert w.wait(120) == 0, read_log(w)
    assert doc(db, tid)["state"] == JobState.CANCELLED


def test_a_killed_worker_takes_its_trainer_with_it(store, db, spawn, mongo_url, db_name):
    tid = enqueue(store, params=TINY, epochs=10_000)
    w = spawn(["worker", "--device", "cpu"], proc_env(mongo_url, db_name), "w")
    child = trainer_of(w.pid)
    wait_for(lambda: epochs(store, tid), 180, "an epoch")
    w.kill()
    w.wait(30)
    wait_for(lambda: not pid_alive(child), 30, "the trainer gone with its worker")


def test_a_diverging_configuration_is_not_retried_and_a_timeout_keeps_what_it_reached(
        store, db, spawn, mongo_url, db_name):
    nan = enqueue(store, params={**TINY, "diverge_loss": 0.01}, epochs=5)  # any loss diverges
    slow = enqueue(store, params=TINY, epochs=10_000, timeout=4.0)
    w = spawn(["worker", "--burst", "--device", "cpu"], proc_env(mongo_url, db_name), "w")
    assert w.wait(300) == 0, read_log(w)
    d = doc(db, nan)
    assert d["outcome"] == "diverged" and d["failure_class"] == "configuration"
    assert d["attempt"] == 1 and d["retries"] == 0 and d["state"] == JobState.DONE
    t = doc(db, slow)
    assert t["outcome"] == "timeout" and t["failure_class"] == "configuration", t
    assert t["state"] == JobState.DONE and t["attempt"] == 1 and t["retries"] == 0
    assert 0 < t["result"]["epochs_run"] < 10_000 and t["result"]["seconds"] > 0
    assert t["result"]["best_val_acc"] == max(p["val_acc"] for p in store.curves.get(t["_id"]))


def test_peak_memory_is_measured_per_trial(store, db, spawn, mongo_url, db_name):
    tid = enqueue(store, params=TINY, epochs=1)
    w = spawn(["worker", "--burst", "--device", "cpu"], proc_env(mongo_url, db_name), "w")
    assert w.wait(180) == 0, read_log(w)
    r = doc(db, tid)["result"]
    assert 50 < r["peak_rss_mb"] < 8192 and "peak_gpu_mb" not in r  # torch alone is > 50 MiB


def test_the_watchdog_waits_the_larger_of_the_setting_and_twenty_steps():
    now = [0.0]
    wd = Watchdog(5.0, clock=lambda: now[0])
    for t, steps in [(1.0, 10), (2.0, 20)]:  # 0.1 s a step: the setting rules
        now[0] = t
        wd.progress(steps)
    assert wd.stall_after == 5.0
    now[0] = 6.9
    assert wd.check() is None
    now[0] = 7.1
    assert wd.check()[0] == "stalled"
    now[0] = 12.0
    wd.progress(21)  # a step now takes ~1 s (10 s for one step since t=2): 20 of them rule
    assert wd.stall_after == pytest.approx(STALL_FACTOR * (12.0 - 1.0) / 11)
    now[0] = 12.0 + 5.1
    assert wd.check() is None


def test_the_watchdog_counts_earlier_segments_toward_the_timeout():
    now = [100.0]
    wd = Watchdog(300.0, timeout=10.0, trained=8.0, clock=lambda: now[0])
    now[0] = 101.9
    assert wd.check() is None
    now[0] = 102.1
    assert wd.check()[0] == "timeout"


def test_exceptions_are_told_apart_by_class():
    import torch

    from workers.data import DatasetUnavailable
    from workers.trainer import failure_kind

    assert failure_kind(torch.OutOfMemoryError("CUDA out of memory")) == "oom"
    assert failure_kind(MemoryError()) == "oom"
    assert failure_kind(RuntimeError("CUDA error: an illegal memory access")) == "cuda"
    assert failure_kind(DatasetUnavailable("MNIST is not in data/MNIST/raw")) == "host"
    assert failure_kind(FileNotFoundError("x")) == "host"
    assert failure_kind(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert failure_kind(ValueError("phi_size: must be >= 1")) is None
