"""Which GPU (and which slot of it) a worker uses, and the per-process CUDA settings.

Docker Compose gives every replica of a ``--scale``d service the same GPU reservation (it has no
per-replica device assignment), so the compose file shows all GPUs to every worker container and
each ``--device auto`` worker claims a free (GPU UUID, slot) lease in the database
(trials/registry.py). ``--slots-per-gpu N`` (``SRU_HPO_GPU_SLOTS``) lets N workers share one
GPU: small SRU trials use a fraction of a large card. Scale workers to GPUs × slots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch

from trials.registry import GpuLeases

__all__ = ["claim_device", "gpu_key", "configure_process"]

log = logging.getLogger("sru_hpo.gpu")


def gpu_key(index: int) -> str:
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is not None:
        return f"gpu-{uuid}"
    return f"gpu-{os.environ.get('SRU_HPO_NODE', 'node')}-{index}"  # old torch: no uuid


def claim_device(leases: GpuLeases, owner: str, *, slots: int, stale_after: float,
                 count: int | None = None, key_of: Callable[[int], str] = gpu_key
                 ) -> tuple[torch.device, int | None]:
    """A free (GPU, slot) as (device, slot), or (cpu, None) when no GPU is visible. Raises when
    every slot of every visible GPU is held by a live worker. ``count``/``key_of`` default to
    the visible CUDA devices (tests pass their own)."""
    n = torch.cuda.device_count() if count is None else count
    if n == 0:
        return torch.device("cpu"), None
    got = leases.claim([key_of(i) for i in range(n)], slots, owner, stale_after)
    if got is None:
        raise RuntimeError(f"all {n} visible GPU(s) x {slots} slot(s) are leased by live workers; "
                           f"scale workers to at most {n * slots}, raise --slots-per-gpu, "
                           "or give --device cuda:N")
    index, slot = got
    log.info("claimed GPU %d slot %d", index, slot)
    return torch.device(f"cuda:{index}"), slot


def configure_process(device: torch.device) -> None:
    """Process-wide torch settings, set once when a worker starts (never inside a trial, so
    nothing leaks from one trial into the next): TF32 matmuls and cuDNN autotuning on CUDA."""
    if device.type == "cuda":  # guarded: CPU and CI never take this branch
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
