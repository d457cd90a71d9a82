"""Comparison variants: a model family, or one of the SRU paper's ablations, on a dataset.

A variant names a model and the built-in space it is tuned over on a dataset (``sru`` on digits
is ``sru_digits``, on MNIST ``sru_mnist``). The ablations (Oliva et al. 2017, slides 10-11)
are the SRU space with parameters fixed:

========== =============================== =========================================
variant    fixed                           what it removes
========== =============================== =========================================
sru-iid    r_size = 0, alphas = [0.99]     the feedback r_t and the multiple scales
sru-recur  alphas = [0.99]                 the multiple scales (one moving average)
sru-multi  r_size = 0                      the feedback r_t (statistics of x alone)
========== =============================== =========================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from search_spaces.params import Params
from search_spaces.schema import SpaceError, SpaceSpec, did_you_mean, load_builtin

__all__ = ["VARIANTS", "Variant", "variant_space", "unknown_variant"]


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    fixed: Params = field(default_factory=dict)  # parameters set to constants
    meaning: str = ""


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("sru", "sru", meaning="the SRU, every parameter searched"),
    Variant("gru", "gru", meaning="the GRU baseline"),
    Variant("lstm", "lstm", meaning="the LSTM baseline"),
    Variant("sru-iid", "sru", {"r_size": 0, "alphas": [0.99]},
            "no feedback, one scale: r_size = 0, A = {0.99}"),
    Variant("sru-recur", "sru", {"alphas": [0.99]}, "one scale: A = {0.99}"),
    Variant("sru-multi", "sru", {"r_size": 0}, "no feedback: r_size = 0"),
)}

#: the built-in space of each model on each dataset
_SPACES = {("sru", "digits"): "sru_digits", ("gru", "digits"): "gru_digits",
           ("lstm", "digits"): "lstm_digits"}


def unknown_variant(name: str) -> SpaceError:
    return SpaceError(f"unknown variant {name!r}{did_you_mean(name, VARIANTS)} "
                      f"(known: {', '.join(VARIANTS)}; or give a model and a space)")


def builtin_for(model: str, dataset: str) -> str:
    """The built-in space a model is tuned over on ``dataset`` (MNIST and pMNIST share one)."""
    return _SPACES.get((model, dataset), f"{model}_mnist")


def variant_space(name: str, dataset: str) -> SpaceSpec:
    """The space ``name`` is tuned over on ``dataset``: its model's built-in space with the
    variant's parameters fixed."""
    v = VARIANTS.get(name)
    if v is None:
        raise unknown_variant(name)
    spec = load_builtin(builtin_for(v.model, dataset))
    if not v.fixed:
        return spec
    raw = spec.model_dump()
    raw.update(name=f"{spec.name}:{name}", description=f"{spec.description} ({v.meaning})")
    raw["params"] = {**raw["params"], **v.fixed}
    return SpaceSpec.model_validate(raw)
