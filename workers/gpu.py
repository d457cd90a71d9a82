"""Which GPU a worker uses when several are visible: one lease per GPU in the database.

Docker Compose gives every replica of a ``--scale``d service the same GPU reservation (it has no
per-replica device assignment), so the compose file shows all GPUs to every worker container
and each ``--device auto`` worker claims the first GPU whose lease is free or stale. A lease is
keyed by the GPU's UUID (unique per physical card), refreshed by the worker while it lives,
and stale after 3 heartbeat intervals by the host clock the containers share.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import torch
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

__all__ = ["claim_gpu", "gpu_key", "refresh_lease", "release_lease"]

log = logging.getLogger("sru_hpo.gpu")


def gpu_key(index: int) -> str:
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        return f"gpu-{uuid}"
    return f"gpu-{os.environ.get('SRU_HPO_NODE', 'node')}-{index}"  # old torch: no uuid


def claim_gpu(leases: Collection, owner: str, stale_after: float, count: int | None = None,
              key_of: Callable[[int], str] = gpu_key) -> torch.device:
    """Claim a free visible GPU (or CPU when none is visible). Raises if all are taken.
    ``count``/``key_of`` default to the visible CUDA devices (tests pass their own)."""
    n = torch.cuda.device_count() if count is None else count
    if n == 0:
        return torch.device("cpu")
    if n == 1:
        return torch.device("cuda:0")
    for i in range(n):
        key, now = key_of(i), time.time()
        try:  # create the lease once; no upsert (nx-27017 and MongoDB differ on a missed one)
            leases.insert_one({"_id": key, "owner": None, "last_seen": 0.0})
        except DuplicateKeyError:
            pass
        # $and, not a top-level _id beside $or: nx-27017 0.8.1 drops the _id condition then
        free = {"$and": [{"_id": key}, {"$or": [{"owner": owner}, {"owner": None},
                                                {"last_seen": {"$lt": now - stale_after}}]}]}
        doc = leases.find_one_and_update(
            free, {"$set": {"owner": owner, "last_seen": now, "index": i}},
            return_document=ReturnDocument.AFTER)
        if doc is not None and doc["owner"] == owner:
            log.info("claimed %s (cuda:%d)", key, i)
            return torch.device(f"cuda:{i}")
    raise RuntimeError(f"all {n} visible GPUs are leased by live workers; scale workers to "
                       f"at most {n} or give --device cuda:N")


def refresh_lease(leases: Collection, owner: str) -> None:
    leases.update_many({"owner": owner}, {"$set": {"last_seen": time.time()}})


def release_lease(leases: Collection, owner: str) -> None:
    leases.update_many({"owner": owner}, {"$set": {"owner": None}})
