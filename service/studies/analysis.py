"""What a finished search says about its parameters: importance, and the trials as a table.

**Importance** is a random forest's impurity importance (scikit-learn's
``RandomForestRegressor.feature_importances_``, 200 trees, fixed seed) of each searched parameter
for the trials' best validation accuracy, normalised to sum 1. It is the estimate Optuna's
default fANOVA evaluator starts from (fANOVA fits the same kind of forest, then decomposes its
variance). Numbers go in as they are searched: log-scale parameters as log10, a choice as the
index of its option, a parameter a trial's sub-space did not draw as -1. Below ``MIN_TRIALS``
finished trials there is no estimate, and the answer says so.

**The trials table** (``trials.csv``, and the ``sru-hpo report`` files): one row per search
trial, one column per parameter.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from typing import Any

from search_spaces.schema import Choice, Dist, LogUniform, dist_of
from service.studies.schemas import Importance, ParamImportance
from trials.records import JobRecord
from trials.states import JobState

__all__ = ["importance", "trials_table", "to_csv", "MIN_TRIALS", "searched_params"]

MIN_TRIALS = 10
TABLE_COLUMNS = ["tid", "state", "outcome", "best_val_acc", "best_epoch", "epochs_run",
                 "retries", "worker", "seconds", "error"]


def searched_params(space: Mapping[str, Any]) -> dict[str, Dist]:
    """Every parameter a trial of ``space`` (a resolved space, as a study stores it) can draw
    -> its distribution (sub-spaces flattened, the last definition winning for a name several
    sub-spaces set)."""
    out: dict[str, Dist] = {}

    def walk(params: Mapping[str, Any]) -> None:
        for name, spec in params.items():
            if not isinstance(spec, dict) or "type" not in spec:
                continue  # a constant
            dist = dist_of(spec)
            if isinstance(dist, Choice) and any(isinstance(o, dict) for o in dist.options):
                for o in dist.options:
                    walk(o)
            else:
                out[name] = dist

    walk(space.get("params") or {})
    return out


def _encode(spec: Dist, value: Any) -> float:
    if value is None:
        return -1.0
    if isinstance(spec, Choice):
        return float(spec.options.index(value)) if value in spec.options else -1.0
    v = float(value)
    return math.log10(v) if isinstance(spec, LogUniform) and v > 0 else v


def importance(space: Mapping[str, Any], trials: list[JobRecord]) -> Importance:
    """Importance of each searched parameter over finished trials."""
    params = searched_params(space)
    done = [t for t in trials if t.result.best_val_acc is not None and t.state == JobState.DONE]
    base = Importance(method="random-forest impurity importance (scikit-learn, 200 trees)",
                      min_trials=MIN_TRIALS, n_trials=len(done))
    if len(done) < MIN_TRIALS or not params:
        return base.model_copy(update={"message": f"{len(done)} finished trial(s); importance "
                                                  f"needs at least {MIN_TRIALS}"})
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    names = sorted(params)
    x = np.array([[_encode(params[n], t.params.get(n)) for n in names] for t in done])
    y = np.array([t.result.best_val_acc for t in done])
    if np.ptp(y) == 0:
        return base.model_copy(update={"message": "every finished trial scored the same; "
                                                  "nothing to explain"})
    forest = RandomForestRegressor(n_estimators=200, random_state=0, min_samples_leaf=2)
    forest.fit(x, y)
    ranked = sorted(zip(names, forest.feature_importances_, strict=True), key=lambda p: -p[1])
    return base.model_copy(update={"importances": [ParamImportance(param=n, importance=float(v))
                                                   for n, v in ranked]})


def trials_table(space: Mapping[str, Any], trials: list[JobRecord]
                 ) -> tuple[list[str], list[list[Any]]]:
    """(header, rows): one row per search trial, one column per searched parameter."""
    names = sorted(searched_params(space))
    rows = []
    for t in sorted(trials, key=lambda t: t.tid):
        res = t.result
        rows.append([t.tid, t.state.label, t.outcome and t.outcome.value, res.best_val_acc,
                     res.best_epoch, res.epochs_run, t.history.retries, t.history.owner, res.seconds,
                     t.error]
                    + [t.params.get(n) for n in names])
    return TABLE_COLUMNS + names, rows


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (repr(v) if isinstance(v, list) else v) for v in r])
    return buf.getvalue()
