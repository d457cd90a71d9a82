"""The study driver: keeps a study's queue filled with TPE suggestions, then retrains the best.

``StudyDriver(store, sid).step()`` is one pass. It reads the study document, holds the study's
driver lease, brings its job cache up to date (only what changed since the last pass), and moves
the study one step through its states, each move a compare-and-set:

1. queued -> running.
2. running: done + error trials count toward ``n_trials``. While fewer exist, top the queue up
   to ``parallelism`` new+running jobs: warm-start points first, then TPE (or random)
   suggestions from the whole history. If the first ``SRU_HPO_FAIL_FAST_TRIALS`` finished
   trials all failed with the same error, the study fails at once with that error.
3. When ``n_trials`` are finished: enqueue the retrain of the best configuration -> retraining.
4. retraining: when the retrain is done -> completed (its test accuracy is the study's); when it
   failed -> failed.
5. After a terminal state the driver keeps reading until no job of the study runs any more, so
   the counts it publishes settle.

Every pass writes the study's ``summary`` (counts, best trial, error groups, epochs spent) when
it changed: the API reads studies in O(1) from it. The pass is idempotent and all its state is
in MongoDB, so the service can be killed at any point without duplicating a trial.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

from hyperopt import Domain, rand, space_eval, tpe
from hyperopt.base import miscs_update_idxs_vals

from search_spaces.schema import SpaceSpec, flatten_sample, point_to_vals, to_hyperopt
from trials.cache import TrialCache
from trials.mongo_trials import MongoTrials
from trials.states import JobKind, JobState, StudyState
from trials.store import Store

__all__ = ["StudyDriver", "make_holder", "error_groups"]

log = logging.getLogger("sru_hpo.driver")
RUNNING, RETRAINING = StudyState.RUNNING, StudyState.RETRAINING


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _never_called(_: Any) -> float:  # the workers evaluate; hyperopt only needs a Domain
    raise RuntimeError("trials are evaluated by workers, not in the service")


def error_groups(docs: list[dict[str, Any]], keep: int = 5) -> list[dict[str, Any]]:
    """Errored jobs grouped by message, most frequent first: {error, count, tids (first 10)}."""
    groups: dict[str, list[int]] = {}
    for d in sorted(docs, key=lambda d: d["tid"]):
        if d["state"] == JobState.ERROR:
            groups.setdefault(str(d.get("error") or "unknown error"), []).append(d["tid"])
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return [{"error": e, "count": len(t), "tids": t[:10]} for e, t in ranked[:keep]]


class StudyDriver:
    def __init__(self, store: Store, sid: str, *, holder: str | None = None,
                 lease_seconds: float = 10.0, fail_fast: int = 3) -> None:
        self.store, self.sid = store, sid
        self.holder = holder or make_holder()
        self.lease_seconds, self.fail_fast = lease_seconds, fail_fast
        self.cache = TrialCache(store.jobs, sid)
        self._domain: tuple[SpaceSpec, Domain] | None = None
        self._summary: dict[str, Any] | None = None

    # -- one pass ----------------------------------------------------------------------------------
    def step(self) -> bool:
        """One pass over the study. Returns True when it needs no more passes."""
        studies, sid = self.store.studies, self.sid
        study = studies.get(sid)
        if study is None:  # deleted (perhaps while a pass was inserting): leave nothing behind
            self.store.purge_study(sid)
            return True
        if not studies.lease(sid, self.holder, self.lease_seconds):
            return False  # another service process drives it; take over if its lease lapses
        self.cache.refresh()
        state = StudyState(study["state"])
        if state == StudyState.QUEUED:
            if studies.transition(sid, [state], RUNNING, started=self.store.clock.now()):
                state = study["state"] = RUNNING
        if state == RUNNING:
            self._search(study)
        elif state == RETRAINING:
            self._retrain(study)
        done = self._settled(study)
        self._publish(study)
        return done

    def _settled(self, study: dict[str, Any]) -> bool:
        """True once the study ended and none of its jobs is new or running any more."""
        now = self.store.studies.get(self.sid)
        if now is None:
            self.store.purge_study(self.sid)
            return True
        study.update(now)
        if StudyState(now["state"]).active:
            return False
        states = {d["state"] for d in self.cache.docs.values()}
        if JobState.NEW in states:  # inserted by a pass that a cancel or a failure missed
            self.store.jobs.cancel_study(self.sid)
        if states & {JobState.NEW, JobState.RUNNING}:
            return False
        counts = self.cache.counts()
        self.store.studies.mark_settled(self.sid)
        log.info("study %s %s; counts %s", self.sid, now["state"], counts)
        return True

    # -- search ------------------------------------------------------------------------------------
    def _search(self, study: dict[str, Any]) -> None:
        counts = self.cache.counts()
        created = sum(counts[s.label] for s in JobState)
        if self._fail_fast(study):
            return
        room = min(study["parallelism"] - counts["new"] - counts["running"],
                   study["n_trials"] - created)
        if room > 0:
            self._suggest(study, created, room)
        elif counts["finished"] >= study["n_trials"]:
            self._start_retrain(study)

    def _fail_fast(self, study: dict[str, Any]) -> bool:
        """The first ``fail_fast`` finished trials all errored with one message: fail the study
        with it rather than spend the rest of the budget on the same error."""
        k = self.fail_fast
        finished = sorted((d for d in self.cache.of_kind(JobKind.TRIAL)
                           if JobState(d["state"]).is_finished()),
                          key=lambda d: (d.get("refresh_time") or 0, d["tid"]))[:k]
        if k < 1 or len(finished) < k or any(d["state"] != JobState.ERROR for d in finished):
            return False
        messages = {d.get("error") for d in finished}
        if len(messages) != 1:
            return False
        error = (f"the first {k} finished trials failed with the same error: "
                 f"{messages.pop()}")
        if self.store.studies.end(self.sid, [RUNNING], StudyState.FAILED, error=error):
            self.store.jobs.cancel_study(self.sid)
            log.warning("study %s failed fast: %s", self.sid, error)
        return True

    def _domain_of(self, study: dict[str, Any]) -> tuple[SpaceSpec, Domain]:
        if self._domain is None:
            spec = SpaceSpec.model_validate(study["space"])
            self._domain = (spec, Domain(_never_called, to_hyperopt(spec)))
        return self._domain

    def _job_params(self, study: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "model": study["model"], "dataset": study["dataset"],
                "seed": study["seed"]}

    def _suggest(self, study: dict[str, Any], created: int, room: int) -> None:
        spec, domain = self._domain_of(study)
        trials = MongoTrials(self.cache)
        pruning = study["pruning"] if study["pruning"].get("rule", "off") != "off" else None
        warm = study.get("warm_start") or []
        for i in range(room):
            # A cancel or delete may land while this pass inserts: look before every insert.
            now = self.store.studies.get(self.sid)
            if now is None or now["state"] != RUNNING:
                return
            index = created + i
            (tid,) = trials.new_trial_ids(1)
            if index < len(warm):  # warm-start points go first, in the order given
                vals = point_to_vals(spec, warm[index])
                misc = {"tid": tid, "cmd": domain.cmd, "workdir": domain.workdir}
                miscs_update_idxs_vals([misc], {k: [tid] for k in vals}, vals)
                docs = trials.new_trial_docs([tid], [None], [domain.new_result()], [misc])
            else:
                algo = tpe.suggest if study["algorithm"] == "tpe" else rand.suggest
                docs = algo([tid], domain, trials, seed=(study["seed"] * 100_003 + tid) % 2**31)
            for doc in docs:
                vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
                params = flatten_sample(spec, space_eval(domain.expr, vals))
                doc.update(self.store.jobs.job_fields(
                    kind=JobKind.TRIAL.value, params=self._job_params(study, params),
                    epochs=study["trial_epochs"], pruning=pruning))
            trials.insert_trial_docs(docs)
            trials.refresh()
        log.info("study %s: queued %d trial(s)", self.sid, room)

    # -- retrain -----------------------------------------------------------------------------------
    def _ranked(self) -> list[dict[str, Any]]:
        """Finished search trials, best validation accuracy first."""
        done = [d for d in self.cache.of_kind(JobKind.TRIAL) if d["state"] == JobState.DONE]
        return sorted(done, key=lambda d: (-float(d["result"].get("best_val_acc", 0.0)), d["tid"]))

    def _start_retrain(self, study: dict[str, Any]) -> None:
        ranked = self._ranked()
        if not ranked:
            groups = error_groups(self.cache.of_kind(JobKind.TRIAL))
            why = f"; most common error: {groups[0]['error']}" if groups else ""
            self.store.studies.end(self.sid, [RUNNING], StudyState.FAILED,
                                   error=f"no search trial finished successfully{why}")
            return
        best = ranked[0]
        if not self.cache.of_kind(JobKind.RETRAIN):
            self.store.jobs.enqueue(self.sid, kind=JobKind.RETRAIN.value, params=best["params"],
                                    epochs=study["retrain_epochs"])
        if self.store.studies.transition(self.sid, [RUNNING], RETRAINING,
                                         search_finished=self.store.clock.now()):
            log.info("study %s: search done, retraining trial %d", self.sid, best["tid"])

    def _retrain(self, study: dict[str, Any]) -> None:
        jobs = self.cache.of_kind(JobKind.RETRAIN)
        if not jobs:  # killed between the state change and the insert: do it again
            self.cache.refresh(full=True)
            if not self.cache.of_kind(JobKind.RETRAIN):
                self.store.jobs.enqueue(self.sid, kind=JobKind.RETRAIN.value,
                                        params=self._ranked()[0]["params"],
                                        epochs=study["retrain_epochs"])
            return
        job = jobs[0]
        if job["state"] == JobState.DONE:  # its result (test accuracy) stays on the job
            if self.store.studies.end(self.sid, [RETRAINING], StudyState.COMPLETED,
                                      retrain_tid=job["tid"]):
                log.info("study %s completed: test_acc %s", self.sid,
                         job["result"].get("test_acc"))
        elif JobState(job["state"]).is_terminal():
            self.store.studies.end(
                self.sid, [RETRAINING], StudyState.FAILED,
                error=f"retrain job {JobState(job['state']).label}: {job.get('error')}")

    # -- the published summary -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts, best trial, error groups and epochs spent, from the cache."""
        trials = self.cache.of_kind(JobKind.TRIAL)
        ranked = self._ranked()
        best = ranked[0] if ranked else None
        retrains = self.cache.of_kind(JobKind.RETRAIN)
        retrain = retrains[0] if retrains else None
        return {
            "counts": self.cache.counts(),
            "best": None if best is None else {
                "tid": best["tid"], "best_val_acc": best["result"].get("best_val_acc"),
                "best_epoch": best["result"].get("best_epoch"), "outcome": best.get("outcome"),
                "epochs_run": best["result"].get("epochs_run"), "params": best["params"]},
            "error_groups": error_groups(trials),
            "epochs_spent": sum(int((d.get("result") or {}).get("epochs_run") or 0)
                                for d in trials),
            "retrain_state": JobState(retrain["state"]).label if retrain else "pending",
            "test_acc": (retrain.get("result") or {}).get("test_acc") if retrain else None,
        }

    def _publish(self, study: dict[str, Any]) -> None:
        summary = self.summary()
        if summary != self._summary or summary != study.get("summary"):
            if self.store.studies.write_summary(self.sid, self.holder, summary):
                self._summary = summary
