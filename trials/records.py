"""Typed records of what the store holds, and the one place they are mapped from documents.

The store hands these out instead of MongoDB documents, so nothing above ``trials/`` indexes a
raw field:

- a study is a frozen ``Study`` (its settings as created, its lifecycle stamps, its published
  summary), with the facts derived from them (its rung epochs, its seed list, whether it is
  active) defined here once;
- a job is a ``JobRecord`` over its document (hyperopt's trial format, trials/jobs.py), with
  its result as a ``JobResult``: typed, read-only properties, and the facts derived from them
  (the epochs it trained, the epoch it trains to, whether it may be retrained) defined once.
  A record wraps the document instead of copying its fields: the driver's cache holds a
  study's documents for TPE (``hyperopt_doc``, ``observed``), and a record costs one object
  per change. What the fleet did with a job (owners, retries, failures) is its ``history``.

``Study.from_doc`` is the only reader of a study document's fields outside trials/studies.py
(which writes them), and ``JobRecord`` the only reader of a job document's outside the job
collection's own modules. A document written by an older version (a field missing) reads
with the field's default, as the API's defaults at creation would have given it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, TypedDict, cast

from search_spaces.params import Params
from trials.scheduling import rung_epochs
from trials.states import JobKind, JobState, Outcome, StudyState
from trials.summary_doc import Summary

__all__ = ["Schedule", "StudyBudget", "Study", "JobRecord", "JobResult", "JobHistory", "Curve",
           "Comparison", "Point", "RunReport", "Params", "Summary", "HyperoptDoc", "hyperopt_doc", "observed"]

#: A trial document in hyperopt's own format (trials/jobs.py adds this project's fields to it):
#: hyperopt's code reads it (TPE, trials/mongo_trials.py), never ours; ``hyperopt_doc`` and
#: ``observed`` are the only ways to one above trials/.
HyperoptDoc = dict[str, Any]


class RunReport(TypedDict, total=False):
    """What a worker reports as a job's result when a run ends (workers/trial.py; the job
    protocol adds hyperopt's ``status`` and ``loss``); ``JobResult`` reads it back."""

    status: str  # train()'s: ok | diverged | stopped
    seed: int | None
    epochs_run: int
    best_val_acc: float
    best_epoch: int  # 0 when no epoch finished
    test_acc: float | None  # a test job's
    test_loss: float | None
    n_params: int
    seconds: float  # of training, this segment
    reason: str | None  # why it diverged
    resumed_from: int  # the epoch of the snapshot the run continued from
    peak_rss_mb: float | None  # the trainer's
    peak_gpu_mb: float | None
    device: str  # the worker's label
    rung_scores: dict[str, float]  # ASHA: best validation accuracy up to each rung epoch
    checkpoint_bytes: int  # a retrain's


class Point(TypedDict, total=False):
    """One epoch of a learning curve, as workers/train.py records it and trials/curves.py
    stores it (``epoch`` and ``val_acc`` are always there)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float  # of training and validation, this epoch
    at: float  # when it was measured (the worker's clock)


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
    # what the driver last published (trials/summary_doc.py); empty until its first publish
    summary: Summary = field(default_factory=Summary)
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
            summary=cast(Summary, MappingProxyType(dict(g("summary") or {}))),
            settled=bool(g("settled", False)),
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


@dataclass(frozen=True, slots=True)
class Comparison:
    """A comparison (trials/comparisons.py): its request, shared by every variant's study, and
    the study each variant runs as."""

    id: str
    name: str
    dataset: str
    variants: tuple[str, ...]  # the variants' names, in the request's order
    budget: StudyBudget
    scheduler: Schedule
    trial_epochs: int
    retrain_epochs: int
    retrain_seeds: int
    seed: int
    parallelism: int
    created: float
    studies: Mapping[str, str]  # variant name -> study id
    made: frozenset[str]  # the study ids created so far
    # the request as the API accepted it (JSON): what its studies are planned from again
    request: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unmade(self) -> list[tuple[str, str]]:
        """(variant, study id) of the studies not created yet (a kill between the writes)."""
        return [(n, sid) for n, sid in self.studies.items() if sid not in self.made]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Comparison:
        req = doc["request"]
        return cls(
            id=str(doc["_id"]), name=str(req["name"]), dataset=str(req["dataset"]),
            variants=tuple(v if isinstance(v, str) else str(v["name"]) for v in req["variants"]),
            budget=StudyBudget.from_doc(req["budget"]) or StudyBudget(),
            scheduler=Schedule.from_doc(req.get("scheduler")),
            trial_epochs=int(req["trial_epochs"]), retrain_epochs=int(req["retrain_epochs"]),
            retrain_seeds=int(req["retrain_seeds"]), seed=int(req["seed"]),
            parallelism=int(req["parallelism"]), created=float(doc["created"]),
            studies=MappingProxyType(dict(doc["studies"])),
            made=frozenset(doc.get("made") or ()), request=MappingProxyType(dict(req)))


# -- jobs ------------------------------------------------------------------------------------------
_STATES = {int(s): s for s in JobState}
_OUTCOMES = {o.value: o for o in Outcome}
_KINDS = {k.value: k for k in JobKind}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _Wrapper:
    """A read-only record over one document (compared by the document)."""

    __slots__ = ("_doc",)
    _doc: Mapping[str, Any]

    def __init__(self, doc: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_doc", doc)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._doc == self._doc  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self._doc)!r})"


class JobResult(_Wrapper):
    """What a job's last report holds (workers/train.py's TrainResult, plus a test's numbers
    and ASHA's rung scores); every field is None (or 0) until it reported."""

    __slots__ = ()

    def _num(self, key: str) -> float | None:
        v = self._doc.get(key)
        return None if v is None else float(v)

    @property
    def status(self) -> str | None:
        """hyperopt's status: ``ok`` once it reported a score (``new`` before, ``fail``)."""
        return self._doc.get("status")

    @property
    def best_val_acc(self) -> float | None:
        return self._num("best_val_acc")

    @property
    def best_epoch(self) -> int | None:
        return self._doc.get("best_epoch")

    @property
    def epochs_run(self) -> int | None:
        """The epochs trained when it last reported (``JobRecord.trained``: 0 before that)."""
        v = self._doc.get("epochs_run")
        return None if v is None else int(v)

    @property
    def resumed_from(self) -> int:
        return int(self._doc.get("resumed_from") or 0)

    @property
    def seconds(self) -> float | None:
        """Seconds of training (of the segment since ``resumed_from``)."""
        return self._num("seconds")

    @property
    def rung_scores(self) -> Mapping[str, float]:
        """Best validation accuracy up to each rung epoch reached (keys: epochs as strings)."""
        return self._doc.get("rung_scores") or _EMPTY

    @property
    def test_acc(self) -> float | None:
        return self._num("test_acc")

    @property
    def test_loss(self) -> float | None:
        return self._num("test_loss")

    @property
    def loss(self) -> float | None:
        return self._num("loss")

    @property
    def n_params(self) -> int | None:
        return self._doc.get("n_params")

    @property
    def peak_rss_mb(self) -> float | None:
        return self._num("peak_rss_mb")

    @property
    def peak_gpu_mb(self) -> float | None:
        return self._num("peak_gpu_mb")


class JobHistory(_Wrapper):
    """What the fleet did with a job (``JobRecord.history``): its reservations, owners,
    retries after infrastructure failures, where it failed, and its ASHA promotions."""

    __slots__ = ()

    @property
    def error_at(self) -> str | None:
        return self._doc.get("error_at")

    @property
    def failure_class(self) -> str | None:
        return self._doc.get("failure_class")

    @property
    def failures(self) -> Mapping[str, int]:
        """Infrastructure failures it was retried after, by kind (lost, stalled, oom, ...)."""
        return self._doc.get("failures") or _EMPTY

    @property
    def promotions(self) -> int:
        return int(self._doc.get("promotions") or 0)

    @property
    def retries(self) -> int:
        return int(self._doc.get("retries") or 0)

    @property
    def attempt(self) -> int:
        return int(self._doc.get("attempt") or 0)

    @property
    def owner(self) -> str | None:
        return self._doc.get("owner")

    @property
    def previous_owners(self) -> list[str]:
        return [str(o) for o in self._doc.get("previous_owners") or () if o is not None]

    @property
    def book_time(self) -> float | None:
        return self._doc.get("book_time")


class JobRecord(_Wrapper):
    """One job of a study (a search trial, a retrain or a test) as the store holds it."""

    __slots__ = ()

    # -- identity and what it trains --------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self._doc["_id"])

    @property
    def tid(self) -> int:
        return int(self._doc["tid"])

    @property
    def kind(self) -> JobKind:
        return _KINDS[self._doc.get("kind") or "trial"]

    @property
    def params(self) -> Mapping[str, Any]:
        return self._doc.get("params") or _EMPTY

    @property
    def seed(self) -> int | None:
        """The seed its parameters train with (None when they name none)."""
        seed = self.params.get("seed")
        return None if seed is None else int(seed)

    @property
    def epochs(self) -> int:
        return int(self._doc.get("epochs") or 0)

    @property
    def limit(self) -> int | None:
        """ASHA: the rung epoch it trains to before it pauses (None: to ``epochs``)."""
        return self._doc.get("limit")

    @property
    def bracket(self) -> int:
        return int(self._doc.get("bracket") or 0)

    @property
    def source(self) -> str | None:
        """A retrain: the id of the trial it retrains; a test: the retrain it tests."""
        return self._doc.get("source")

    @property
    def seed_of(self) -> str | None:
        """A seed run of the winner: the winner's job id."""
        return self._doc.get("seed_of")

    # -- where it is --------------------------------------------------------------------------------
    @property
    def state(self) -> JobState:
        return _STATES[self._doc["state"]]

    @property
    def outcome(self) -> Outcome | None:
        o = self._doc.get("outcome")
        return None if o is None else _OUTCOMES[o]

    @property
    def result(self) -> JobResult:
        return JobResult(self._doc.get("result") or _EMPTY)

    @property
    def error(self) -> str | None:
        return self._doc.get("error")

    @property
    def history(self) -> JobHistory:
        """What the fleet did with it: attempts, owners, retries, failures, promotions."""
        return JobHistory(self._doc)

    @property
    def refresh_time(self) -> float | None:
        """Server time of its last state change by a worker (its last report)."""
        return self._doc.get("refresh_time")

    @property
    def checkpoint(self) -> Any:
        """The GridFS id of its final weights (None until a retrain finished)."""
        return self._doc.get("checkpoint")

    # -- derived facts, defined once ------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Queued or running."""
        return self._doc["state"] in _ACTIVE

    @property
    def paused(self) -> bool:
        """ASHA: waiting at a rung to be promoted."""
        return self._doc.get("outcome") == "paused"

    @property
    def trained(self) -> int:
        """The epochs it has reported training (its last result's ``epochs_run``)."""
        return int((self._doc.get("result") or _EMPTY).get("epochs_run") or 0)

    @property
    def target(self) -> int:
        """The epoch it trains to when queued or running."""
        return int(self._doc.get("limit") or self._doc["epochs"])

    @property
    def raised(self) -> bool:
        """It ended on an error message: state error, or infeasible (the model raised for its
        parameters)."""
        return self._doc["state"] == JobState.ERROR or self._doc.get("outcome") == "infeasible"

    @property
    def rankable(self) -> bool:
        """A search trial that may be retrained: done, and not infeasible (it has no score)."""
        return self._doc["state"] == JobState.DONE and self._doc.get("outcome") != "infeasible"

    @property
    def reportable(self) -> bool:
        """A trial the summary may name best: a rankable one, or one a cancel cut short after
        it trained (a cancelled study keeps what it found)."""
        return self.rankable or (self._doc["state"] == JobState.CANCELLED and self.trained > 0)


def hyperopt_doc(job: JobRecord) -> Mapping[str, Any]:
    """The job's document in hyperopt's trial format, for hyperopt's own code (TPE reads it;
    trials/mongo_trials.py)."""
    return job._doc


def observed(job: JobRecord, loss: float) -> HyperoptDoc:
    """The job's hyperopt document as TPE should see it: done, with ``loss`` (the view that
    service/orchestrator/suggest.py builds of each trial at the modelled rung)."""
    doc = job._doc
    return {**doc, "state": int(JobState.DONE),
            "result": {**(doc.get("result") or {}), "status": "ok", "loss": loss}}


_ACTIVE = (int(JobState.NEW), int(JobState.RUNNING))


class Curve(_Wrapper):
    """A job's learning curve as trials/curves.py stores it: its points keyed by epoch."""

    __slots__ = ()

    @property
    def id(self) -> str:
        """The job's id (a curve is stored under its job's)."""
        return str(self._doc["_id"])

    @property
    def tid(self) -> int:
        return int(self._doc["tid"])

    @property
    def updated(self) -> float:
        """Server time of its last write: the cursor ``GET /studies/ID/curves`` pages by."""
        return float(self._doc["updated"])

    def points(self, since_epoch: int = 0, up_to_epoch: int | None = None) -> list[Point]:
        """Its points, sorted by epoch, optionally cut to a window."""
        pts = [p for p in (self._doc.get("points") or _EMPTY).values()
               if p["epoch"] > since_epoch and (up_to_epoch is None or p["epoch"] <= up_to_epoch)]
        return sorted(pts, key=lambda p: p["epoch"])
