"""The one-pass quantized mixture densities give hyperopt's numbers bit for bit, and the same
suggestions (service/orchestrator/tpe_speed.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hyperopt import Trials, fmin, hp, tpe
from hyperopt.pyll import scope

from service.orchestrator import tpe_speed


@pytest.fixture
def hyperopts_own():
    """hyperopt's loops and graph builder for the test; whatever was there afterwards."""
    before = {k: scope._impls[k] for k in tpe_speed.ORIGINAL}
    builder = tpe.build_posterior_wrapper
    scope._impls.update(tpe_speed.ORIGINAL)
    tpe.build_posterior_wrapper = tpe_speed._BUILD_POSTERIOR
    yield
    scope._impls.update(before)
    tpe.build_posterior_wrapper = builder


def _mixture(rng: np.random.Generator, n: int, log: bool):
    mus = rng.uniform(-3, 3, n) if log else rng.uniform(0, 256, n)
    sigmas = rng.uniform(0.05, 2, n) if log else rng.uniform(1, 60, n)
    weights = rng.uniform(0.1, 1, n)
    return weights / weights.sum(), mus, sigmas


@pytest.mark.parametrize("components", [1, 7, 300])
@pytest.mark.parametrize("bounds", [(None, None), (0.0, 256.0), (40.0, 200.0)])
def test_gmm1_lpdf_equals_hyperopts_bit_for_bit(components, bounds):
    rng = np.random.default_rng(components)
    weights, mus, sigmas = _mixture(rng, components, log=False)
    samples = np.round(rng.uniform(48, 192, (24,)) / 16) * 16  # inside every bound
    low, high = bounds
    ours = tpe_speed.gmm1_lpdf(samples, weights, mus, sigmas, low, high, 16)
    theirs = tpe_speed.ORIGINAL["GMM1_lpdf"](samples, weights, mus, sigmas, low, high, 16)
    assert ours.shape == theirs.shape == (24,) and np.isfinite(theirs).all()
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("components", [1, 7, 300])
@pytest.mark.parametrize("bounds", [(None, None), (np.log(8.0), np.log(512.0))])
def test_lgmm1_lpdf_equals_hyperopts_bit_for_bit(components, bounds):
    rng = np.random.default_rng(components + 1)
    weights, mus, sigmas = _mixture(rng, components, log=True)
    samples = np.round(np.exp(rng.uniform(np.log(8), np.log(512), (3, 8))) / 8) * 8
    low, high = bounds
    ours = tpe_speed.lgmm1_lpdf(samples, weights, mus, sigmas, low, high, 8)
    theirs = tpe_speed.ORIGINAL["LGMM1_lpdf"](samples, weights, mus, sigmas, low, high, 8)
    assert ours.shape == theirs.shape == (3, 8)
    assert np.array_equal(ours, theirs)


def test_unquantized_and_empty_cases_are_hyperopts_own():
    w, mu, s = np.array([1.0]), np.array([0.0]), np.array([1.0])
    x = np.array([0.5, -1.0])
    assert np.array_equal(tpe_speed.gmm1_lpdf(x, w, mu, s),
                          tpe_speed.ORIGINAL["GMM1_lpdf"](x, w, mu, s))
    assert tpe_speed.gmm1_lpdf(np.array([]), w, mu, s, q=1).size == 0
    assert tpe_speed.lgmm1_lpdf(np.array([]), w, mu, s, q=1).size == 0


def _search(seed: int) -> list[dict]:
    space = {"phi": hp.quniform("phi", 64, 256, 16), "r": hp.quniform("r", 0, 128, 8),
             "batch": hp.qloguniform("batch", np.log(16), np.log(512), 16),
             "lr": hp.loguniform("lr", np.log(1e-4), np.log(3e-2))}
    trials = Trials()
    fmin(lambda p: (p["phi"] - 150) ** 2 / 1e4 + (np.log10(p["lr"]) + 2.5) ** 2
         + abs(p["batch"] - 128) / 500 + p["r"] / 1e3,
         space, algo=tpe.suggest, max_evals=45, trials=trials,
         rstate=np.random.default_rng(seed), show_progressbar=False)
    return [t["misc"]["vals"] for t in trials.trials]


def test_installed_suggestions_equal_hyperopts(hyperopts_own):
    theirs = _search(3)
    tpe_speed.install()
    assert scope._impls["GMM1_lpdf"] is tpe_speed.gmm1_lpdf
    assert tpe.build_posterior_wrapper is tpe_speed.posterior_once  # one graph per domain
    assert _search(3) == theirs  # 25 TPE suggestions over quantized, log and plain parameters


def test_another_hyperopt_gets_its_own_code_back_and_a_warning(caplog):
    """Issue 20: the replacements are applied only to the hyperopt they were checked on."""
    import logging

    with caplog.at_level(logging.WARNING, logger="sru_hpo.tpe_speed"):
        assert tpe_speed.install(hyperopt_version="0.2.7") is False
    try:
        assert all(scope._impls[k] is f for k, f in tpe_speed.ORIGINAL.items())
        assert tpe.build_posterior_wrapper is tpe_speed._BUILD_POSTERIOR
        assert "hyperopt 0.2.7 is not the 0.3.0" in caplog.text
    finally:
        assert tpe_speed.install() is True  # the installed one is the checked one
    assert scope._impls["GMM1_lpdf"] is tpe_speed.gmm1_lpdf
    assert tpe.build_posterior_wrapper is tpe_speed.posterior_once
