"""``build_model(params)``: one factory from a plain parameter dict to a classifier."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from workers.baselines import GRUClassifier, LSTMClassifier
from workers.sru import DEFAULT_ALPHAS, SRUClassifier

__all__ = ["MODELS", "MODEL_DEFAULTS", "build_model", "model_args"]

MODELS = ("sru", "gru", "lstm")

#: Defaults per model. SRU sizes follow the paper's pixel-MNIST setting scaled to one layer.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sru": {
        "phi_size": 200,
        "r_size": 60,
        "out_size": 200,
        "alphas": list(DEFAULT_ALPHAS),
        "learn_alphas": False,
        "dropout": 0.0,
    },
    "gru": {"hidden_size": 128, "num_layers": 1, "forget_bias": 1.0, "dropout": 0.0},
    "lstm": {"hidden_size": 128, "num_layers": 1, "forget_bias": 1.0, "dropout": 0.0},
}


def _int(params: Mapping[str, Any], key: str, lo: int, hi: int = 1 << 20) -> int:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
        raise ValueError(f"{key}: must be an integer, got {v!r}")
    if not lo <= int(v) <= hi:
        raise ValueError(f"{key}: must be in [{lo}, {hi}], got {v!r}")
    return int(v)


def _float(params: Mapping[str, Any], key: str, lo: float, hi: float, hi_open: bool = False) -> float:
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key}: must be a number, got {v!r}")
    if not (lo <= v < hi if hi_open else lo <= v <= hi):
        raise ValueError(f"{key}: must be in [{lo}, {hi}{')' if hi_open else ']'}, got {v!r}")
    return float(v)


def model_args(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validated constructor arguments (plain data) for ``params["model"]``.

    ``params`` must carry ``input_size`` and ``n_classes`` (the dataset's); missing model keys
    take MODEL_DEFAULTS. Raises ValueError naming the offending key.
    """
    model = params.get("model")
    if model not in MODELS:
        raise ValueError(f"model: unknown {model!r}, expected one of {', '.join(MODELS)}")
    p = {**MODEL_DEFAULTS[model], **params}
    args: dict[str, Any] = {
        "model": model,
        "input_size": _int(p, "input_size", 1),
        "n_classes": _int(p, "n_classes", 2),
        "dropout": _float(p, "dropout", 0.0, 1.0, hi_open=True),
    }
    if model == "sru":
        alphas = p["alphas"]
        if not isinstance(alphas, list | tuple) or not alphas:
            raise ValueError(f"alphas: must be a non-empty list of numbers, got {alphas!r}")
        for a in alphas:
            if isinstance(a, bool) or not isinstance(a, int | float) or not 0.0 <= a < 1.0:
                raise ValueError(f"alphas: every value must be in [0, 1), got {a!r}")
        if len(set(alphas)) != len(alphas):
            raise ValueError(f"alphas: values must be distinct, got {alphas!r}")
        args |= {
            "phi_size": _int(p, "phi_size", 1),
            "r_size": _int(p, "r_size", 0),
            "out_size": _int(p, "out_size", 1),
            "alphas": [float(a) for a in alphas],
            "learn_alphas": bool(p["learn_alphas"]),
        }
    else:
        args |= {
            "hidden_size": _int(p, "hidden_size", 1),
            "num_layers": _int(p, "num_layers", 1, 16),
            "forget_bias": _float(p, "forget_bias", -math.inf, math.inf),
        }
    return args


def build_model(params: Mapping[str, Any]) -> nn.Module:
    """Build the classifier ``params["model"]`` in {"sru", "gru", "lstm"} describes."""
    args = model_args(params)
    kind = args.pop("model")
    if kind == "sru":
        return SRUClassifier(**args)
    cls = GRUClassifier if kind == "gru" else LSTMClassifier
    return cls(**args)
