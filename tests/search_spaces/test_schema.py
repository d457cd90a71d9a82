"""Declarative spaces: built-ins, hyperopt mapping, conditional sub-spaces, errors naming params."""

import numpy as np
import pytest
from hyperopt import Domain, Trials, fmin, space_eval, tpe

from search_spaces.schema import (
    BUILTIN,
    SpaceError,
    SpaceSpec,
    flatten_sample,
    load_builtin,
    point_to_vals,
    sample_params,
    to_hyperopt,
)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_spaces_load_and_sample_valid_params(name):
    spec = load_builtin(name)
    for p in sample_params(spec, n=30):
        for k in ("phi_size", "r_size", "out_size", "hidden_size", "batch_size"):
            if k in p:
                assert isinstance(p[k], int)
        if "alphas" in p:
            assert all(0 <= a < 1 for a in p["alphas"])


def test_sru_mnist_has_the_paper_alpha_sets():
    opts = load_builtin("sru_mnist").parsed["alphas"].options
    assert [0.0, 0.5, 0.9, 0.99, 0.999] in opts and [0.0, 0.25, 0.5, 0.9, 0.99] in opts


def test_every_distribution_type_and_bounds():
    spec = SpaceSpec(model="sru", params={
        "phi_size": {"type": "quniform", "low": 8, "high": 64, "q": 8},
        "out_size": {"type": "qloguniform", "low": 8, "high": 64, "q": 4},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        "dropout": {"type": "uniform", "low": 0.0, "high": 0.5},
        "batch_size": 16,
    })
    gru = SpaceSpec(model="gru", params={"forget_bias": {"type": "normal", "mu": 1, "sigma": 0.5}})
    assert len({p["forget_bias"] for p in sample_params(gru, n=10)}) == 10
    for p in sample_params(spec, n=50):
        assert 8 <= p["phi_size"] <= 64 and p["phi_size"] % 8 == 0
        assert 8 <= p["out_size"] <= 64 and p["out_size"] % 4 == 0
        assert 1e-4 <= p["lr"] <= 1e-2 and 0 <= p["dropout"] <= 0.5
        assert p["batch_size"] == 16


def test_conditional_sub_spaces_flatten_into_params():
    spec = SpaceSpec(model="sru", params={
        "optim": {"type": "choice", "options": [
            {"optimizer": "adam", "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-3}},
            {"optimizer": "sgd", "lr": {"type": "loguniform", "low": 1e-2, "high": 1e-1},
             "momentum": {"type": "uniform", "low": 0.5, "high": 0.99}},
        ]},
    })
    seen = set()
    for p in sample_params(spec, n=40):
        assert "optim" not in p
        seen.add(p["optimizer"])
        if p["optimizer"] == "adam":
            assert 1e-4 <= p["lr"] <= 1e-3 and "momentum" not in p
        else:
            assert 1e-2 <= p["lr"] <= 1e-1 and 0.5 <= p["momentum"] <= 0.99
    assert seen == {"adam", "sgd"}


def test_tpe_minimises_over_a_space():
    spec = SpaceSpec(model="sru", params={"dropout": {"type": "uniform", "low": 0, "high": 0.9}})
    trials = Trials()
    fmin(lambda p: (p["dropout"] - 0.3) ** 2, to_hyperopt(spec), algo=tpe.suggest, max_evals=40,
         trials=trials, rstate=np.random.default_rng(0), show_progressbar=False)
    best = space_eval(to_hyperopt(spec), {k: v[0] for k, v in trials.best_trial["misc"]["vals"].items()})
    assert abs(flatten_sample(spec, best)["dropout"] - 0.3) < 0.05
    Domain(lambda p: 0, to_hyperopt(spec))  # a valid hyperopt domain


@pytest.mark.parametrize(("params", "needle"), [
    ({"phi_size": {"type": "quniform", "low": 0, "high": 8, "q": 1}}, "phi_size: must be in [1, 4096]"),
    ({"phi_size": {"type": "uniform", "low": 1, "high": 8}}, "phi_size: an integer"),
    ({"lr": {"type": "loguniform", "low": 0, "high": 1}}, "lr: low"),
    ({"lr": {"type": "uniform", "low": 2, "high": 1}}, "lr: "),
    ({"lr": {"type": "gamma", "low": 1, "high": 2}}, "lr: "),
    ({"alphas": {"type": "choice", "options": [[0.5, 1.0]]}}, "alphas: must be in [0, 1)"),
    ({"alphas": {"type": "uniform", "low": 0, "high": 0.5}}, "alphas: a alphas"),
    ({"hidden_size": 64}, "hidden_size: not a parameter of model 'sru'"),
    ({"dropout": {"type": "normal", "mu": 0, "sigma": -1}}, "dropout: "),
    ({"momentum": {"type": "normal", "mu": 0.9, "sigma": 0.1}}, "momentum: normal is unbounded"),
    ({"dropout": {"type": "uniform", "low": 0.5, "high": 1.0}}, "dropout: must be in [0, 1)"),
    # issue 8: accepted before, every one of these a value the worker would have refused
    ({"dropout": {"type": "quniform", "low": 0, "high": 0.96, "q": 0.1}}, "got 1.0"),
    ({"out_size": {"type": "qloguniform", "low": 1, "high": 64, "q": 8}}, "out_size: must be in"),
    ({"lr": {"type": "loguniform", "low": 1e-300, "high": 1e300}}, "lr: must be in (0, 10]"),
    ({"lr_decay": 0}, "lr_decay: must be in (0, 1]"),
    ({"phi_size": 1048576}, "phi_size: must be in [1, 4096]"),
    ({"batch_size": 10**9}, "batch_size: must be in [1, 4096]"),
    ({"lr": {"type": "uniform", "low": 0.001, "high": float("inf")}}, "finite"),
    ({"forget_bias": 1}, "forget_bias: not a parameter of model 'sru'"),
    ({"lr": {"type": "choice", "options": list(range(1, 300))}}, "at most 256"),
    ({"a.b": 1}, "a.b: a name must be"),
])
def test_errors_name_the_parameter(params, needle):
    with pytest.raises(ValueError) as err:
        SpaceSpec(model="sru", params=params)
    assert needle in str(err.value)


def test_conditional_nesting_is_limited():
    leaf: dict = {"optimizer": "adam"}
    for _ in range(6):
        leaf = {"lvl": {"type": "choice", "options": [leaf, {"optimizer": "sgd"}]}}
    with pytest.raises(ValueError, match="nested deeper than 4"):
        SpaceSpec(model="sru", params=leaf)


def test_validation_is_analytic_every_draw_passes_the_worker():
    """What the validator accepts, the worker accepts: 2,000 draws of a space at the edges."""
    from search_spaces.params import resolve

    spec = SpaceSpec(model="sru", params={
        "dropout": {"type": "quniform", "low": 0, "high": 0.94, "q": 0.1},
        "out_size": {"type": "qloguniform", "low": 5, "high": 4096, "q": 8},
        "lr_decay": {"type": "loguniform", "low": 0.5, "high": 1.0},
        "phi_size": {"type": "quniform", "low": 1, "high": 4096, "q": 1},
    })
    for p in sample_params(spec, n=2000):
        resolve({**p, "model": "sru"})


@pytest.mark.parametrize("name", sorted(__import__("search_spaces.params").params.PARAMS))
def test_one_table_the_space_and_the_worker_agree_on_every_parameter(name):
    """For each parameter, a constant in a space is accepted exactly when the worker accepts it."""
    from search_spaces.params import PARAMS, ParamError, resolve

    p = PARAMS[name]
    model = sorted(p.models)[0]
    probes = [p.low, p.high, 0, 1, -1, 0.5, 2.5, 4096, 4097, True, "adam", [0.0, 0.5], None]
    for v in probes:
        try:
            resolve({"model": model, name: v})
            worker_ok = True
        except ParamError:
            worker_ok = False
        try:
            SpaceSpec(model=model, params={name: v})
            space_ok = True
        except ValueError:
            space_ok = False
        assert space_ok == worker_ok, (name, v)


def test_warm_start_point_to_vals():
    spec = load_builtin("sru_digits")
    point = {"phi_size": 64, "r_size": 16, "out_size": 64, "alphas": [0.0, 0.5, 0.9, 0.99],
             "lr": 0.003, "lr_decay": 0.99}
    vals = point_to_vals(spec, point)
    assert vals["alphas"] == [1] and vals["lr"] == [0.003]
    with pytest.raises(SpaceError, match="alphas"):
        point_to_vals(spec, {**point, "alphas": [0.1]})
    with pytest.raises(SpaceError, match="lr"):
        point_to_vals(spec, {**point, "lr": 5.0})
    with pytest.raises(SpaceError, match="lr: must be finite"):
        point_to_vals(spec, {**point, "lr": float("nan")})
    with pytest.raises(SpaceError, match="r_size: missing"):
        point_to_vals(spec, {k: v for k, v in point.items() if k != "r_size"})
