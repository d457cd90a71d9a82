"""Pruners: one small interface, ``should_prune(...) -> bool``, as in Optuna.

A job carries its study's pruning config as plain data (``{"rule": "median", "warmup": 5}``);
the worker asks :func:`make_pruner` for the pruner and consults it after every epoch.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Pruner", "MedianPruner", "NopPruner", "make_pruner"]

Curve = Sequence[Mapping[str, Any]]


class Pruner(Protocol):
    def should_prune(self, epoch: int, curve: Curve, others: Sequence[Curve]) -> bool:
        """``curve``: this trial's points so far; ``others``: curves of finished trials."""
        ...


class NopPruner:
    def should_prune(self, epoch: int, curve: Curve, others: Sequence[Curve]) -> bool:
        return False


class MedianPruner:
    """Stop at epoch e when this trial's best val_acc so far is below the median, over finished
    trials that reached epoch e, of their best val_acc up to e. Never before ``warmup`` epochs
    have passed, and never with fewer than ``min_trials`` finished trials to compare with."""

    def __init__(self, warmup: int = 5, min_trials: int = 3) -> None:
        self.warmup, self.min_trials = warmup, min_trials

    @staticmethod
    def _best_until(curve: Curve, epoch: int) -> float | None:
        vals = [p["val_acc"] for p in curve if p["epoch"] <= epoch]
        return max(vals) if vals else None

    def should_prune(self, epoch: int, curve: Curve, others: Sequence[Curve]) -> bool:
        if epoch <= self.warmup:
            return False
        peers = [b for c in others if any(p["epoch"] >= epoch for p in c)
                 if (b := self._best_until(c, epoch)) is not None]
        mine = self._best_until(curve, epoch)
        if mine is None or len(peers) < self.min_trials:
            return False
        return mine < statistics.median(peers)


def make_pruner(config: Mapping[str, Any] | None) -> Pruner:
    if not config or config.get("rule", "off") == "off":
        return NopPruner()
    if config["rule"] == "median":
        return MedianPruner(int(config.get("warmup", 5)), int(config.get("min_trials", 3)))
    raise ValueError(f"pruning.rule: unknown {config['rule']!r}, expected off or median")
