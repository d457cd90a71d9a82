"""Typed request and response models, one per direction (``StudyCreate`` in, ``StudyPublic`` out)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from search_spaces.schema import BUILTIN, SpaceError, SpaceSpec, load_builtin, point_to_vals

__all__ = [
    "Pruning", "StudyCreate", "StudyPublic", "StudyList", "Counts", "TrialPublic", "TrialList",
    "CurvePoint", "TrialCurve", "RetrainPublic", "WorkerPublic", "Health", "CancelResult",
    "resolve_space",
]

StudyState = Literal["queued", "running", "retraining", "completed", "cancelled", "failed"]


def resolve_space(space: str | dict[str, Any], model: str | None) -> SpaceSpec:
    """A built-in name or an inline space -> SpaceSpec; ValueError with the parameter named."""
    if isinstance(space, str):
        if space not in BUILTIN:
            raise ValueError(f"unknown built-in space {space!r}; one of {', '.join(BUILTIN)} "
                             "or an inline space")
        spec = load_builtin(space)
    else:
        try:
            spec = SpaceSpec.model_validate(space)
        except SpaceError as exc:
            raise ValueError(str(exc)) from None
        except Exception as exc:  # pydantic ValidationError of the space's own fields
            errs = getattr(exc, "errors", None)
            if errs is None:
                raise
            first = errs()[0]
            where = ".".join(str(x) for x in first["loc"]) or "space"
            raise ValueError(f"{where}: {first['msg']}") from None
    if model is not None and spec.model != model:
        raise ValueError(f"space is for model {spec.model!r} but the study trains {model!r}")
    _check_samples(spec)
    return spec


def _check_samples(spec: SpaceSpec) -> None:
    """Run the workers' own parameter checks on points the space can produce, so a range that
    yields impossible values (dropout 1.0, lr_decay > 1) is a 422 now, not a failed trial later."""
    from search_spaces.schema import sample_params
    from workers.models import model_args
    from workers.train import resolve_params

    for params in sample_params(spec, n=16):
        try:
            resolve_params({**params, "model": spec.model})
            model_args({**params, "model": spec.model, "input_size": 1, "n_classes": 10})
        except ValueError as exc:
            raise ValueError(f"{exc} (a value this space can produce)") from None


class Pruning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: Literal["off", "median"] = "off"
    warmup: int = Field(5, ge=0, description="epochs before a trial may be pruned")
    min_trials: int = Field(3, ge=1, description="finished trials needed to compare with")


class StudyCreate(BaseModel):
    """POST /studies body."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    model: Literal["sru", "gru", "lstm"]
    dataset: Literal["mnist", "pmnist", "digits"]
    space: str | dict[str, Any] = Field(description="built-in space name or an inline space")
    algorithm: Literal["tpe", "random"] = "tpe"
    n_trials: int = Field(30, ge=1, le=100_000)
    parallelism: int = Field(4, ge=1, le=1024, description="trials queued or running at once")
    trial_epochs: int = Field(50, ge=1, le=10_000)
    retrain_epochs: int = Field(200, ge=1, le=100_000)
    seed: int = Field(0, ge=0, lt=2**31)
    pruning: Pruning = Field(default_factory=Pruning)
    warm_start: list[dict[str, Any]] = Field(default_factory=list, max_length=1000,
                                             description="configurations evaluated first")

    @field_validator("space")
    @classmethod
    def _space(cls, v: str | dict[str, Any], info: ValidationInfo) -> str | dict[str, Any]:
        spec = resolve_space(v, info.data.get("model"))
        return spec.model_dump()

    @field_validator("warm_start")
    @classmethod
    def _warm(cls, v: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        space = info.data.get("space")
        if not isinstance(space, dict):  # the space itself failed; that error is reported
            return v
        spec = SpaceSpec.model_validate(space)
        for i, point in enumerate(v):
            try:
                point_to_vals(spec, point)
            except SpaceError as exc:
                raise ValueError(f"point {i}: {exc}") from None
        if len(v) > info.data.get("n_trials", len(v)):
            raise ValueError("more warm-start points than n_trials")
        return v


class Counts(BaseModel):
    new: int = 0
    running: int = 0
    done: int = 0
    error: int = 0
    cancelled: int = 0
    pruned: int = 0
    diverged: int = 0
    finished: int = Field(0, description="done + error: what counts toward n_trials")


class TrialPublic(BaseModel):
    tid: int
    kind: str
    state: str
    outcome: str | None = None
    params: dict[str, Any]
    epochs: int
    best_val_acc: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    test_acc: float | None = None
    loss: float | None = None
    retries: int = 0
    previous_owners: list[str] = Field(default_factory=list)
    owner: str | None = None
    book_time: float | None = None
    refresh_time: float | None = None
    seconds: float | None = None
    error: str | None = None
    curve: list[dict[str, Any]] | None = None


class TrialList(BaseModel):
    total: int
    offset: int
    limit: int
    trials: list[TrialPublic]


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


class TrialCurve(BaseModel):
    tid: int
    kind: str
    state: str
    outcome: str | None = None
    points: list[CurvePoint]


class RetrainPublic(BaseModel):
    state: str = Field(description="pending until the search ends, then the retrain job's state")
    tid: int | None = None
    params: dict[str, Any] | None = None
    epochs: int
    best_val_acc: float | None = None
    best_epoch: int | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    checkpoint: bool = False
    curve: list[CurvePoint] = Field(default_factory=list)


class StudyPublic(BaseModel):
    id: str
    name: str
    model: str
    dataset: str
    algorithm: str
    space: dict[str, Any]
    n_trials: int
    parallelism: int
    trial_epochs: int
    retrain_epochs: int
    seed: int
    pruning: Pruning
    warm_start: list[dict[str, Any]]
    state: StudyState
    counts: Counts
    best: TrialPublic | None = None
    retrain_state: str = "pending"
    test_acc: float | None = None
    created: float
    started: float | None = None
    search_finished: float | None = None
    finished: float | None = None
    elapsed: float = Field(description="seconds from creation to finish (or now)")
    error: str | None = None


class StudyList(BaseModel):
    studies: list[StudyPublic]


class WorkerPublic(BaseModel):
    id: str
    host: str
    pid: int
    device: str
    job: dict[str, Any] | None = None
    jobs_done: int = 0
    started: float
    last_seen: float


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    studies_driven: int


class CancelResult(BaseModel):
    id: str
    state: StudyState
    queued_cancelled: int
    running_stopping: int
