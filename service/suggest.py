"""New trials for a study: warm-start points first, then TPE (or random) suggestions.

With ASHA or Hyperband, TPE models the scores at one rung (trials/scheduling.py explains the
rule): every trial's loss in the view TPE reads is its score at that rung, and trials without one
are pending. A new configuration gets its bracket (Hyperband) and the epoch it trains to before
its first pause.
"""

from __future__ import annotations

import functools
from typing import Any

from hyperopt import Domain, rand, space_eval, tpe
from hyperopt.base import miscs_update_idxs_vals

from search_spaces.schema import SpaceSpec, flatten_sample, point_to_vals, to_hyperopt
from service import tpe_speed
from trials.cache import TrialCache
from trials.mongo_trials import MongoTrials
from trials.scheduling import bracket_for, bracket_weights, grid_of, model_epoch
from trials.states import JobKind, JobState

__all__ = ["Suggester"]

TPE_STARTUP = 20  # hyperopt's default number of random start-up trials


def _never_called(_: Any) -> float:  # the workers evaluate; hyperopt only needs a Domain
    raise RuntimeError("trials are evaluated by workers, not in the service")


class Suggester:
    def __init__(self, study: dict[str, Any], cache: TrialCache) -> None:
        tpe_speed.install()  # hyperopt's TPE, its quantized densities in one numpy pass
        self.study, self.cache = study, cache
        self.spec = SpaceSpec.model_validate(study["space"])
        self.domain = Domain(_never_called, to_hyperopt(self.spec))
        self.grid = grid_of(study)
        sched = study.get("scheduler") or {}
        self.rule = sched.get("rule", "off")
        self.weights = (bracket_weights(len(self.grid), sched["reduction"])
                        if self.rule == "hyperband" else [1])
        self.searched = sum(1 for v in self.spec.parsed.values() if hasattr(v, "type"))

    # -- what TPE sees -----------------------------------------------------------------------------
    def _rung_view(self, docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Each trial's loss at the rung TPE models; trials without a score there are pending.
        Returns the view and how many start-up trials TPE should wait for."""
        top, n_min = self.study["trial_epochs"], self.searched + 2
        epoch = model_epoch(docs, self.grid, top, n_min)
        if epoch is None:
            return docs, TPE_STARTUP
        view = []
        for d in docs:
            score = ((d.get("result") or {}).get("rung_scores") or {}).get(str(epoch))
            if score is None:
                view.append({**d, "state": int(JobState.RUNNING), "result": {"status": "new"}})
            else:
                view.append({**d, "state": int(JobState.DONE),
                             "result": {**d["result"], "status": "ok", "loss": -score}})
        return view, TPE_STARTUP if epoch == self.grid[0] else n_min

    def _trials_and_algo(self):  # noqa: ANN202
        if self.study["algorithm"] != "tpe":
            return MongoTrials(self.cache), rand.suggest
        if not self.grid:
            return MongoTrials(self.cache), tpe.suggest
        view, startup = self._rung_view(self.cache.of_kind(JobKind.TRIAL))
        trials = MongoTrials(self.cache, view=lambda _docs: view)
        return trials, functools.partial(tpe.suggest, n_startup_jobs=startup)

    # -- one new trial ------------------------------------------------------------------------------
    def new_trial(self, index: int, job_fields) -> None:  # noqa: ANN001
        """Insert the ``index``-th configuration of the study (0-based)."""
        study, domain = self.study, self.domain
        trials, algo = self._trials_and_algo()
        (tid,) = trials.new_trial_ids(1)
        warm = study.get("warm_start") or []
        if index < len(warm):  # warm-start points go first, in the order given
            vals = point_to_vals(self.spec, warm[index])
            misc = {"tid": tid, "cmd": domain.cmd, "workdir": domain.workdir}
            miscs_update_idxs_vals([misc], {k: [tid] for k in vals}, vals)
            docs = trials.new_trial_docs([tid], [None], [domain.new_result()], [misc])
        else:
            docs = algo([tid], domain, trials, seed=(study["seed"] * 100_003 + tid) % 2**31)
        for doc in docs:
            vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
            params = flatten_sample(self.spec, space_eval(domain.expr, vals))
            doc.update(job_fields(**self._fields(tid, params)))
        trials.insert_trial_docs(docs)

    def _fields(self, tid: int, params: dict[str, Any]) -> dict[str, Any]:
        study = self.study
        fields: dict[str, Any] = {
            "kind": JobKind.TRIAL.value, "epochs": study["trial_epochs"],
            "params": {**params, "model": study["model"], "dataset": study["dataset"],
                       "seed": study["seed"]}}
        sched = study.get("scheduler") or {}
        if sched.get("rule") == "median":
            fields["pruning"] = {k: sched[k] for k in ("rule", "warmup", "min_trials")}
        if self.grid:
            bracket = bracket_for(tid, study["seed"], self.weights)
            fields.update(bracket=bracket, rungs=self.grid,
                          limit=self.grid[bracket] if bracket < len(self.grid) else None)
        return fields
