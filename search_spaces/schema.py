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

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from hyperopt import hp
from hyperopt.pyll import stochastic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = ["SpaceSpec", "to_hyperopt", "flatten_sample", "point_to_vals", "SpaceError",
           "MODEL_PARAMS", "TRAIN_PARAMS", "INT_PARAMS", "sample_params", "load_builtin",
           "BUILTIN"]

MODEL_PARAMS = {
    "sru": {"phi_size", "r_size", "out_size", "alphas", "learn_alphas", "dropout"},
    "gru": {"hidden_size", "num_layers", "forget_bias", "dropout"},
    "lstm": {"hidden_size", "num_layers", "forget_bias", "dropout"},
}
TRAIN_PARAMS = {"optimizer", "lr", "momentum", "lr_decay", "weight_decay", "clip_norm",
                "batch_size"}
INT_PARAMS = {"phi_size", "r_size", "out_size", "hidden_size", "num_layers", "batch_size"}
INT_MIN = {"r_size": 0}  # every other integer parameter must be >= 1
#: Allowed values of the numeric parameters: (low, high, high is open). A distribution's whole
#: support must fit, so a drawn value can never be rejected by the worker later.
RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, math.inf, False), "momentum": (0.0, 1.0, False), "lr_decay": (0.0, 1.0, False),
    "weight_decay": (0.0, math.inf, False), "clip_norm": (0.0, math.inf, False),
    "dropout": (0.0, 1.0, True), "forget_bias": (-math.inf, math.inf, False),
}


class SpaceError(ValueError):
    """A space is invalid; the message starts with the parameter's name."""


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    low: float = Field(gt=0, description="the value, not its log; must be > 0")
    high: float = Field(gt=0)


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


def _is_dist(v: Any) -> bool:
    return isinstance(v, Mapping) and "type" in v


def _parse_params(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Validate every entry; distributions become models, sub-spaces are parsed recursively."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        where = f"{path}{name}"
        if _is_dist(value):
            try:
                dist = _DIST.validate_python(value)
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{'.'.join(str(x) for x in e['loc'][1:]) or 'type'}: {e['msg']}"
                    for e in exc.errors())
                raise SpaceError(f"{where}: {reasons}") from None
            if isinstance(dist, Choice):
                dist.options = [
                    _parse_params(o, f"{where}[{i}].") if isinstance(o, Mapping) and not _is_dist(o)
                    else o for i, o in enumerate(dist.options)
                ]
            out[name] = dist
        else:
            out[name] = value
    return out


def _leaf_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter a sample can produce -> its spec (sub-space entries included)."""
    names: dict[str, Any] = {}
    for name, spec in params.items():
        if isinstance(spec, Choice) and any(isinstance(o, dict) for o in spec.options):
            for o in spec.options:
                if isinstance(o, dict):
                    names.update(_leaf_names(o))
                else:
                    raise SpaceError(f"{name}: mix of sub-spaces and plain options")
        else:
            names[name] = spec
    return names


def _check_semantics(params: Mapping[str, Any], model: str) -> None:
    known = MODEL_PARAMS[model] | TRAIN_PARAMS
    for name, spec in _leaf_names(params).items():
        if name not in known:
            raise SpaceError(f"{name}: not a parameter of model {model!r} "
                             f"(known: {', '.join(sorted(known))})")
        if name in INT_PARAMS:
            lo = INT_MIN.get(name, 1)
            if isinstance(spec, Uniform | Normal) and not isinstance(spec, QUniform | QLogUniform):
                raise SpaceError(f"{name}: an integer size; use quniform, qloguniform or choice")
            values = (spec.options if isinstance(spec, Choice)
                      else [spec.low, spec.high] if isinstance(spec, QUniform | QLogUniform)
                      else [spec])
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or v < lo:
                    raise SpaceError(f"{name}: sizes must be integers >= {lo}, got {v!r}")
            if isinstance(spec, QUniform | QLogUniform) and spec.q != int(spec.q):
                raise SpaceError(f"{name}: q must be an integer for a size, got {spec.q}")
        if name in RANGES:
            _check_range(name, spec)
        if name == "alphas":
            if isinstance(spec, _Dist) and not isinstance(spec, Choice):
                raise SpaceError("alphas: a set of rates; give a list or a choice of lists")
            sets = spec.options if isinstance(spec, Choice) else [spec]
            for s in sets:
                if not isinstance(s, list) or not s:
                    raise SpaceError(f"alphas: each set must be a non-empty list, got {s!r}")
                for a in s:
                    if isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a < 1:
                        raise SpaceError(f"alphas: every rate must be in [0, 1), got {a!r}")


def _check_range(name: str, spec: Any) -> None:
    lo, hi, open_hi = RANGES[name]
    if isinstance(spec, Normal):
        if math.isfinite(lo) or math.isfinite(hi):
            raise SpaceError(f"{name}: normal is unbounded but {name} must be in [{lo}, {hi}]")
        return
    values = (spec.options if isinstance(spec, Choice)
              else [spec.low, spec.high] if isinstance(spec, Uniform) else [spec])
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpaceError(f"{name}: must be a number, got {v!r}")
        if v < lo or v > hi or (open_hi and v >= hi) or (name == "lr" and v <= 0):
            bound = f"[{lo}, {hi}{')' if open_hi else ']'}"
            raise SpaceError(f"{name}: values must lie in {bound}, got {v!r}")


class SpaceSpec(BaseModel):
    """A search space: a model and its parameters. Validation errors name the parameter."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    model: Literal["sru", "gru", "lstm"]
    description: str | None = None
    params: dict[str, Any] = Field(min_length=1)
    _parsed: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate(self) -> SpaceSpec:
        parsed = _parse_params(self.params, "")
        _check_semantics(parsed, self.model)
        self._parsed = parsed
        return self

    @property
    def parsed(self) -> dict[str, Any]:
        return self._parsed


# -- hyperopt ------------------------------------------------------------------------------------
def _expr(label: str, spec: Any) -> Any:
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


def flatten_sample(space: SpaceSpec, sample: Mapping[str, Any]) -> dict[str, Any]:
    """A hyperopt sample (``space_eval`` output) as flat plain-JSON trial parameters."""
    out: dict[str, Any] = {}

    def put(d: Mapping[str, Any], specs: Mapping[str, Any]) -> None:
        for k, v in d.items():
            spec = specs.get(k)
            if isinstance(spec, Choice) and isinstance(v, dict):
                chosen = next(o for o in spec.options if isinstance(o, dict) and o.keys() == v.keys())
                put(v, chosen)
            else:
                out[k] = _plain(v)

    put(sample, space.parsed)
    for k in INT_PARAMS & out.keys():
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
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise SpaceError(f"{name}: must be a number, got {v!r}")
            lo, hi = getattr(spec, "low", -math.inf), getattr(spec, "high", math.inf)
            if not lo <= v <= hi:
                raise SpaceError(f"{name}: {v} is outside [{lo}, {hi}]")
            vals[name] = [float(v)]
    extra = set(point) - set(space.parsed)
    if extra:
        raise SpaceError(f"{sorted(extra)[0]}: not in the search space")
    return vals


def sample_params(space: SpaceSpec, n: int = 16, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` random points of the space as flat trial parameters (for validation and tests)."""
    expr = to_hyperopt(space)
    rng = np.random.default_rng(seed)
    return [flatten_sample(space, stochastic.sample(expr, rng=rng)) for _ in range(n)]


# -- built-in spaces ------------------------------------------------------------------------------
BUILTIN = ("sru_mnist", "gru_mnist", "lstm_mnist", "sru_digits")


def load_builtin(name: str) -> SpaceSpec:
    """One of the YAML files shipped next to this module."""
    from importlib.resources import files

    import yaml

    if name not in BUILTIN:
        raise SpaceError(f"space: unknown built-in {name!r}, expected one of {', '.join(BUILTIN)}")
    text = files("search_spaces").joinpath(f"{name}.yaml").read_text()
    return SpaceSpec.model_validate(yaml.safe_load(text))
