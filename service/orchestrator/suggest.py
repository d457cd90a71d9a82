"""New trials for a study: warm-start points first, then TPE (or random) suggestions.

**What TPE sees** (BOHB's model, Falkner et al. 2018, with Optuna's constant liar):

- *One rung.* With ASHA or Hyperband TPE models the scores at the highest rung (the top first)
  with at least d + 2 observations, d the number of searched parameters; without rungs, the
  finished trials' best validation accuracy. Scores of different rungs are never mixed.
- *Trials cut below that rung count as bad.* A trial that ASHA stopped (or keeps paused) below
  the modelled rung lost at a lower rung; it enters with the worst observed loss. BOHB leaves
  such trials out; measured on the replay benchmark that threw away what the cut had learnt
  (TPE + ASHA's median regret at 30 R on MFHartmann6: 1.47 left out, 0.71 counted as bad).
- *Pending trials are liars.* A trial queued or running toward that rung (or, without rungs,
  any queued or running trial) enters with the worst observed loss too (Optuna's
  ``constant_liar``), so that parallel suggestions spread out instead of piling onto one mode.
  Neither kind gets hyperopt's infinite loss: losses stay finite numbers.
- *Infeasible trials count as bad.* A trial whose parameters made the model raise enters with
  the worst observed loss, so TPE moves away from its region instead of ignoring it.
- *Start-up.* While no rung has d + 2 observations, suggestions are random (hyperopt's default
  is 20 trials, and it counts pending ones).
- *A random fraction.* A share ``random_fraction`` of the suggestions after the start-up is
  random (BOHB's ρ; default 1/3 with rungs, 0 without), drawn from (seed, tid).

**No duplicates.** A suggestion equal to a queued or running configuration is drawn again (up to
10 times); only a space that small lets a duplicate through.

A new configuration gets its bracket (Hyperband) and the epoch it trains to before its first
pause; where the budget does not fit that segment (``fits``), it joins the highest bracket whose
first rung fits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from hyperopt import Domain, rand, space_eval, tpe
from hyperopt.base import miscs_update_idxs_vals

from search_spaces.schema import SpaceSpec, flatten_sample, point_to_vals, to_hyperopt
from service.orchestrator import tpe_speed
from trials.cache import TrialCache
from trials.jobs import JobSpec
from trials.mongo_trials import MongoTrials
from trials.records import HyperoptDoc, JobRecord, Params, Study, observed
from trials.scheduling import bracket_for, bracket_weights, model_epoch, uniform_draw
from trials.states import JobKind, JobState, Outcome

__all__ = ["Suggester", "REDRAWS"]

REDRAWS = 10  # draws of a suggestion that duplicates a pending configuration before giving up


def _never_called(_: Any) -> float:  # the workers evaluate; hyperopt only needs a Domain
    raise RuntimeError("trials are evaluated by workers, not in the service")


def _score(t: JobRecord, epoch: int | None) -> float | None:
    if t.outcome == Outcome.INFEASIBLE:  # no score: it enters as the worst observed
        return None
    if epoch is None:  # no rungs: the finished trial's best validation accuracy
        return t.result.best_val_acc if t.state == JobState.DONE else None
    return t.result.rung_scores.get(str(epoch))


class Suggester:
    def __init__(self, study: Study, cache: TrialCache) -> None:
        tpe_speed.install()  # hyperopt's TPE, its quantized densities in one numpy pass
        self.study, self.cache = study, cache
        self.spec = SpaceSpec.model_validate(dict(study.space))
        self.domain = Domain(_never_called, to_hyperopt(self.spec))
        self.grid, self.top = study.grid, study.trial_epochs
        sched = study.scheduler
        self.weights = (bracket_weights(len(self.grid), sched.reduction)
                        if sched.rule == "hyperband" else [1])
        self.n_min = sum(1 for v in self.spec.parsed.values() if hasattr(v, "type")) + 2
        self.rho = study.rho
        # tid -> (the cached record, the key it was viewed under, the view's document): a
        # document is rewritten only when the cache replaced its record (one per version)
        self._views: dict[int, tuple[JobRecord, tuple, HyperoptDoc]] = {}

    # -- what TPE sees -----------------------------------------------------------------------------
    def model_view(self, trials: list[JobRecord]) -> list[HyperoptDoc] | None:
        """The trials TPE reads, each with its loss at the modelled rung (pending ones and those
        cut below it with the worst observed loss); None while there are too few observations
        (start-up)."""
        if self.grid:
            epoch = model_epoch(trials, self.grid, self.top, self.n_min)
            if epoch is None:
                return None
        else:
            epoch = None
        scores = {t.tid: s for t in trials if (s := _score(t, epoch)) is not None}
        if len(scores) < self.n_min:
            return None
        liar = -min(scores.values())  # the worst observed loss
        view = []
        for t in trials:
            if t.tid in scores:
                key: tuple = (epoch, -scores[t.tid])
            elif t.active and not self._headed_to(t, epoch):
                continue  # on its way to a lower rung: nothing is known about it yet
            elif t.active or (t.state == JobState.DONE and (
                    epoch is not None or t.outcome == Outcome.INFEASIBLE)):
                key = (epoch, liar)  # pending toward the rung, cut below it, or infeasible
            else:
                continue
            seen = self._views.get(t.tid)
            if seen is None or seen[0] is not t or seen[1] != key:
                seen = (t, key, observed(t, key[1]))
                self._views[t.tid] = seen
            view.append(seen[2])
        return view

    @staticmethod
    def _headed_to(t: JobRecord, epoch: int | None) -> bool:
        """A queued or running trial will report at ``epoch`` (its target reaches it)."""
        return epoch is None or t.target >= epoch

    def _trials_and_algo(self, tid: int):  # noqa: ANN202
        records = self.cache.of_kind(JobKind.TRIAL)
        view = self.model_view(records) if self.study.algorithm == "tpe" else None
        if view is None or uniform_draw(self.study.seed, tid, 1) < self.rho:
            return MongoTrials(self.cache), rand.suggest
        return (MongoTrials(self.cache, view=lambda _docs: view),
                functools.partial(tpe.suggest, n_startup_jobs=0))

    # -- one new trial ------------------------------------------------------------------------------
    def new_trial(self, index: int, job_fields,  # noqa: ANN001
                  fits: Callable[[int], bool] | None = None) -> int:
        """Insert the ``index``-th configuration of the study (0-based); ``fits(epoch)`` says
        whether the budget fits a first segment to ``epoch`` (the caller made sure the first
        rung fits). Returns the epoch that segment trains to."""
        study, domain = self.study, self.domain
        tid = self.cache.jobs.next_tids(self.cache.sid, 1)[0]
        trials, algo = self._trials_and_algo(tid)
        warm = study.warm_start
        if index < len(warm):  # warm-start points go first, in the order given
            vals = point_to_vals(self.spec, warm[index])
            misc = {"tid": tid, "cmd": domain.cmd, "workdir": domain.workdir}
            miscs_update_idxs_vals([misc], {k: [tid] for k in vals}, vals)
            docs = trials.new_trial_docs([tid], [None], [domain.new_result()], [misc])
            params = self._params(docs[0])
        else:
            docs, params = self._draw(tid, trials, algo)
        fields = self._fields(tid, params, fits)
        docs[0].update(job_fields(**fields))
        trials.insert_trial_docs(docs)
        return int(fields.get("limit") or fields["epochs"])

    def _draw(self, tid: int, trials: MongoTrials, algo) -> tuple[list[dict], dict]:  # noqa: ANN001
        pending = [t.params for t in self.cache.of_kind(JobKind.TRIAL) if t.active]
        base = (self.study.seed * 100_003 + tid) % 2**31
        for k in range(REDRAWS):
            docs = algo([tid], self.domain, trials, seed=(base + 7_919 * k) % 2**31)
            params = self._params(docs[0])
            if self._full(params) not in pending:
                break
        return docs, params

    def _full(self, params: Params) -> Params:
        """What a trial of the study trains: the searched parameters with the fixed ones."""
        s = self.study
        return {**params, "model": s.model, "dataset": s.dataset, "seed": s.seed}

    def _params(self, doc: HyperoptDoc) -> Params:
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
        return flatten_sample(self.spec, space_eval(self.domain.expr, vals))

    def _fields(self, tid: int, params: Params, fits: Callable[[int], bool] | None) -> JobSpec:
        study = self.study
        fields: JobSpec = {"kind": JobKind.TRIAL.value, "epochs": study.trial_epochs,
                           "params": self._full(params)}
        if study.trial_timeout:
            fields["timeout"] = study.trial_timeout
        sched = study.scheduler
        if sched.rule == "median":
            fields["pruning"] = {"rule": sched.rule, "warmup": sched.warmup,
                                 "min_trials": sched.min_trials}
        if self.grid:
            bracket = bracket_for(tid, study.seed, self.weights)
            target = self.grid[bracket] if bracket < len(self.grid) else self.top
            while fits is not None and bracket > 0 and not fits(target):
                bracket -= 1  # a lower bracket, whose first rung the budget fits
                target = self.grid[bracket]
            fields.update({"bracket": bracket, "rungs": self.grid,
                           "limit": target if target < self.top else None})
        return fields
