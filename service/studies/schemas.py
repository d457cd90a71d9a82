"""Typed request and response models, one per direction (``StudyCreate`` in, ``StudyPublic`` out).

Floats in requests must be finite (``allow_inf_nan=False``), so no response ever carries NaN or
Infinity. The limits that depend on settings (``n_trials``, ``parallelism``) are checked in the
route with the same 422 shape.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from search_spaces.params import DatasetName, ModelName, Params
from search_spaces.schema import (
    BUILTIN,
    SpaceError,
    SpaceSpec,
    load_builtin,
    point_to_vals,
    unknown_space,
)
from trials.states import StudyState

__all__ = [
    "Pruning", "StudyCreate", "StudyPublic", "StudyList", "Counts", "TrialPublic", "TrialList",
    "CurvePoint", "TrialCurve", "CurvePage", "RetrainPublic", "WorkerPublic", "Health",
    "CancelResult", "ErrorGroup", "InlineSpace", "resolve_space", "MAX_BODY_DEPTH", "Problem",
    "FieldError", "JsonObject", "check_depth",
    "Scheduler", "Importance", "Budget", "RungFidelity", "EvaluationPublic",
    "ComparisonRow", "ComparisonPublic", "ComparisonList",
]

MAX_BODY_DEPTH = 32
BuiltinSpace = Literal[BUILTIN]  # type: ignore[valid-type]


class InlineSpace(BaseModel):
    """A search space written out: parameter name -> constant or distribution."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(None, max_length=200)
    model: ModelName
    description: str | None = Field(None, max_length=2000)
    params: dict[str, Any] = Field(min_length=1, examples=[{
        "phi_size": {"type": "quniform", "low": 64, "high": 256, "q": 16},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}])


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of plain JSON data, walked without recursion (stops past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def check_depth(data: Any, what: str) -> None:
    """A request body nested deeper than ``MAX_BODY_DEPTH`` is refused before anything else
    reads it."""
    if _depth(data, MAX_BODY_DEPTH) > MAX_BODY_DEPTH:
        raise ValueError(f"the {what} nests deeper than {MAX_BODY_DEPTH} levels")


def resolve_space(space: str | InlineSpace | dict[str, Any], model: str | None) -> SpaceSpec:
    """A built-in name or an inline space -> SpaceSpec. A SpaceError (a ValueError) lists every
    problem of an inline space at once, each naming its parameter."""
    if isinstance(space, str):
        spec = load_builtin(space)
    else:
        raw = space.model_dump(exclude_none=True) if isinstance(space, InlineSpace) else space
        try:
            spec = SpaceSpec.model_validate(raw)
        except ValidationError as exc:
            problems: list[str] = []
            for e in exc.errors(include_url=False, include_input=False):
                cause = (e.get("ctx") or {}).get("error")
                if isinstance(cause, SpaceError):
                    problems += cause.problems
                else:  # the space's own fields (model, params)
                    where = ".".join(str(x) for x in e["loc"]) or "space"
                    problems.append(f"{where}: {e['msg']}")
            raise SpaceError(*problems) from None
    if model is not None and spec.model != model:
        raise SpaceError(f"model: the space is for model {spec.model!r} but the study trains "
                         f"{model!r}")
    return spec


class Scheduler(BaseModel):
    """How trials are stopped early: ``off``; ``median`` (stop a trial below the median of
    finished ones); ``asha`` (promotion-based successive halving: pause at rungs
    min_epochs·reduction^k, resume when promoted); ``hyperband`` (several ASHA brackets)."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["off", "median", "asha", "hyperband"] = "off"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``scheduler: asha`` is ``scheduler: {rule: asha}`` with the defaults."""
        return {"rule": data} if isinstance(data, str) else data

    warmup: int = Field(5, ge=0, le=100_000, description="median: epochs before a trial may be pruned")
    min_trials: int = Field(3, ge=1, le=100_000, description="median: finished trials to compare with")
    min_epochs: int = Field(5, ge=1, le=100_000, description="asha/hyperband: the first rung")
    reduction: int = Field(3, ge=2, le=100, description="asha/hyperband: η, keep the top 1/η")


Pruning = Scheduler  # the old name of the field's type


class Budget(BaseModel):
    """The compute a study may spend on its search: training epochs of search trials, or their
    training hours. Give one."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    epochs: int | None = Field(None, ge=1, le=100_000_000, description="epochs of search trials")
    hours: float | None = Field(None, gt=0, le=1_000_000,
                                description="training hours of search trials")

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.epochs is None) == (self.hours is None):
            raise ValueError("give epochs or hours")
        return self


class StudyCreate(BaseModel):
    """POST /studies body."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    model: ModelName
    dataset: DatasetName
    space: BuiltinSpace | InlineSpace = Field(  # type: ignore[valid-type]
        description="a built-in space's name, or an inline space")
    algorithm: Literal["tpe", "random"] = "tpe"
    n_trials: int | None = Field(None, ge=1, description="configurations to try, at most "
                                 "SRU_HPO_MAX_TRIALS (default 10,000); give n_trials, a budget "
                                 "or both (the search ends at whichever comes first)")
    budget: Budget | None = Field(None, description="compute the search may spend")
    parallelism: int = Field(4, ge=1, description="trials running at once (≈ workers); at most "
                             "SRU_HPO_MAX_PARALLELISM (default 256)")
    queue_ahead: int = Field(1, ge=0, le=256, description="configurations kept queued beyond "
                             "parallelism, so a worker that finishes never waits for the driver")
    random_fraction: float | None = Field(None, ge=0, le=1, description="share of TPE's "
                                          "suggestions drawn at random (BOHB's ρ; default 1/3 "
                                          "with asha/hyperband, 0 otherwise)")
    trial_epochs: int = Field(50, ge=1, le=10_000)
    retrain_epochs: int = Field(200, ge=1, le=100_000)
    seed: int = Field(0, ge=0, lt=2**31)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    warm_start: list[Params] = Field(default_factory=list, max_length=1000,
                                             description="configurations evaluated first")
    trial_timeout: float | None = Field(None, gt=0, le=30 * 86400, description="seconds of "
                                        "training after which a trial ends as timeout "
                                        "(never retried; TPE sees what it reached)")
    retrain_top_k: int = Field(1, ge=1, le=10, description="retrain the k best configurations "
                               "(in parallel when workers allow), keep the best on validation, "
                               "and evaluate only that one on the test set")
    retrain_seeds: int = Field(1, ge=1, le=10, description="retrain the winner with this many "
                               "seeds (seed, seed+1, ...) and test each once: the study's "
                               "test_acc is their mean, with test_acc_sd beside it")

    @model_validator(mode="before")
    @classmethod
    def _shallow(cls, data: Any) -> Any:
        check_depth(data, "study")
        if isinstance(data, dict) and "pruning" in data:  # the field's old name
            if "scheduler" in data:
                raise ValueError("give scheduler or pruning (its old name), not both")
            data = {**data, "scheduler": data["pruning"]}
            del data["pruning"]
        return data

    @model_validator(mode="after")
    def _sized(self) -> StudyCreate:
        if self.n_trials is None and self.budget is None:
            raise ValueError("n_trials: give n_trials, a budget ({epochs: N} or {hours: H}), "
                             "or both")
        if self.budget is not None and self.budget.epochs is not None \
                and self.budget.epochs < self.trial_epochs:
            raise ValueError(f"budget.epochs: {self.budget.epochs} is less than trial_epochs "
                             f"({self.trial_epochs}), so no trial could reach the top; raise "
                             f"budget.epochs or lower trial_epochs")
        return self

    @model_validator(mode="after")
    def _rungs(self) -> StudyCreate:
        s = self.scheduler
        if s.rule in ("asha", "hyperband") and s.min_epochs * s.reduction > self.trial_epochs:
            raise ValueError(
                f"scheduler.min_epochs: {s.min_epochs} × reduction {s.reduction} = "
                f"{s.min_epochs * s.reduction} must be ≤ trial_epochs ({self.trial_epochs}): a "
                f"rung above trial_epochs / reduction saves less than 1 − 1/reduction of a run; "
                f"lower min_epochs or reduction, or raise trial_epochs")
        return self

    @field_validator("space", mode="before")
    @classmethod
    def _space_name(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in BUILTIN:
            raise unknown_space(v)
        return v

    @field_validator("space")
    @classmethod
    def _space(cls, v: str | InlineSpace, info: ValidationInfo) -> str | InlineSpace:
        resolve_space(v, info.data.get("model"))
        return v

    @field_validator("warm_start")
    @classmethod
    def _warm(cls, v: list[Params], info: ValidationInfo) -> list[Params]:
        space = info.data.get("space")
        if space is None:  # the space itself failed; that error is reported
            return v
        spec = resolve_space(space, None)
        for i, point in enumerate(v):
            try:
                point_to_vals(spec, point)
            except SpaceError as exc:
                raise ValueError(f"point {i}: {exc}") from None
        if len(v) > (info.data.get("n_trials") or len(v)):
            raise ValueError("more warm-start points than n_trials")
        return v

    def spec(self) -> SpaceSpec:
        return resolve_space(self.space, self.model)

    def stored(self, comparison: str | None = None) -> dict[str, Any]:
        """The settings as the store keeps them: the space resolved (a built-in may change
        later), and the comparison the study is a variant of."""
        return {**self.model_dump(), "space": self.spec().model_dump(), "comparison": comparison}


#: A request body as a user wrote it (a study or comparison file, read as YAML/JSON), not yet
#: validated: the client sends it as it is, so that the API's 422 names the field and the reason.
JsonObject = dict[str, Any]


class Problem(BaseModel):
    """An error: ``detail`` says what went wrong."""

    detail: str


class FieldError(TypedDict):
    """One entry of a 422's ``detail``: the field's path and the reason in words
    (service/api/messages.py writes them; the CLI prints them, one per line)."""

    type: str | None  # pydantic's error type
    loc: list[str | int]  # "body", then the field's path
    msg: str


class Counts(BaseModel):
    new: int = 0
    running: int = 0
    done: int = 0
    error: int = 0
    cancelled: int = 0
    pruned: int = 0
    diverged: int = 0
    infeasible: int = 0
    timeout: int = 0
    stopped_at_rung: int = 0
    paused: int = 0
    finished: int = Field(0, description="done + error: what counts toward n_trials")


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


class TrialPublic(BaseModel):
    tid: int
    kind: str
    state: str
    outcome: str | None = None
    rung: int | None = Field(None, description="ASHA: the rung epoch it is paused at or "
                             "promoted to")
    bracket: int | None = None
    promotions: int = 0
    params: Params
    epochs: int
    best_val_acc: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    test_acc: float | None = None
    loss: float | None = None
    retries: int = 0
    attempt: int = 0
    previous_owners: list[str] = Field(default_factory=list)
    owner: str | None = None
    book_time: float | None = None
    refresh_time: float | None = None
    seconds: float | None = None
    error: str | None = None
    error_at: str | None = None
    failure_class: str | None = Field(None, description="infrastructure | configuration, "
                                      "when the trial ended failed")
    failures: dict[str, int] = Field(default_factory=dict, description="infrastructure "
                                     "failures it was retried after, by kind")
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None
    curve: list[CurvePoint] | None = None


class TrialList(BaseModel):
    total: int
    offset: int
    limit: int
    trials: list[TrialPublic]


class TrialCurve(BaseModel):
    tid: int
    kind: str
    state: str
    outcome: str | None = None
    points: list[CurvePoint]


class CurvePage(BaseModel):
    cursor: float = Field(description="pass as updated_after to get only what changed since")
    more: bool = Field(description="more changed curves than limit: ask again with the cursor")
    curves: list[TrialCurve]


class RetrainCandidate(BaseModel):
    tid: int
    source_tid: int | None = Field(None, description="the search trial it retrains")
    state: str
    best_val_acc: float | None = None


class EvaluationPublic(BaseModel):
    """One test-set evaluation: which seed, which retrain's checkpoint, when, what it measured."""

    seed: int
    retrain_tid: int = Field(description="the retrain whose checkpoint was tested "
                             "(GET /studies/ID/checkpoint?tid=N)")
    test_tid: int = Field(description="the test job: the log of this evaluation")
    state: str
    val_acc: float | None = Field(None, description="the retrain's best validation accuracy")
    test_acc: float | None = None
    test_loss: float | None = None
    at: float | None = Field(None, description="server time the evaluation reported")


class RetrainPublic(BaseModel):
    state: str = Field(description="pending until the search ends, then the state of the "
                       "chosen retrain's test evaluation (or of the retrains while they run)")
    candidates: list[RetrainCandidate] = Field(
        default_factory=list, description="every retrain (retrain_top_k); the chosen one has "
        "the best validation accuracy and is the only one tested")
    tid: int | None = None
    params: Params | None = None
    epochs: int
    best_val_acc: float | None = None
    best_epoch: int | None = None
    test_acc: float | None = Field(None, description="the mean over the seeds tested")
    test_acc_sd: float | None = Field(None, description="sample sd over the seeds (≥ 2)")
    test_loss: float | None = None
    seeds: int = Field(1, description="retrain_seeds: seed runs of the winner")
    evaluations: list[EvaluationPublic] = Field(
        default_factory=list, description="every test-set evaluation, one per seed run")
    checkpoint: bool = False
    curve: list[CurvePoint] = Field(default_factory=list)


class ErrorGroup(BaseModel):
    error: str
    count: int
    tids: list[int] = Field(description="the first trials it hit")


class BestTrial(BaseModel):
    tid: int
    best_val_acc: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    outcome: str | None = None
    params: Params = Field(default_factory=dict)
    peak_rss_mb: float | None = Field(None, description="the trainer's peak resident memory "
                                      "while it trained this configuration (MiB)")
    peak_gpu_mb: float | None = Field(None, description="torch.cuda.max_memory_allocated "
                                      "while it trained (MiB; None on CPU)")


class Failures(BaseModel):
    """Failures by class: infrastructure ones are retried, configuration ones never."""

    infrastructure: int = Field(0, description="runs lost to the fleet (each retry spent, and "
                                "the last of a job whose retries ran out)")
    configuration: int = Field(0, description="trials whose parameters failed: diverged, "
                               "infeasible, timeout")
    by_kind: dict[str, int] = Field(default_factory=dict, description="lost, stalled, crashed, "
                                    "oom, cuda; diverged, infeasible, timeout")


class RungFidelity(BaseModel):
    epoch: int = Field(description="the rung")
    pairs: int = Field(description="trials with a score at this rung and at the top")
    spearman: float | None = Field(None, description="rank correlation of the two scores "
                                   "(None below 3 pairs)")


class StudyPublic(BaseModel):
    id: str
    name: str
    model: str
    dataset: str
    algorithm: str
    space: str | InlineSpace = Field(description="the space, resolved (a built-in's name "
                                     "stands for its parameters)")
    n_trials: int | None = None
    budget: Budget | None = None
    queue_ahead: int = 1
    random_fraction: float | None = None
    parallelism: int
    trial_epochs: int
    retrain_epochs: int
    seed: int
    scheduler: Scheduler
    retrain_top_k: int = 1
    retrain_seeds: int = 1
    warm_start: list[Params]
    state: StudyState
    counts: Counts
    best: BestTrial | None = None
    retrain_state: str = "pending"
    test_acc: float | None = Field(None, description="test accuracy of the winner: the mean "
                                   "over its retrain_seeds seed runs")
    test_acc_sd: float | None = Field(None, description="sample sd over the seeds (≥ 2 tested)")
    tests: int = Field(0, description="test-set evaluations that reported")
    retrain_val_acc: float | None = Field(None, description="mean best validation accuracy of "
                                          "the tested seed runs")
    test_drop: float | None = Field(None, description="retrain_val_acc - test_acc")
    n_params: int | None = Field(None, description="parameters of the retrained winner")
    trial_hours: float = Field(0.0, description="training hours of the search trials")
    anytime: list[list[float]] = Field(default_factory=list, description="the search's anytime "
                                       "curve where it improved: [cumulative epochs, best "
                                       "validation accuracy so far]")
    epochs_to_95: int | None = Field(None, description="epochs the search took to reach 95% "
                                     "of its own final best validation accuracy")
    epochs_spent: int = Field(0, description="epochs trained by the search trials so far")
    epochs_saved: int = Field(0, description="epochs not trained, against running every "
                              "configuration to trial_epochs")
    epochs_committed: int = Field(0, description="epochs trained plus the targets of queued and "
                                  "running trials")
    budget_epochs: float | None = Field(None, description="epochs the budget allows (hours "
                                        "converted at the study's own pace); None: no budget")
    epochs_left: float | None = Field(None, description="budget_epochs - epochs_committed")
    promotions: int = 0
    fidelity: list[RungFidelity] = Field(default_factory=list, description="per rung: how "
                                         "well its score ranks trials by their top score")
    advice: list[str] = Field(default_factory=list, description="settings worth changing, "
                              "from what the study measured")
    rank_correlation: float | None = Field(
        None, description="Spearman correlation of search score and retrain validation "
        "accuracy over the top-k retrains (k >= 3): the measured short-horizon bias")
    created: float
    started: float | None = None
    search_finished: float | None = None
    finished: float | None = None
    elapsed: float = Field(description="seconds from creation to finish (or now)")
    error: str | None = None
    error_groups: list[ErrorGroup] = Field(default_factory=list)
    failures: Failures = Field(default_factory=Failures)
    trial_timeout: float | None = None
    comparison: str | None = Field(None, description="the comparison it is a variant of")


class StudyList(BaseModel):
    total: int = 0
    offset: int = 0
    limit: int = 100
    studies: list[StudyPublic]


class WorkerJob(BaseModel):
    """What a worker is doing, as its last heartbeat said."""

    exp_key: str = Field(description="the study")
    tid: int
    kind: str
    epoch: int = Field(0, description="the last epoch it reported")
    steps: int | None = Field(None, description="training steps of this run so far")
    idle_seconds: float | None = Field(None, description="seconds since the last step")
    stall_after: float | None = Field(None, description="the watchdog's limit: seconds "
                                      "without a step after which the run is stopped")


class WorkerPublic(BaseModel):
    id: str
    host: str
    pid: int
    device: str
    job: WorkerJob | None = Field(None, description="None while it waits for work")
    jobs_done: int = 0
    started: float
    last_seen: float


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    studies_driven: int
    instance: str | None = None


class ParamImportance(BaseModel):
    param: str
    importance: float


class Importance(BaseModel):
    method: str
    min_trials: int = Field(description="below this many finished trials there is no estimate")
    n_trials: int = Field(description="finished trials the estimate used")
    importances: list[ParamImportance] = Field(default_factory=list,
                                               description="largest first, summing to 1")
    message: str | None = Field(None, description="why there is no estimate")


class CancelResult(BaseModel):
    id: str
    state: StudyState
    queued_cancelled: int
    running_stopping: int


# -- comparisons (service/studies/comparisons.py builds them) ---------------------------------
class ComparisonRow(BaseModel):
    variant: str
    study_id: str
    model: str
    state: str = Field(description="the variant's study state (deleted: the study is gone)")
    best_val_acc: float | None = Field(None, description="the search's best validation accuracy")
    test_acc: float | None = Field(None, description="mean test accuracy over retrain_seeds")
    test_acc_sd: float | None = Field(None, description="sample sd of the test accuracy")
    tests: int = Field(0, description="test evaluations that reported")
    test_drop: float | None = Field(None, description="retrain validation mean - test mean")
    n_params: int | None = None
    epochs_spent: int = 0
    trial_hours: float = Field(0.0, description="training hours of the search trials")
    epochs_to_95: int | None = Field(None, description="epochs to reach 95% of its own final "
                                     "best validation accuracy: how hard it is to tune")
    trials: int = Field(0, description="search trials finished")
    anytime: list[list[float]] = Field(default_factory=list, description="[cumulative "
                                       "epochs, best validation accuracy so far]")


class ComparisonPublic(BaseModel):
    id: str
    name: str
    dataset: str
    state: str = Field(description="running while a variant runs; completed when every "
                       "variant completed; else how the first one that did not ended")
    variants: list[str]
    budget: Budget
    trial_epochs: int
    scheduler: Scheduler
    retrain_epochs: int
    retrain_seeds: int
    seed: int
    parallelism: int
    created: float
    epochs_spread: int = Field(0, description="max - min epochs spent over the variants")
    rows: list[ComparisonRow]


class ComparisonList(BaseModel):
    total: int
    offset: int
    limit: int
    comparisons: list[ComparisonPublic]
