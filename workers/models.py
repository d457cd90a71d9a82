"""``build_model(params)``: one factory from a plain parameter dict to a classifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from search_spaces.params import MODELS, PARAMS, resolve
from workers.baselines import GRUClassifier, LSTMClassifier
from workers.sru import SRUClassifier

__all__ = ["MODELS", "ModelArgs", "build_model", "model_args"]

#: A model's constructor arguments as plain data (kept in checkpoints): ``model`` (its name),
#: ``input_size``, ``n_classes`` and the model parameters of the table (search_spaces/params.py).
ModelArgs = dict[str, Any]


def model_args(params: Mapping[str, Any], input_size: int, n_classes: int) -> ModelArgs:
    """Constructor arguments (plain data) of the model ``params`` describe, checked against the
    parameter table (search_spaces/params.py) with its defaults filled in. Raises ValueError
    naming the offending key."""
    p = resolve(params)
    args = {"model": p["model"], "input_size": int(input_size), "n_classes": int(n_classes)}
    args |= {k: v for k, v in p.items() if k in PARAMS and PARAMS[k].model_param}
    return args


def build_model(args: Mapping[str, Any]) -> nn.Module:
    """Build the classifier that ``model_args`` (or a checkpoint's ``model_args``) describes."""
    args = dict(args)
    kind = args.pop("model")
    if kind == "sru":
        return SRUClassifier(**args)
    cls = GRUClassifier if kind == "gru" else LSTMClassifier
    return cls(**args)
