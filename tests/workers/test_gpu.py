"""GPU slot leases on the real test database, with fake GPU UUIDs (no GPU needed)."""

import pytest

from workers.gpu import claim_device

GPUS = ["gpu-test-a", "gpu-test-b"]


def claim(store, owner, slots=1, stale=30.0):
    return claim_device(store.leases, owner, slots=slots, stale_after=stale, count=len(GPUS),
                        key_of=lambda i: GPUS[i])


def test_workers_spread_over_gpus_before_sharing_one(store):
    got = [claim(store, f"w{i}", slots=2) for i in range(4)]
    assert [(str(d), s) for d, s in got] == [("cuda:0", 0), ("cuda:1", 0), ("cuda:0", 1),
                                             ("cuda:1", 1)]
    assert claim(store, "w0", slots=2) == got[0]  # a worker re-claiming keeps its own
    with pytest.raises(RuntimeError, match=r"2 visible GPU\(s\) x 2 slot\(s\)"):
        claim(store, "w4", slots=2)


def test_a_released_slot_is_reused(store):
    for i in range(2):
        claim(store, f"w{i}")
    store.leases.release("w1")
    assert claim(store, "w2") == claim(store, "w2")
    assert str(claim(store, "w2")[0]) == "cuda:1"


def test_the_slot_of_a_dead_worker_is_reclaimed(store, db):
    """A worker that died keeps no slot: once its lease is older than stale_after (by the
    database server's clock) the next worker takes it. The dead worker's last refresh is set
    in the past instead of waiting for it."""
    for i in range(2):
        claim(store, f"w{i}")
    store.leases.refresh("w0")  # alive
    db.gpu_leases.update_one({"owner": "w1"}, {"$set": {"last_seen": store.clock.now() - 60}})
    dev, slot = claim(store, "w2", stale=30.0)
    assert (str(dev), slot) == ("cuda:1", 0)
    assert store.leases.holders() == {"gpu-test-a#0": "w0", "gpu-test-b#0": "w2"}


def test_no_gpu_means_cpu(store):
    dev, slot = claim_device(store.leases, "w", slots=4, stale_after=1.0, count=0)
    assert str(dev) == "cpu" and slot is None
