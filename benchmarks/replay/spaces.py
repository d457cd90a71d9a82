"""One search space, written for every optimizer the benchmark compares.

The space is this project's own (a ``SpaceSpec``: what a study sends). hyperopt reads it through
``search_spaces.schema.to_hyperopt`` as the service does; Optuna and ConfigSpace (DEHB) get the
same distributions from the functions here, and every arm turns a draw into trial parameters the
way hyperopt does (q-rounding, integer sizes). Conditional sub-spaces are not supported here
(none of the benchmark's spaces has one).

``coordinates`` places a configuration in the unit cube (log scale where the space is log) with
its choices apart: what the table's nearest-neighbour look-up measures distance in.
"""

from __future__ import annotations

import math
from typing import Any

from search_spaces.params import PARAMS
from search_spaces.schema import Choice, LogUniform, QLogUniform, QUniform, SpaceSpec, Uniform

__all__ = ["searched", "coordinates", "finish", "optuna_params", "configspace", "from_configspace"]


def searched(spec: SpaceSpec) -> dict[str, Any]:
    """The searched parameters (distributions), by name; constants are left out."""
    out = {}
    for name, d in spec.parsed.items():
        if isinstance(d, Choice) and any(isinstance(o, dict) for o in d.options):
            raise ValueError(f"{name}: conditional sub-spaces are not supported by the benchmark")
        if isinstance(d, Choice | Uniform):
            out[name] = d
    return out


def _unit(d: Uniform, v: float) -> float:
    if isinstance(d, LogUniform):
        lo, hi, v = math.log(d.low), math.log(d.high), math.log(max(v, 1e-300))
    else:
        lo, hi = d.low, d.high
    return min(1.0, max(0.0, (v - lo) / (hi - lo)))


def coordinates(spec: SpaceSpec, params: dict[str, Any]) -> tuple[list[float], tuple[int, ...]]:
    """(numeric coordinates in [0, 1], choice indexes) of a configuration."""
    nums, cats = [], []
    for name, d in searched(spec).items():
        if isinstance(d, Choice):
            cats.append(d.options.index(params[name]))
        else:
            nums.append(_unit(d, float(params[name])))
    return nums, tuple(cats)


def _quantize(d: Uniform, v: float) -> float:
    if isinstance(d, QUniform | QLogUniform):
        return round(v / d.q) * d.q  # as hyperopt's quniform/qloguniform
    return v


def finish(spec: SpaceSpec, draw: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters from a raw draw (a value per searched name; a choice as its index):
    q-rounded and integer where the parameter table says so, constants added."""
    out: dict[str, Any] = {}
    for name, d in spec.parsed.items():
        if isinstance(d, Choice):
            out[name] = d.options[int(draw[name])]
        elif isinstance(d, Uniform):
            v = _quantize(d, float(draw[name]))
            out[name] = int(round(v)) if PARAMS[name].kind == "int" else v
        else:
            out[name] = d
    return out


def optuna_params(trial: Any, spec: SpaceSpec) -> dict[str, Any]:
    """Suggest every searched parameter on an Optuna trial (define-by-run)."""
    draw: dict[str, Any] = {}
    for name, d in searched(spec).items():
        if isinstance(d, Choice):
            draw[name] = trial.suggest_categorical(name, list(range(len(d.options))))
        else:
            draw[name] = trial.suggest_float(name, d.low, d.high,
                                             log=isinstance(d, LogUniform))
    return finish(spec, draw)


def configspace(spec: SpaceSpec, seed: int) -> Any:
    """The space as a ConfigSpace ``ConfigurationSpace`` (what DEHB searches)."""
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    for name, d in searched(spec).items():
        if isinstance(d, Choice):
            cs.add(CS.Categorical(name, [str(i) for i in range(len(d.options))]))
        else:
            cs.add(CS.Float(name, (d.low, d.high), log=isinstance(d, LogUniform)))
    return cs


def from_configspace(spec: SpaceSpec, config: Any) -> dict[str, Any]:
    return finish(spec, {k: config[k] for k in searched(spec)})
