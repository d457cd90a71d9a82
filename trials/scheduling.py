"""Promotion-based ASHA and asynchronous Hyperband: rungs, brackets, promotions, and which rung
TPE models. Pure functions over job records (trials/records.py); the study driver
(service/orchestrator/driver.py) applies them.

**Rungs.** With ``min_epochs`` r and ``reduction`` η, the rungs are r, rη, rη², ... up to
R/η, R = ``trial_epochs`` (the top): no rung lies above R/η, so every cut saves at least
1 − 1/η of a full run (a rung at 45 of 50 would stop two thirds of its trials to save 5 epochs
each). A trial trains up to its next rung, reports its score there (the best validation
accuracy up to that epoch), snapshots and *pauses*: its job is released, no worker waits for it,
and no retry is spent.

**Promotion (ASHA, Li et al. 2020).** A paused trial at rung k is promoted as soon as it is
among the best ⌊n_k / η⌋ of the n_k trials of its bracket that have a score at rung k (equal
scores ordered by a draw seeded by (seed, tid)). The driver checks after every change, never
waiting for a rung to fill; promotions from higher rungs go first in the queue. A promoted trial resumes
from its snapshot on any worker, with the curve it would have had if never paused. When the
search ends, a trial still paused ends as ``stopped_at_rung`` with its best accuracy.

**Brackets (Hyperband).** Bracket j starts at rung j (bracket 0 is ASHA itself; the last one
runs every trial to the top). A new configuration joins bracket j with probability proportional
to Hyperband's budget n_s = ⌈(s_max+1)/(s+1) · η^s⌉, s = s_max - j, as Hyperband allots
configurations to its brackets; each bracket promotes on its own.

**TPE on multi-fidelity data (BOHB's rule, Falkner et al. 2018).** TPE models the scores at the
highest rung (or the top) with at least d + 2 observations, d the number of searched
parameters; below that, the next rung down; with none that full, suggestions are random.
Scores at different rungs are never mixed in one model: a low rung's score says little about
the top, and mixing biases the model toward configurations that merely start fast
(service/orchestrator/suggest.py builds the view TPE reads).
"""

from __future__ import annotations

import functools
import math
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # records.py imports rung_epochs from here
    from trials.records import JobRecord

__all__ = ["rung_epochs", "bracket_weights", "bracket_for", "promotions", "best_paused",
           "model_epoch",
           "rung_scores", "search_rank", "rank_key", "uniform_draw"]


def rung_epochs(min_epochs: int, reduction: int, trial_epochs: int) -> list[int]:
    """The rung epochs min_epochs · reduction^k that are at most trial_epochs / reduction
    (integer arithmetic: r·η ≤ R). Their number is Hyperband's s_max = ⌊log_η(R / r)⌋."""
    out, r, eta = [], int(min_epochs), int(reduction)
    while r * eta <= trial_epochs:
        out.append(r)
        r *= eta
    return out


def bracket_weights(n_rungs: int, reduction: int) -> list[int]:
    """Hyperband's configurations per bracket; bracket j starts at rung j (j = n_rungs: the
    top, no early stop). s_max = n_rungs, which ``rung_epochs`` makes ⌊log_η(R / r)⌋."""
    s_max = n_rungs
    return [math.ceil((s_max + 1) / (s + 1) * reduction ** s)
            for s in (s_max - j for j in range(n_rungs + 1))]


@functools.lru_cache(maxsize=1 << 16)  # promotions and rankings draw the same keys every pass
def uniform_draw(*key: int) -> float:
    """A number in [0, 1) fixed by ``key``: the same in every process and Python version (a
    CRC-32 of the key), so seeded choices are reproducible wherever the driver runs."""
    return zlib.crc32(":".join(map(str, key)).encode()) / 2**32


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


def promotions(trials: Sequence[JobRecord], grid: list[int], top: int, reduction: int,
               seed: int = 0) -> list[tuple[int, int, int]]:
    """(tid, rung epoch, next limit) for every paused trial that ASHA promotes now, highest
    rung first (Li et al. promote from the top down). ``trials``: the study's search trials
    (their bracket, outcome, limit and rung scores); ``grid``: the rung epochs; ``top``:
    trial_epochs. Equal scores are ordered by a draw from (seed, tid), not by tid. Only rungs
    where a trial waits are ranked."""
    nxt = dict(zip(grid, [*grid[1:], top], strict=True))
    by_bracket: dict[int, list[JobRecord]] = {}
    waiting: dict[tuple[int, int], list[int]] = {}  # (bracket, rung epoch) -> paused tids
    for t in trials:
        bracket = t.bracket
        by_bracket.setdefault(bracket, []).append(t)
        if t.paused and t.limit in nxt:
            waiting.setdefault((bracket, t.limit), []).append(t.tid)  # type: ignore[arg-type]
    out = []
    for (bracket, epoch), paused in sorted(waiting.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        key = str(epoch)
        scored = [(s, t.tid) for t in by_bracket[bracket]
                  if (s := t.result.rung_scores.get(key)) is not None]
        keep = len(scored) // reduction
        if keep == 0:
            continue
        ranked = sorted(scored, key=lambda x: (-x[0], uniform_draw(seed, x[1])))
        best = {tid for _, tid in ranked[:keep]}
        out += [(tid, epoch, nxt[epoch]) for tid in paused if tid in best]
    return out


def best_paused(trials: Sequence[JobRecord], grid: list[int], top: int, seed: int = 0
                ) -> list[tuple[int, int, int]]:
    """(tid, rung epoch, next limit) of the best paused trial of each rung, highest rung
    first: what the end of a search promotes so that some trial reaches the top."""
    nxt = dict(zip(grid, [*grid[1:], top], strict=True))
    best: dict[int, tuple[float, float, int]] = {}
    for t in trials:
        epoch = t.limit
        if not t.paused or epoch not in nxt:
            continue
        s = t.result.rung_scores.get(str(epoch))
        cand = (-(s if s is not None else -math.inf), uniform_draw(seed, t.tid), t.tid)
        if epoch not in best or cand < best[epoch]:
            best[epoch] = cand
    return [(best[e][2], e, nxt[e]) for e in sorted(best, reverse=True)]


def model_epoch(trials: Sequence[JobRecord], grid: list[int], top: int, n_min: int
                ) -> int | None:
    """The epoch whose scores TPE models: the highest (top first) with at least ``n_min``
    scores; None while no epoch has that many (TPE's start-up: random suggestions)."""
    keys = {str(e): e for e in [*grid, top]}
    counts = dict.fromkeys(keys.values(), 0)
    for t in trials:
        for k in t.result.rung_scores:
            if k in keys:
                counts[keys[k]] += 1
    return next((e for e in [top, *reversed(grid)] if counts[e] >= n_min), None)


def search_rank(trial: JobRecord, grid: list[int], top: int) -> tuple[int, float]:
    """How a configuration ranks after the search: the highest epoch it has a score at, then
    that score (so a trial stopped at a low rung never outranks one that reached the top)."""
    result = trial.result
    scores = result.rung_scores
    for e in [top, *reversed(grid)]:
        s = scores.get(str(e))
        if s is not None:
            return e, s
    return 0, result.best_val_acc or 0.0


def rank_key(trial: JobRecord, grid: list[int], top: int, seed: int = 0
             ) -> tuple[int, float, float]:
    """How the study ranks a search trial with a result, larger first: with rungs by
    ``search_rank``, otherwise by best validation accuracy; ties go to a draw from (seed,
    tid). The driver retrains the first; the replay benchmark calls it the incumbent."""
    if grid:
        epoch, score = search_rank(trial, grid, top)
    else:
        epoch, score = 0, trial.result.best_val_acc or 0.0
    return epoch, score, -uniform_draw(seed, trial.tid)
