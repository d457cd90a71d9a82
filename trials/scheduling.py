"""Promotion-based ASHA and asynchronous Hyperband: rungs, brackets, promotions, and which rung
TPE models. Pure functions over plain data; the study driver (service/driver.py) applies them.

**Rungs.** With ``min_epochs`` r and ``reduction`` η, the rungs are r, rη, rη², ... below
``trial_epochs`` (the top). A trial trains up to its next rung, reports its score there (the best
validation accuracy up to that epoch), snapshots and *pauses*: its job is released, no worker
waits for it, and no retry is spent.

**Promotion (ASHA, Li et al. 2020).** A paused trial at rung k is promoted as soon as it is
among the best ⌊n_k / η⌋ of the n_k trials of its bracket that have a score at rung k. The
driver checks after every change, never waiting for a rung to fill. A promoted trial resumes
from its snapshot on any worker, with the curve it would have had if never paused. When the
search ends, a trial still paused ends as ``stopped_at_rung`` with its best accuracy.

**Brackets (Hyperband).** Bracket j starts at rung j (bracket 0 is ASHA itself; the last one
runs every trial to the top). A new configuration joins bracket j with probability proportional
to Hyperband's budget n_s = ⌈(s_max+1)/(s+1) · η^s⌉, s = s_max - j, as Hyperband allots
configurations to its brackets; each bracket promotes on its own.

**TPE on multi-fidelity data (BOHB's rule, Falkner et al. 2018).** TPE models the scores at the
highest rung (or the top) with at least d + 2 observations, d the number of searched
parameters; below that, the next rung down. Scores at different rungs are never mixed in one
model: a low rung's score says little about the top, and mixing biases the model toward
configurations that merely start fast.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["rung_epochs", "grid_of", "bracket_weights", "bracket_for", "promotions", "model_epoch",
           "rung_scores", "search_rank"]


def rung_epochs(min_epochs: int, reduction: int, trial_epochs: int) -> list[int]:
    """The rung epochs below ``trial_epochs``: min_epochs · reduction^k."""
    out, r = [], int(min_epochs)
    while r < trial_epochs:
        out.append(r)
        r *= int(reduction)
    return out


def grid_of(study: dict[str, Any]) -> list[int]:
    """The study's rung epochs (empty unless its scheduler is asha or hyperband)."""
    s = study.get("scheduler") or {}
    if s.get("rule") not in ("asha", "hyperband"):
        return []
    return rung_epochs(s["min_epochs"], s["reduction"], study["trial_epochs"])


def bracket_weights(n_rungs: int, reduction: int) -> list[int]:
    """Hyperband's configurations per bracket; bracket j starts at rung j (j = n_rungs: the
    top, no early stop)."""
    s_max = n_rungs
    return [math.ceil((s_max + 1) / (s + 1) * reduction ** s)
            for s in (s_max - j for j in range(n_rungs + 1))]


def bracket_for(tid: int, seed: int, weights: list[int]) -> int:
    """The bracket of trial ``tid``: drawn with ``weights``, reproducible from (seed, tid)."""
    return random.Random(seed * 1_000_003 + tid).choices(range(len(weights)), weights)[0]


def rung_scores(curve: Iterable[Mapping[str, Any]], epochs: Iterable[int]) -> dict[str, float]:
    """Best validation accuracy up to each rung epoch the curve reached (keys are epochs as
    strings, as stored)."""
    pts = sorted(curve, key=lambda p: p["epoch"])
    out: dict[str, float] = {}
    for e in epochs:
        upto = [p["val_acc"] for p in pts if p["epoch"] <= e]
        if upto and pts[-1]["epoch"] >= e:
            out[str(e)] = max(upto)
    return out


def _score(doc: Mapping[str, Any], epoch: int) -> float | None:
    return ((doc.get("result") or {}).get("rung_scores") or {}).get(str(epoch))


def promotions(docs: list[dict[str, Any]], grid: list[int], top: int, reduction: int
               ) -> list[tuple[int, int]]:
    """(tid, next limit) for every paused trial that ASHA promotes now. ``docs``: the study's
    search trials (with ``bracket``, ``outcome``, ``limit``, ``result.rung_scores``);
    ``grid``: the rung epochs; ``top``: trial_epochs."""
    out = []
    by_bracket: dict[int, list[dict[str, Any]]] = {}
    for d in docs:
        by_bracket.setdefault(int(d.get("bracket") or 0), []).append(d)
    for members in by_bracket.values():
        for k, epoch in enumerate(grid):
            scored = [(s, d["tid"]) for d in members if (s := _score(d, epoch)) is not None]
            keep = len(scored) // reduction
            if keep == 0:
                continue
            best = {tid for _, tid in sorted(scored, key=lambda x: (-x[0], x[1]))[:keep]}
            nxt = grid[k + 1] if k + 1 < len(grid) else top
            out += [(d["tid"], nxt) for d in members
                    if d.get("outcome") == "paused" and d.get("limit") == epoch
                    and d["tid"] in best]
    return out


def model_epoch(docs: list[dict[str, Any]], grid: list[int], top: int, n_min: int
                ) -> int | None:
    """The epoch whose scores TPE models: the highest (top first) with at least ``n_min``
    scores, else the lowest with any; None when no trial has a score yet."""
    counts = {e: sum(1 for d in docs if _score(d, e) is not None) for e in [*grid, top]}
    for e in [top, *reversed(grid)]:
        if counts[e] >= n_min:
            return e
    return next((e for e in [*grid, top] if counts[e]), None)


def search_rank(doc: Mapping[str, Any], grid: list[int], top: int) -> tuple[int, float]:
    """How a configuration ranks after the search: the highest epoch it has a score at, then
    that score (so a trial stopped at a low rung never outranks one that reached the top)."""
    for e in [top, *reversed(grid)]:
        s = _score(doc, e)
        if s is not None:
            return e, s
    return 0, float((doc.get("result") or {}).get("best_val_acc") or 0.0)
