"""Simulated workers on a virtual clock: an event loop over generators.

A worker is a generator. It ``yield``s the virtual seconds its next epoch takes, and resumes when
that much time has passed; it ``yield``s ``IDLE`` when there is nothing to do, and resumes at the
next ``changed()`` (something finished: there may be work now); it returns when it will never
have work again. Workers run one at a time, earliest event first (ties: the order they were
scheduled), so a run is reproducible, and trials of different lengths finish out of order as on
a real fleet.

``spend()`` counts one finished training epoch. The loop stops as soon as ``budget`` epochs are
spent (the epoch that reaches it is the last one counted), or when every worker is idle and
nothing is running (the search is over).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["EventLoop", "IDLE", "Worker"]

IDLE = None
Worker = Generator[float | None, None, None]


class EventLoop:
    def __init__(self, clock: Any, budget: int) -> None:
        self.clock, self.budget = clock, budget  # clock: has now() and set(t)
        self.spent = 0
        self._events: list[tuple[float, int, Worker]] = []
        self._idle: list[Worker] = []
        self._seq = itertools.count()

    @property
    def over(self) -> bool:
        return self.spent >= self.budget

    def spend(self, epochs: int = 1) -> None:
        self.spent += epochs

    def changed(self) -> None:
        """Something finished: idle workers look for work again, now."""
        for w in self._idle:
            self._schedule(w, self.clock.now())
        self._idle.clear()

    def _schedule(self, w: Worker, at: float) -> None:
        heapq.heappush(self._events, (at, next(self._seq), w))

    def run(self, workers: list[Callable[[], Worker]]) -> None:
        for make in workers:
            self._schedule(make(), self.clock.now())
        while self._events and not self.over:
            at, _, w = heapq.heappop(self._events)
            self.clock.set(at)
            try:
                wait = next(w)
            except StopIteration:
                continue
            if wait is IDLE:
                self._idle.append(w)
            else:
                self._schedule(w, at + float(wait))
