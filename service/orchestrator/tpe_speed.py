"""hyperopt's TPE with its quantized mixture densities computed in one numpy pass.

For a quantized parameter (``quniform``, ``qloguniform``; in our spaces the sizes, batch size and
epochs-like integers), hyperopt 0.3's ``GMM1_lpdf`` and ``LGMM1_lpdf`` loop in Python over
every component of the Parzen mixture, and the mixture has one component per observation. At
3,000 finished trials that loop was most of a suggestion (profile of ``StudyDriver.step``:
90,000 calls of ``normal_cdf`` on 24-element arrays). hyperopt has no option to avoid it.

``install()`` swaps those two functions in hyperopt's symbol table (``pyll.scope``) for
versions that compute the same numbers on a (candidates × components) array. The sum over
components is a ``cumsum`` along that axis: it adds in the same order as hyperopt's loop, so
the result is bit for bit the same, and so are the suggestions (tests/service/test_tpe_speed.py
compares both on random mixtures and on whole suggestions). The unquantized and empty cases
are hyperopt's own code, untouched.

It also keeps the posterior graph ``tpe.suggest`` builds: hyperopt rebuilds the same pyll graph
(``build_posterior_wrapper``: a few hundred nodes, a fifth of a suggestion) on every call,
although it depends only on the space, ``prior_weight`` and ``gamma``, and the observations
enter only through the memo of each evaluation. ``install()`` wraps it to build the graph once
per ``Domain`` and those two numbers (kept on the domain); the suggestions are the same.

``install()`` is idempotent and is called where suggestions are made (service/orchestrator/suggest.py).
Both replace hyperopt internals, so they are applied only to the hyperopt they were checked
against (``CHECKED``, the version pyproject pins): under any other version ``install()`` puts
hyperopt's own code back, logs a warning once, and the suggestions are hyperopt's own (slower
at thousands of trials, never wrong).
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

import numpy as np
from hyperopt import tpe
from hyperopt.pyll import scope

__all__ = ["install", "gmm1_lpdf", "lgmm1_lpdf", "posterior_once", "ORIGINAL", "CHECKED"]

#: the hyperopt release these replacements were compared with, bit for bit (pyproject pins it)
CHECKED = "0.3.0"
log = logging.getLogger("sru_hpo.tpe_speed")
_warned: set[str] = set()

#: hyperopt's own implementations, kept for the unquantized cases and for the tests
ORIGINAL = {"GMM1_lpdf": tpe.GMM1_lpdf, "LGMM1_lpdf": tpe.LGMM1_lpdf}
_BUILD_POSTERIOR = tpe.build_posterior_wrapper


def _mixture_sum(w: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """sum_k (w_k * upper[:, k] - w_k * lower[:, k]), added k = 0, 1, … as hyperopt's loop does."""
    inc = w * upper
    inc -= w * lower
    if inc.shape[1] == 0:
        return np.zeros(inc.shape[0])
    return np.cumsum(inc, axis=1)[:, -1]


def _mixture(samples: Any, weights: Any, mus: Any, sigmas: Any, low: Any, high: Any
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
    """The arguments as arrays, checked as hyperopt checks them, and the probability mass the
    truncation to [low, high] keeps (hyperopt's ``p_accept``)."""
    samples, weights, mus, sigmas = map(np.asarray, (samples, weights, mus, sigmas))
    if weights.ndim != 1 or mus.ndim != 1 or sigmas.ndim != 1:
        raise TypeError("need vectors of weights, mus and sigmas")
    if not len(weights) == len(mus) == len(sigmas):
        raise ValueError("weights, mus and sigmas differ in length")
    p_accept: Any = 1
    if low is not None or high is not None:
        p_accept = np.sum(weights * (tpe.normal_cdf(high, mus, sigmas)
                                     - tpe.normal_cdf(low, mus, sigmas)))
    return samples, weights, mus, sigmas, p_accept


def gmm1_lpdf(samples: Any, weights: Any, mus: Any, sigmas: Any, low: Any = None,
              high: Any = None, q: Any = None) -> np.ndarray:
    """Log density of ``samples`` under a truncated, quantized normal mixture (hyperopt's
    ``GMM1_lpdf``)."""
    if q is None or np.asarray(samples).size == 0:
        return ORIGINAL["GMM1_lpdf"](samples, weights, mus, sigmas, low, high, q)
    return _quantized_lpdf(samples, weights, mus, sigmas, low, high, q, log=False)


def lgmm1_lpdf(samples: Any, weights: Any, mus: Any, sigmas: Any, low: Any = None,
               high: Any = None, q: Any = None) -> np.ndarray:
    """Log density of ``samples`` under a truncated, quantized log-normal mixture (hyperopt's
    ``LGMM1_lpdf``)."""
    if q is None or np.asarray(samples).size == 0:
        return ORIGINAL["LGMM1_lpdf"](samples, weights, mus, sigmas, low, high, q)
    return _quantized_lpdf(samples, weights, mus, sigmas, low, high, q, log=True)


def _quantized_lpdf(samples: Any, weights: Any, mus: Any, sigmas: Any, low: Any, high: Any,
                    q: Any, *, log: bool) -> np.ndarray:
    """The mass of [x - q/2, x + q/2] (cut to the bounds) under the mixture, as a log density.
    With ``log`` the components are log-normal and the bounds are in log space, as in hyperopt."""
    samples, weights, mus, sigmas, p_accept = _mixture(samples, weights, mus, sigmas, low, high)
    edge, cdf = (np.exp, tpe.lognormal_cdf) if log else ((lambda b: b), tpe.normal_cdf)
    flat = samples.flatten()
    ubound = flat + q / 2 if high is None else np.minimum(flat + q / 2, edge(high))
    lbound = flat - q / 2 if low is None else np.maximum(flat - q / 2, edge(low))
    if log:
        lbound = np.maximum(0, lbound)
    prob = _mixture_sum(weights, cdf(ubound[:, None], mus, sigmas),
                        cdf(lbound[:, None], mus, sigmas))
    return (np.log(prob) - np.log(p_accept)).reshape(samples.shape)


def posterior_once(domain: Any, prior_weight: float, gamma: float) -> Any:
    """hyperopt's ``build_posterior_wrapper``, built once per (domain, prior_weight, gamma)."""
    graphs = domain.__dict__.setdefault("_sru_hpo_posteriors", {})
    key = (float(prior_weight), float(gamma))
    if key not in graphs:
        graphs[key] = _BUILD_POSTERIOR(domain, prior_weight, gamma)
    return graphs[key]


def install(hyperopt_version: str | None = None) -> bool:
    """Point hyperopt's symbol table at the one-pass versions and keep its posterior graphs
    (idempotent); True when done. Under a hyperopt other than ``CHECKED`` (``hyperopt_version``
    stands for the installed one in tests) hyperopt's own code is put back and False returned."""
    version = hyperopt_version or metadata.version("hyperopt")
    if version != CHECKED:
        scope._impls.update(ORIGINAL)
        tpe.build_posterior_wrapper = _BUILD_POSTERIOR
        if version not in _warned:
            _warned.add(version)
            log.warning("hyperopt %s is not the %s service/orchestrator/tpe_speed.py was checked against: "
                        "using hyperopt's own TPE code (slower at thousands of trials)",
                        version, CHECKED)
        return False
    scope._impls["GMM1_lpdf"] = gmm1_lpdf
    scope._impls["LGMM1_lpdf"] = lgmm1_lpdf
    tpe.build_posterior_wrapper = posterior_once
    return True
