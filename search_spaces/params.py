"""The one table of model and training parameters: name, type, range, scale, models, meaning.

It imports no torch, so the API validates with it and the worker builds with it, and the two can
never disagree. ``check(name, value)`` is the only value check there is: the search-space
validator (search_spaces/schema.py) runs it on the bounds of every distribution after
q-rounding, the worker (workers/models.py, workers/train.py) on the values it is given.

Ranges are closed unless ``low_open``/``high_open`` says otherwise; every float must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = ["Param", "Params", "PARAMS", "MODELS", "DATASETS", "ModelName", "DatasetName",
           "ParamError",
           "check", "defaults", "model_param_names", "resolve", "MAX_SIZE", "MAX_ALPHAS", "ALL",
           "DEFAULT_BATCH"]

#: A hyperparameter assignment, {name: value}: what a trial trains, a warm-start point, a
#: study's fixed parameters. The values' types differ by parameter (an int, a float, an option,
#: a list of rates; see PARAMS), so it maps to Any: ``check`` and ``resolve`` are what know
#: them, and every reader narrows a value through them (or ``int()``/``float()``) anyway.
Params = dict[str, Any]

#: The models and datasets there are: the types name them once, the tuples follow from them.
ModelName = Literal["sru", "gru", "lstm"]
DatasetName = Literal["mnist", "pmnist", "digits"]
MODELS: tuple[str, ...] = get_args(ModelName)
DATASETS: tuple[str, ...] = get_args(DatasetName)
ALL = frozenset(MODELS)
SRU = frozenset({"sru"})
RNN = frozenset({"gru", "lstm"})
#: Largest layer width and batch size a study may ask for (a 4,096-wide SRU at T=784 already
#: needs tens of GB for its BPTT buffers).
MAX_SIZE = 4096
MAX_ALPHAS = 16


class ParamError(ValueError):
    """A parameter value is invalid; the message starts with the parameter's name."""


Kind = Literal["int", "float", "bool", "option", "alphas"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    meaning: str
    models: frozenset[str] = ALL
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    scale: Literal["linear", "log"] = "linear"  # how a space usually searches it
    default: Any = None  # None where the default depends on the model or the dataset
    options: tuple[str, ...] = ()
    model_param: bool = True  # a constructor argument (False: a training setting)
    defaults_by_model: dict[str, Any] = field(default_factory=dict)  # {model: its default}

    def range_text(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{_num(self.low)}, {_num(self.high)}{hi}"

    def default_for(self, model: str) -> Any:
        return self.defaults_by_model.get(model, self.default)


def _num(v: float) -> str:
    return f"{v:g}" if math.isfinite(v) else ("-inf" if v < 0 else "inf")


_SIZE = {"kind": "int", "low": 1, "high": MAX_SIZE}
PARAMS: dict[str, Param] = {p.name: p for p in (
    # -- the SRU (Oliva et al. 2017) --------------------------------------------------------
    Param("phi_size", meaning="units of phi_t, the statistics averaged at every rate",
          models=SRU, default=200, **_SIZE),  # type: ignore[arg-type]
    Param("r_size", "int", "units of r_t, the feedback from mu_{t-1} (0: the iid ablation)",
          models=SRU, low=0, high=MAX_SIZE, default=60),
    Param("out_size", meaning="units of o_t, read from mu_T by the classifier",
          models=SRU, default=200, **_SIZE),  # type: ignore[arg-type]
    Param("alphas", "alphas", f"the set A of moving-average rates, each in [0, 1), "
          f"distinct, at most {MAX_ALPHAS}", models=SRU, low=0.0, high=1.0, high_open=True,
          default=(0.0, 0.25, 0.5, 0.9, 0.99)),
    Param("learn_alphas", "bool", "learn A as sigmoid(logit), starting from the given rates",
          models=SRU, default=False),
    # -- the GRU / LSTM baselines -----------------------------------------------------------
    Param("hidden_size", meaning="recurrent units", models=RNN, default=128,
          **_SIZE),  # type: ignore[arg-type]
    Param("num_layers", "int", "stacked recurrent layers", models=RNN, low=1, high=16, default=1),
    Param("forget_bias", "float", "initial bias of the keep gate (LSTM forget, GRU update)",
          models=RNN, default=1.0),
    # -- every model ------------------------------------------------------------------------
    Param("dropout", "float", "dropout before the classifier head", low=0.0, high=1.0,
          high_open=True, default=0.0),
    # -- training ---------------------------------------------------------------------------
    Param("optimizer", "option", "adam, or sgd with momentum", options=("adam", "sgd"),
          default="adam", model_param=False),
    Param("lr", "float", "learning rate", low=0.0, high=10.0, low_open=True, scale="log",
          default=1e-3, model_param=False),
    Param("momentum", "float", "SGD momentum", low=0.0, high=1.0, high_open=True, default=0.9,
          model_param=False),
    Param("lr_decay", "float", "factor applied to the lr after every epoch", low=0.0, high=1.0,
          low_open=True, default=0.97, model_param=False),
    Param("weight_decay", "float", "L2 penalty", low=0.0, high=1.0, scale="log", default=0.0,
          model_param=False),
    Param("clip_norm", "float", "gradient clipping by global norm (0: off; the paper's is 1)",
          low=0.0, high=1e4, default=1.0, model_param=False),
    Param("batch_size", "int", "training batch size (None: 32 on digits, 128 on MNIST)",
          low=1, high=MAX_SIZE, model_param=False),
    Param("diverge_loss", "float", "a batch loss above this (or NaN) ends the run as diverged",
          low=0.0, high=1e6, low_open=True, default=100.0, model_param=False),
)}
#: Batch size by dataset when none is given. digits has 1,137 training images: 32 per batch
#: gives 36 updates an epoch, which it needs to pass 0.80 in 30 epochs (128 stalls near 0.77).
DEFAULT_BATCH = {"digits": 32, "mnist": 128, "pmnist": 128}


def model_param_names(model: str) -> frozenset[str]:
    """Parameters a space for ``model`` may search: its own and every training setting."""
    return frozenset(n for n, p in PARAMS.items() if model in p.models)


def _fail(name: str, why: str, value: Any) -> ParamError:
    return ParamError(f"{name}: {why}, got {value!r}")


def check(name: str, value: Any) -> Any:
    """``value`` checked against the table and normalised (ints as int, alphas as a list of
    floats); raises ParamError naming the parameter and the reason."""
    p = PARAMS.get(name)
    if p is None:
        raise ParamError(f"{name}: not a known parameter (known: {', '.join(sorted(PARAMS))})")
    if value is None and p.default is None and p.kind == "int":
        return None  # batch_size: the dataset's default
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(name, "must be true or false", value)
        return value
    if p.kind == "option":
        if value not in p.options:
            raise _fail(name, f"must be one of {', '.join(p.options)}", value)
        return value
    if p.kind == "alphas":
        if not isinstance(value, list | tuple) or not value or len(value) > MAX_ALPHAS:
            raise _fail(name, f"must be a list of 1 to {MAX_ALPHAS} rates", value)
        rates = [_number(name, a, p) for a in value]
        if len(set(rates)) != len(rates):
            raise _fail(name, "rates must be distinct", value)
        return rates
    v = _number(name, value, p)
    if p.kind == "int":
        if v != int(v):
            raise _fail(name, "must be an integer", value)
        return int(v)
    return v


def _number(name: str, value: Any, p: Param) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, "must be a number", value)
    v = float(value)
    if not math.isfinite(v):
        raise _fail(name, "must be finite", value)
    below = v < p.low or (p.low_open and v == p.low)
    above = v > p.high or (p.high_open and v == p.high)
    if below or above:
        raise _fail(name, f"must be in {p.range_text()}", value)
    return v


def defaults(model: str) -> Params:
    """Every parameter of ``model`` with its default (batch_size None: set by the dataset)."""
    out = {}
    for n, p in PARAMS.items():
        if model in p.models:
            d = p.default_for(model)
            out[n] = list(d) if isinstance(d, tuple) else d
    return out


def resolve(params: Mapping[str, Any]) -> Params:
    """A trial's parameters with defaults filled in and every value checked: what the worker
    trains. Keys outside the table other than ``model``, ``dataset`` and ``seed`` are refused."""
    model = params.get("model")
    if model not in MODELS:
        raise _fail("model", f"must be one of {', '.join(MODELS)}", model)
    dataset = params.get("dataset", "digits")
    if dataset not in DATASETS:
        raise _fail("dataset", f"must be one of {', '.join(DATASETS)}", dataset)
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise _fail("seed", "must be an integer in [0, 2^31)", seed)
    allowed = model_param_names(model)
    out: Params = {"model": model, "dataset": dataset, "seed": seed}
    for name, value in {**defaults(model), **params}.items():
        if name in out:
            continue
        if name not in allowed:
            if name in PARAMS:
                raise ParamError(f"{name}: not a parameter of model {model!r}")
            raise ParamError(f"{name}: not a known parameter (known: {', '.join(sorted(allowed))})")
        if name == "batch_size" and value is None:
            value = DEFAULT_BATCH[dataset]
        out[name] = check(name, value)
    return out
