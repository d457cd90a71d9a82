"""GPU leases on the real test database (the lease logic; no GPU needed)."""

import time

import pytest

from workers.gpu import claim_gpu, refresh_lease, release_lease


def claim(db, owner, stale=5.0):
    return claim_gpu(db.gpu_leases, owner, stale, count=3, key_of=lambda i: f"gpu-test-{i}")


def test_each_worker_gets_its_own_gpu_and_a_fourth_is_refused(db):
    assert [str(claim(db, f"w{i}")) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert str(claim(db, "w0")) == "cuda:0"  # a worker re-claiming keeps its own
    with pytest.raises(RuntimeError, match="leased by live workers"):
        claim(db, "w3")


def test_released_or_stale_leases_are_reused(db):
    for i in range(3):
        claim(db, f"w{i}", stale=2.0)
    release_lease(db.gpu_leases, "w1")
    assert str(claim(db, "w3", stale=2.0)) == "cuda:1"
    time.sleep(2.1)
    refresh_lease(db.gpu_leases, "w0")  # w0 and w3 are alive; w2's lease went stale
    refresh_lease(db.gpu_leases, "w3")
    assert str(claim(db, "w4", stale=2.0)) == "cuda:2"


def test_no_gpu_means_cpu(db):
    assert str(claim_gpu(db.gpu_leases, "w", 1.0, count=0)) == "cpu"
