"""Comparisons: model families and SRU ablations tuned at one budget, then evaluated over seeds.

``POST /comparisons`` takes a ``ComparisonCreate``. ``plan`` turns it into one ``StudyCreate``
per variant, every one with the **same** budget, ``trial_epochs``, scheduler, data split, seed,
``retrain_epochs`` and ``retrain_seeds``: only the model and the space differ. The studies run
at once, each with ``ceil(parallelism / variants)`` trials in flight and none queued ahead
(``queue_ahead: 0``: a study's second queued trial would sit before the next variant's first);
workers take jobs oldest first (trials/jobs.py ``RESERVE_ORDER``), so the variants' trials
alternate on the fleet and no variant gets it first. A worker that finishes still finds work
waiting: the other variants' queued trials. ``GET /comparisons/ID`` reads the studies' summaries: one row per
variant (``ComparisonRow``).

The comparison document holds only the request and the study ids (trials/comparisons.py);
``ensure_studies`` creates the studies a killed service had not created yet.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from search_spaces.params import ModelName
from search_spaces.schema import SpaceError
from search_spaces.variants import VARIANTS, unknown_variant, variant_space
from service.studies.schemas import (
    Budget,
    ComparisonList,
    ComparisonPublic,
    ComparisonRow,
    InlineSpace,
    JsonObject,
    Scheduler,
    StudyCreate,
    check_depth,
)
from service.studies.views import study_public
from trials.records import Comparison
from trials.states import StudyState
from trials.store import Store

__all__ = ["ComparisonCreate", "ComparisonPublic", "ComparisonRow", "ComparisonList",
           "VariantIn", "plan", "create", "ensure_studies", "public", "delete"]


class VariantIn(BaseModel):
    """A variant written out: a name, a model and its space (built-in name or inline)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=64)
    model: ModelName
    space: str | InlineSpace


class ComparisonCreate(BaseModel):
    """POST /comparisons body. A variant is a name (sru, gru, lstm, sru-iid, sru-recur,
    sru-multi: the model's built-in space for the dataset, ablations with parameters fixed) or
    ``{name, model, space}``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=200)
    dataset: Literal["mnist", "pmnist", "digits"]
    variants: list[str | VariantIn] = Field(min_length=2, max_length=12,
                                            examples=[["sru", "gru", "lstm", "sru-iid"]])
    budget: Budget = Field(description="the search budget of each variant")
    trial_epochs: int = Field(50, ge=1, le=10_000)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    retrain_epochs: int = Field(200, ge=1, le=100_000)
    retrain_seeds: int = Field(3, ge=1, le=10, description="seeds the winner of each variant is "
                               "retrained and tested with")
    retrain_top_k: int = Field(1, ge=1, le=10)
    seed: int = Field(0, ge=0, lt=2**31)
    algorithm: Literal["tpe", "random"] = "tpe"
    n_trials: int | None = Field(None, ge=1, le=100_000, description="an optional cap on "
                                 "configurations per variant (the budget ends the search)")
    parallelism: int = Field(4, ge=1, le=256, description="trials in flight over all variants "
                             "(≈ workers), shared equally")

    @model_validator(mode="before")
    @classmethod
    def _shallow(cls, data: Any) -> Any:
        check_depth(data, "comparison")
        return data

    @model_validator(mode="after")
    def _variants(self) -> ComparisonCreate:
        names = [v if isinstance(v, str) else v.name for v in self.variants]
        for i, v in enumerate(self.variants):
            if isinstance(v, str) and v not in VARIANTS:
                raise ValueError(f"variants.{i}: {unknown_variant(v)}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variants: {', '.join(dup)} named more than once")
        self._studies = plan(self)  # each variant's study must validate: its error names it
        return self

    _studies: list[tuple[str, StudyCreate]] = PrivateAttr(default_factory=list)

    def names(self) -> list[str]:
        return [v if isinstance(v, str) else v.name for v in self.variants]

    def studies(self) -> list[tuple[str, StudyCreate]]:
        """(variant name, its study), as validation planned them (``plan``)."""
        return self._studies


def _study_body(c: ComparisonCreate, variant: str | VariantIn, n: int) -> JsonObject:
    """The study of ``variant`` as a POST /studies body (``plan`` validates it)."""
    space: str | JsonObject
    if isinstance(variant, str):
        spec = variant_space(variant, c.dataset)
        name, model, space = variant, spec.model, spec.model_dump(exclude_none=True)
    else:
        name, model = variant.name, variant.model
        space = variant.space if isinstance(variant.space, str) \
            else variant.space.model_dump(exclude_none=True)
    return {"name": f"{c.name} / {name}", "model": model, "dataset": c.dataset, "space": space,
            "algorithm": c.algorithm, "n_trials": c.n_trials,
            "budget": c.budget.model_dump(exclude_none=True),
            "parallelism": max(1, math.ceil(c.parallelism / n)),
            "queue_ahead": 0,  # the other variants' trials are the queue ahead (module docstring)
            "trial_epochs": c.trial_epochs, "retrain_epochs": c.retrain_epochs,
            "retrain_seeds": c.retrain_seeds, "retrain_top_k": c.retrain_top_k,
            "seed": c.seed, "scheduler": c.scheduler.model_dump()}


def plan(c: ComparisonCreate) -> list[tuple[str, StudyCreate]]:
    """(variant name, its study) for every variant, in the request's order. A study that does
    not validate is reported at the comparison's own field when the field is shared (the
    budget, the scheduler: every variant would fail alike), else at ``variants.N``."""
    out = []
    for i, v in enumerate(c.variants):
        name = v if isinstance(v, str) else v.name
        try:
            out.append((name, StudyCreate.model_validate(_study_body(c, v, len(c.variants)))))
        except ValidationError as exc:
            e = exc.errors(include_url=False)[0]
            where = ".".join(str(x) for x in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            if not e["loc"] or e["loc"][0] in SHARED:
                raise ValueError(f"{where + ': ' if where else ''}{msg}") from None
            raise ValueError(f"variants.{i}: {name}: {where}: {msg}") from None
        except SpaceError as exc:
            raise ValueError(f"variants.{i}: {name}: {exc}") from None
    return out


SHARED = ("budget", "trial_epochs", "scheduler", "retrain_epochs", "retrain_seeds",
          "retrain_top_k", "seed", "algorithm", "n_trials", "parallelism", "dataset")


# -- the store's side --------------------------------------------------------------------------------
def create(store: Store, c: ComparisonCreate) -> tuple[Comparison, list[str]]:
    """Write the comparison, then its studies. Returns (the comparison, the study ids
    created)."""
    cid = uuid.uuid4().hex[:12]
    studies = {name: uuid.uuid4().hex[:12] for name in c.names()}
    comparison = store.comparisons.create(cid, c.model_dump(mode="json"), studies)
    return comparison, ensure_studies(store, comparison)


def ensure_studies(store: Store, comparison: Comparison) -> list[str]:
    """Create the studies of ``comparison`` not made yet (all of them at first; after a kill
    between the writes, the rest). Returns the ids created."""
    todo = comparison.unmade
    if not todo:
        return []
    bodies = dict(ComparisonCreate.model_validate(dict(comparison.request)).studies())
    made = []
    for name, sid in todo:  # one created just before a kill, or by another service: skipped
        if store.studies.create_once(sid, bodies[name].stored(comparison.id)):
            made.append(sid)
        store.comparisons.mark_made(comparison.id, sid)
    return made


def delete(store: Store, cid: str) -> bool:
    comparison = store.comparisons.get(cid)
    if comparison is None or not store.comparisons.mark_deleted(cid):
        return False
    finish_deletion(store, comparison)
    return True


def finish_deletion(store: Store, comparison: Comparison) -> None:
    for sid in comparison.studies.values():
        store.delete_study(sid)
    store.comparisons.remove(comparison.id)


# -- what readers are told ----------------------------------------------------------------------------
def _row(store: Store, variant: str, sid: str, now: float) -> ComparisonRow:
    study = store.studies.get(sid)
    if study is None:
        return ComparisonRow(variant=variant, study_id=sid, model="?", state="deleted")
    s = study_public(study, now)
    return ComparisonRow(
        variant=variant, study_id=sid, model=s.model, state=s.state.value,
        best_val_acc=s.best.best_val_acc if s.best else None, test_acc=s.test_acc,
        test_acc_sd=s.test_acc_sd, tests=s.tests, test_drop=s.test_drop, n_params=s.n_params,
        epochs_spent=s.epochs_spent, trial_hours=s.trial_hours, epochs_to_95=s.epochs_to_95,
        trials=s.counts.finished, anytime=s.anytime)


def _state(rows: list[ComparisonRow]) -> str:
    states = [r.state for r in rows]
    if any(StudyState(s).active for s in states if s != "deleted"):
        return "running"
    if all(s == StudyState.COMPLETED.value for s in states):
        return "completed"
    return next(s for s in states if s != StudyState.COMPLETED.value)


def public(store: Store, c: Comparison) -> ComparisonPublic:
    now = store.clock.now()
    rows = [_row(store, n, c.studies[n], now) for n in c.variants]
    spent = [r.epochs_spent for r in rows if r.state != "deleted"]
    budget = {k: v for k, v in asdict(c.budget).items() if v is not None}
    return ComparisonPublic(
        id=c.id, name=c.name, dataset=c.dataset, state=_state(rows), variants=list(c.variants),
        budget=Budget(**budget), trial_epochs=c.trial_epochs,
        scheduler=Scheduler(**asdict(c.scheduler)), retrain_epochs=c.retrain_epochs,
        retrain_seeds=c.retrain_seeds, seed=c.seed, parallelism=c.parallelism,
        created=c.created, epochs_spread=max(spent) - min(spent) if spent else 0, rows=rows)
