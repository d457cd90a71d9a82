"""The incumbent: the configuration a method would return at this moment, and its true quality.

Every arm offers each result it gets with a rank key, larger is better: this project's arms the
key the study driver ranks trials by (``trials.scheduling.rank_key``: the highest rung reached,
then the score there; without rungs the best validation accuracy); Optuna and DEHB the same rule
over what they observed (the highest fidelity reached, then the score there). The trace records
the incumbent's true quality (``Problem.quality``) each time the incumbent changes, against the
epochs spent so far: the anytime curve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.replay.problems import Problem

__all__ = ["Incumbent", "quality_at"]


class Incumbent:
    def __init__(self, problem: Problem, seed: int, spent: Any) -> None:
        self.problem, self.seed, self._spent = problem, seed, spent  # spent(): epochs so far
        self.key: tuple | None = None
        self.params: dict[str, Any] | None = None
        self.trace: list[tuple[int, float]] = []  # (epochs spent, true quality), step function

    def offer(self, key: tuple, params: dict[str, Any]) -> None:
        if self.key is not None and key <= self.key:
            return
        self.key, self.params = key, params
        quality = self.problem.quality(params, self.seed)
        if not self.trace or quality != self.trace[-1][1]:
            self.trace.append((self._spent(), quality))

    @property
    def quality(self) -> float | None:
        return self.trace[-1][1] if self.trace else None

    def at(self, epochs: float) -> float | None:
        """The incumbent's quality once ``epochs`` were spent (None: nothing finished yet)."""
        return quality_at(self.trace, epochs)


def quality_at(trace: list[tuple[int, float]], epochs: float) -> float | None:
    """The value of an anytime curve (a step function of epochs spent) at ``epochs``."""
    q = None
    for spent, quality in trace:
        if spent > epochs:
            break
        q = quality
    return q
