"""Typed records of what the store holds, and the one place they are mapped from documents.

The store hands these out instead of MongoDB documents, so nothing above ``trials/`` indexes a
raw field: a study is a frozen ``Study`` (its settings as created, its lifecycle stamps, its
published summary), with the facts derived from them (its rung epochs, its seed list, whether
it is active) defined here once.

``Study.from_doc`` is the only reader of a study document's fields outside trials/studies.py
(which writes them). A document written by an older version (a field missing) reads with the
field's default, as the API's defaults at creation would have given it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from trials.scheduling import rung_epochs
from trials.states import StudyState

__all__ = ["Schedule", "StudyBudget", "Study", "Params", "Summary"]

# A hyperparameter assignment ({name: value}; values are numbers, strings or nested choices):
# free-form by nature, checked against its space by search_spaces/.
Params = dict[str, Any]
# A study's published summary (counts, best trial, epochs, ...): written by the driver from
# service/orchestrator/summary.py, read by service/studies/views.py into its response model.
Summary = Mapping[str, Any]

@dataclass(frozen=True, slots=True)
class Schedule:
    """How the study stops trials early (the API's ``scheduler`` field)."""

    rule: str = "off"  # off | median | asha | hyperband
    warmup: int = 5
    min_trials: int = 3
    min_epochs: int = 5
    reduction: int = 3

    @property
    def has_rungs(self) -> bool:
        return self.rule in ("asha", "hyperband")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Schedule:
        doc = doc or {}
        return cls(rule=str(doc.get("rule") or "off"), warmup=int(doc.get("warmup", 5)),
                   min_trials=int(doc.get("min_trials", 3)),
                   min_epochs=int(doc.get("min_epochs", 5)), reduction=int(doc.get("reduction", 3)))


@dataclass(frozen=True, slots=True)
class StudyBudget:
    """The compute a study's search may spend: epochs, or training hours (one of them)."""

    epochs: int | None = None
    hours: float | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> StudyBudget | None:
        if not doc:
            return None
        epochs, hours = doc.get("epochs"), doc.get("hours")
        return cls(None if epochs is None else int(epochs), None if hours is None else float(hours))


@dataclass(frozen=True, slots=True)
class Study:
    """A study: its settings as created (they never change) and its lifecycle."""

    id: str
    name: str
    model: str
    dataset: str
    space: Mapping[str, Any]  # the resolved space (search_spaces.schema.SpaceSpec's fields)
    state: StudyState
    created: float
    trial_epochs: int = 50
    retrain_epochs: int = 200
    seed: int = 0
    algorithm: str = "tpe"
    n_trials: int | None = None
    budget: StudyBudget | None = None
    parallelism: int = 4
    queue_ahead: int = 1
    random_fraction: float | None = None
    scheduler: Schedule = field(default_factory=Schedule)
    warm_start: tuple[Params, ...] = ()
    trial_timeout: float | None = None
    retrain_top_k: int = 1
    retrain_seeds: int = 1
    comparison: str | None = None
    # the lifecycle (trials/studies.py writes it)
    started: float | None = None
    search_finished: float | None = None
    finished: float | None = None
    error: str | None = None
    retrain_tid: int | None = None
    summary: Summary = field(default_factory=dict)  # empty until the driver's first publish
    settled: bool = False  # ended, and none of its jobs runs any more
    driver: str | None = None  # the holder of its driver lease (held until driver_until)

    # -- derived facts, defined once ------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.state.active

    def retrain_state(self, computed: str | None = None) -> str:
        """The retrain's state as a reader is told it: the driver's (pending, running, done,
        failed; ``computed`` from the jobs now, else the one in the published summary), and
        "not run" for a study that ended (cancelled, failed) before its retrain."""
        state = computed or str(self.summary.get("retrain_state") or "pending")
        ended_early = self.state in (StudyState.CANCELLED, StudyState.FAILED)
        return "not run" if state == "pending" and ended_early else state

    @property
    def grid(self) -> list[int]:
        """The rung epochs (empty unless the scheduler is asha or hyperband)."""
        s = self.scheduler
        return rung_epochs(s.min_epochs, s.reduction, self.trial_epochs) if s.has_rungs else []

    @property
    def seeds(self) -> list[int]:
        """The seeds the winner is retrained with: seed, seed+1, ... (``retrain_seeds``)."""
        return [self.seed + i for i in range(self.retrain_seeds)]

    @property
    def rho(self) -> float:
        """The share of TPE's suggestions drawn at random: its own ``random_fraction``, else
        BOHB's 1/3 with rungs and 0 without."""
        if self.random_fraction is not None:
            return self.random_fraction
        return 1 / 3 if self.grid else 0.0

    # -- the mapping from the document ----------------------------------------------------------
    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Study:
        g = doc.get
        opt_int, opt_float = _int_or_none, _float_or_none
        return cls(
            id=str(doc["_id"]), name=str(g("name", "")), model=str(g("model", "")),
            dataset=str(g("dataset", "")), space=MappingProxyType(dict(g("space") or {})),
            state=StudyState(doc["state"]), created=float(g("created") or 0.0),
            trial_epochs=int(g("trial_epochs", 50)), retrain_epochs=int(g("retrain_epochs", 200)),
            seed=int(g("seed", 0)), algorithm=str(g("algorithm") or "tpe"),
            n_trials=opt_int(g("n_trials")), budget=StudyBudget.from_doc(g("budget")),
            parallelism=int(g("parallelism", 4)), queue_ahead=int(g("queue_ahead") or 0),
            random_fraction=opt_float(g("random_fraction")),
            scheduler=Schedule.from_doc(g("scheduler")),
            warm_start=tuple(dict(p) for p in g("warm_start") or ()),
            trial_timeout=opt_float(g("trial_timeout")) or None,
            retrain_top_k=int(g("retrain_top_k") or 1), retrain_seeds=int(g("retrain_seeds") or 1),
            comparison=g("comparison"), started=opt_float(g("started")),
            search_finished=opt_float(g("search_finished")), finished=opt_float(g("finished")),
            error=g("error"), retrain_tid=opt_int(g("retrain_tid")),
            summary=MappingProxyType(dict(g("summary") or {})), settled=bool(g("settled", False)),
            driver=g("driver"))

    def settings(self) -> dict[str, Any]:
        """The settings it was created with, as the API's StudyCreate fields (space resolved)."""
        out: dict[str, Any] = {
            "name": self.name, "model": self.model, "dataset": self.dataset,
            "space": dict(self.space), "algorithm": self.algorithm, "n_trials": self.n_trials,
            "budget": None if self.budget is None else asdict(self.budget),
            "parallelism": self.parallelism, "queue_ahead": self.queue_ahead,
            "random_fraction": self.random_fraction, "trial_epochs": self.trial_epochs,
            "retrain_epochs": self.retrain_epochs, "seed": self.seed,
            "scheduler": asdict(self.scheduler),
            "warm_start": [dict(p) for p in self.warm_start],
            "trial_timeout": self.trial_timeout, "retrain_top_k": self.retrain_top_k,
            "retrain_seeds": self.retrain_seeds}
        return out


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)
