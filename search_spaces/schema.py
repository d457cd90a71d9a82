"""Declarative search spaces (YAML/JSON) validated by pydantic and turned into hyperopt expressions.

A space maps parameter names to either a constant or a distribution::

    phi_size: {type: quniform, low: 32, high: 256, q: 8}      # sizes: quniform/qloguniform/choice
    lr:       {type: loguniform, low: 1.0e-4, high: 1.0e-2}   # bounds given as values, not logs
    alphas:   {type: choice, options: [[0, 0.5, 0.9, 0.99, 0.999], [0, 0.25, 0.5, 0.9, 0.99]]}
    optim:    {type: choice, options: [{optimizer: adam}, {optimizer: sgd, momentum: {...}}]}
    batch_size: 128                                            # a constant

Distribution types: uniform, loguniform, quniform, qloguniform, normal, choice. A choice option
that is a mapping is a *sub-space* (conditional parameters): its entries are merged into the
trial's parameters when that option is drawn, and the choice's own name is dropped.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from search_spaces.params import PARAMS, ModelName, ParamError, Params, check, model_param_names
from sru_hpo.settings import get_settings

__all__ = ["SpaceSpec", "Dist", "Choice", "LogUniform", "dist_of", "to_hyperopt",
           "flatten_sample", "point_to_vals", "SpaceError", "sample_params", "load_builtin",
           "BUILTIN", "support", "did_you_mean", "unknown_space"]




class SpaceError(ValueError):
    """A space is invalid. ``problems`` holds every reason found, each ``"where: reason"`` with
    the parameter's name first; the message joins them."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(problems))


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` (empty when none is close)."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Uniform(_Dist):
    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        return self


class LogUniform(Uniform):  # type: ignore[misc]
    type: Literal["loguniform"]  # type: ignore[assignment]
    low: float = Field(description="the value, not its log; must be > 0")
    high: float = Field(description="the value, not its log; must be > 0")

    @field_validator("low", "high")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            hint = f" (e^{v:g} is {math.exp(v):.3g})" if -700 < v < 0 else ""
            raise ValueError(f"{v:g} is not > 0: bounds are values, not logs{hint}")
        return v


class QUniform(Uniform):  # type: ignore[misc]
    type: Literal["quniform"]  # type: ignore[assignment]
    q: float = Field(gt=0)


class QLogUniform(LogUniform):  # type: ignore[misc]
    type: Literal["qloguniform"]  # type: ignore[assignment]
    q: float = Field(gt=0)


class Normal(_Dist):
    type: Literal["normal"]
    mu: float
    sigma: float = Field(gt=0)


class Choice(_Dist):
    type: Literal["choice"]
    options: list[Any] = Field(min_length=1)


Dist = Annotated[Uniform | LogUniform | QUniform | QLogUniform | Normal | Choice,
                 Field(discriminator="type")]
_DIST = TypeAdapter(Dist)


def dist_of(spec: Mapping[str, Any]) -> Dist:
    """A distribution as a space writes it (``{"type": "uniform", ...}``) as its model."""
    return _DIST.validate_python(spec)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _is_dist(v: Any) -> bool:
    return isinstance(v, Mapping) and "type" in v


def _is_subspace(v: Any) -> bool:
    return isinstance(v, Mapping) and not _is_dist(v)


def _dist_problem(where: str, e: Mapping[str, Any]) -> str:
    """One pydantic error of a distribution as ``where.field: reason``, in plain words."""
    field = ".".join(str(x) for x in e["loc"][1:])
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "union_tag_invalid":
        msg = f"{e['ctx']['tag']!r} is not a distribution type; one of {e['ctx']['expected_tags']}"
    elif e["type"] == "extra_forbidden":
        msg = "not a field of this distribution"
    elif e["type"] == "missing":
        msg = "required"
    if e["type"] == "union_tag_invalid" or (e["type"] == "missing" and not field):
        field = "type"
    return f"{where}: {field + ': ' if field else ''}{msg.replace('Input should be', 'must be')}"


def _parse_params(params: Mapping[str, Any], path: str, problems: list[str],
                  depth: int = 0) -> dict[str, Any]:
    """Validate every entry; distributions become models, sub-spaces are parsed recursively.
    Every problem found is appended to ``problems`` (the entries that parse are returned)."""
    if depth > get_settings().max_nesting:
        problems.append(f"{path.rstrip('.')}: sub-spaces nested deeper than "
                        f"{get_settings().max_nesting} levels (SRU_HPO_MAX_NESTING)")
        return {}
    if len(params) > get_settings().max_params:
        problems.append(f"{path.rstrip('.') or 'params'}: more than {get_settings().max_params} entries")
        return {}
    out: dict[str, Any] = {}
    for name, value in params.items():
        where = f"{path}{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{where}: a name must be letters, digits and _ (at most 64)")
            continue
        if not _is_dist(value):
            out[name] = value
            continue
        try:
            dist = _DIST.validate_python(value)
        except ValidationError as exc:
            problems += [_dist_problem(where, e)
                         for e in exc.errors(include_url=False, include_input=False)]
            continue
        if isinstance(dist, Choice):
            if len(dist.options) > get_settings().max_choice_options:
                problems.append(f"{where}: {len(dist.options)} options; at most "
                                f"{get_settings().max_choice_options} (SRU_HPO_MAX_CHOICE_OPTIONS)")
                continue
            dist.options = [_parse_params(o, f"{where}[{i}].", problems, depth + 1)
                            if _is_subspace(o) else o for i, o in enumerate(dist.options)]
        out[name] = dist
    return out


def _leaf_names(params: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every parameter a sample can produce -> its specs (one per sub-space that sets it)."""
    names: dict[str, list[Any]] = {}
    for name, spec in params.items():
        if isinstance(spec, Choice) and any(isinstance(o, dict) for o in spec.options):
            if not all(isinstance(o, dict) for o in spec.options):
                raise SpaceError(f"{name}: mix of sub-spaces and plain options")
            for o in spec.options:
                for leaf, specs in _leaf_names(o).items():
                    names.setdefault(leaf, []).extend(specs)
        else:
            names.setdefault(name, []).append(spec)
    return names


def support(name: str, spec: Any) -> list[Any]:
    """The values that bound what ``spec`` can produce for parameter ``name``, computed the way
    hyperopt draws them (q-rounding, exp of the log bounds): every value a draw can give lies
    between these (or is one of them, for a choice). Checking these is checking every draw."""
    p = PARAMS[name]
    if isinstance(spec, Choice):
        return list(spec.options)
    if not isinstance(spec, _Dist):
        return [spec]
    if p.kind not in ("int", "float"):
        raise SpaceError(f"{name}: a {p.kind}; give a constant or a choice")
    if isinstance(spec, Normal):
        if math.isfinite(p.low) or math.isfinite(p.high):
            raise SpaceError(f"{name}: normal is unbounded but {name} must be in {p.range_text()}")
        return [spec.mu]
    if p.kind == "int" and not isinstance(spec, QUniform | QLogUniform):
        raise SpaceError(f"{name}: an integer; use quniform, qloguniform or choice")
    assert isinstance(spec, Uniform)  # every bounded distribution is one
    lo, hi = np.float64(spec.low), np.float64(spec.high)
    if isinstance(spec, LogUniform):  # exp(uniform(log low, log high)), as hyperopt does
        lo, hi = np.exp(np.log(lo)), np.exp(np.log(hi))
    if isinstance(spec, QUniform | QLogUniform):
        if p.kind == "int" and spec.q != int(spec.q):
            raise SpaceError(f"{name}: q must be an integer for an integer parameter, got {spec.q}")
        q = np.float64(spec.q)
        lo, hi = np.round(lo / q) * q, np.round(hi / q) * q
        if p.kind == "int":  # flatten_sample rounds to int
            lo, hi = np.float64(round(float(lo))), np.float64(round(float(hi)))
    with np.errstate(over="ignore"):
        return [float(lo), float(hi)]


def _check_semantics(params: Mapping[str, Any], model: str, problems: list[str]) -> None:
    """Every parameter known to ``model`` and every value a draw can give in range; each
    problem is appended to ``problems``."""
    known = model_param_names(model)
    for name, specs in _leaf_names(params).items():
        if name not in known:
            what = "not a parameter of model" if name in PARAMS else "not a known parameter for"
            problems.append(f"{name}: {what} {model!r}{did_you_mean(name, known)} "
                            f"(known: {', '.join(sorted(known))})")
            continue
        try:
            for spec in specs:
                for value in support(name, spec):
                    check(name, value)
        except ParamError as exc:
            problems.append(f"{exc} (a value this space can produce)")
        except SpaceError as exc:
            problems += exc.problems


class SpaceSpec(BaseModel):
    """A search space: a model and its parameters. Validation errors name the parameter."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    model: ModelName
    description: str | None = None
    params: dict[str, Any] = Field(min_length=1)
    _parsed: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate(self) -> SpaceSpec:
        problems: list[str] = []
        parsed = _parse_params(self.params, "", problems)
        try:
            _check_semantics(parsed, self.model, problems)
        except SpaceError as exc:  # a sub-space that mixes options: the leaves are unknown
            problems += exc.problems
        if problems:
            raise SpaceError(*problems)
        self._parsed = parsed
        return self

    @property
    def parsed(self) -> dict[str, Any]:
        return self._parsed


# -- hyperopt ------------------------------------------------------------------------------------
def _expr(label: str, spec: Any) -> Any:
    from hyperopt import hp  # imported on first use: it pulls in SciPy (~2 s at API start)

    if isinstance(spec, dict):  # a sub-space
        return {k: _expr(f"{label}.{k}", v) for k, v in spec.items()}
    if isinstance(spec, Choice):
        return hp.choice(label, [_expr(f"{label}.{i}", o) if isinstance(o, dict) else o
                                 for i, o in enumerate(spec.options)])
    if isinstance(spec, QLogUniform):
        return hp.qloguniform(label, math.log(spec.low), math.log(spec.high), spec.q)
    if isinstance(spec, LogUniform):
        return hp.loguniform(label, math.log(spec.low), math.log(spec.high))
    if isinstance(spec, QUniform):
        return hp.quniform(label, spec.low, spec.high, spec.q)
    if isinstance(spec, Uniform):
        return hp.uniform(label, spec.low, spec.high)
    if isinstance(spec, Normal):
        return hp.normal(label, spec.mu, spec.sigma)
    return spec  # constant


def to_hyperopt(space: SpaceSpec) -> dict[str, Any]:
    """The hyperopt expression; top-level labels are the parameter names."""
    return {name: _expr(name, spec) for name, spec in space.parsed.items()}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def flatten_sample(space: SpaceSpec, sample: Mapping[str, Any]) -> Params:
    """A hyperopt sample (``space_eval`` output) as flat plain-JSON trial parameters."""
    out: Params = {}

    def put(d: Mapping[str, Any], specs: Mapping[str, Any]) -> None:
        for k, v in d.items():
            spec = specs.get(k)
            if isinstance(spec, Choice) and isinstance(v, dict):
                chosen = next(o for o in spec.options if isinstance(o, dict) and o.keys() == v.keys())
                put(v, chosen)
            else:
                out[k] = _plain(v)

    put(sample, space.parsed)
    for k in out.keys() & {n for n, p in PARAMS.items() if p.kind == "int"}:
        out[k] = int(round(out[k]))
    return out


def point_to_vals(space: SpaceSpec, point: Mapping[str, Any]) -> dict[str, list]:
    """A warm-start point (plain values) as hyperopt ``misc.vals`` (choices become indexes)."""
    vals: dict[str, list] = {}
    for name, spec in space.parsed.items():
        if not isinstance(spec, _Dist):
            continue
        if name not in point:
            raise SpaceError(f"{name}: missing from the warm-start point")
        v = point[name]
        if isinstance(spec, Choice):
            if any(isinstance(o, dict) for o in spec.options):
                raise SpaceError(f"{name}: warm start does not support conditional parameters")
            if v not in spec.options:
                raise SpaceError(f"{name}: {v!r} is not one of the options {spec.options}")
            vals[name] = [spec.options.index(v)]
        else:
            try:
                check(name, v)
            except ParamError as exc:
                raise SpaceError(str(exc)) from None
            lo, hi = getattr(spec, "low", -math.inf), getattr(spec, "high", math.inf)
            if not lo <= v <= hi:
                raise SpaceError(f"{name}: {v} is outside [{lo}, {hi}]")
            vals[name] = [float(v)]
    extra = set(point) - set(space.parsed)
    if extra:
        raise SpaceError(f"{sorted(extra)[0]}: not in the search space")
    return vals


def sample_params(space: SpaceSpec, n: int = 16, seed: int = 0) -> list[Params]:
    """``n`` random points of the space as flat trial parameters (for validation and tests)."""
    from hyperopt.pyll import stochastic

    expr = to_hyperopt(space)
    rng = np.random.default_rng(seed)
    return [flatten_sample(space, stochastic.sample(expr, rng=rng)) for _ in range(n)]


# -- built-in spaces ------------------------------------------------------------------------------
BUILTIN = ("sru_mnist", "gru_mnist", "lstm_mnist", "sru_digits", "sru_digits_wide", "gru_digits",
           "lstm_digits")


def unknown_space(name: str) -> SpaceError:
    """The error for a space name that is not built in, with the closest name."""
    return SpaceError(f"space: unknown built-in space {name!r}{did_you_mean(name, BUILTIN)} "
                      f"(built-in: {', '.join(BUILTIN)}; or write the space inline)")


def load_builtin(name: str) -> SpaceSpec:
    """One of the YAML files shipped next to this module."""
    from importlib.resources import files

    import yaml

    if name not in BUILTIN:
        raise unknown_space(name)
    text = files("search_spaces").joinpath(f"{name}.yaml").read_text()
    return SpaceSpec.model_validate(yaml.safe_load(text))
