"""The study driver: keeps a study's queue filled, promotes paused trials, then retrains the best.

``StudyDriver(store, sid).step()`` is one pass. It reads the study document, holds the study's
driver lease, brings its job cache up to date (only what changed since the last pass), and moves
the study one step through its states, each move a compare-and-set:

1. queued -> running.
2. running: with ASHA/Hyperband, promote every paused trial that is now in the top 1/η of its
   rung (trials/scheduling.py). Then top the queue up to ``parallelism`` new+running jobs with
   new configurations (service/suggest.py) while fewer than ``n_trials`` exist. If the first
   ``SRU_HPO_FAIL_FAST_TRIALS`` finished trials all failed with the same error, the study fails
   at once with that error.
3. The search is over when ``n_trials`` configurations finished (with ASHA: none runs, none
   waits in the queue and no paused one can be promoted; those still paused end as
   ``stopped_at_rung``). The ``retrain_top_k`` best configurations are queued for
   ``retrain_epochs`` each -> retraining.
4. retraining: when every retrain ended, the one with the best validation accuracy is tested
   once on the test set (a ``test`` job reads its checkpoint) -> completed; no retrain
   finished, or the test failed -> failed.
5. After a terminal state the driver keeps reading until no job of the study runs any more, so
   the counts it publishes settle.

Every pass writes the study's ``summary`` (counts, best trial, error groups, epochs spent and
saved, promotions, the top-k rank correlation) when it changed: the API reads studies in O(1)
from it. The pass is idempotent and all its state is in MongoDB, so the service can be killed at
any point without duplicating a trial.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import TYPE_CHECKING, Any

from trials.cache import TrialCache
from trials.scheduling import grid_of, promotions, search_rank
from trials.states import JobKind, JobState, Outcome, StudyState
from trials.store import Store

if TYPE_CHECKING:
    from service.suggest import Suggester

__all__ = ["StudyDriver", "make_holder", "error_groups", "spearman"]

log = logging.getLogger("sru_hpo.driver")
RUNNING, RETRAINING = StudyState.RUNNING, StudyState.RETRAINING
ACTIVE = (JobState.NEW, JobState.RUNNING)


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def error_groups(docs: list[dict[str, Any]], keep: int = 5) -> list[dict[str, Any]]:
    """Errored jobs grouped by message, most frequent first: {error, count, tids (first 10)}."""
    groups: dict[str, list[int]] = {}
    for d in sorted(docs, key=lambda d: d["tid"]):
        if d["state"] == JobState.ERROR:
            groups.setdefault(str(d.get("error") or "unknown error"), []).append(d["tid"])
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))
    return [{"error": e, "count": len(t), "tids": t[:10]} for e, t in ranked[:keep]]


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (scipy's), None for fewer than 3 pairs or no variation."""
    import math

    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    r = float(spearmanr(xs, ys).statistic)
    return r if math.isfinite(r) else None


class StudyDriver:
    def __init__(self, store: Store, sid: str, *, holder: str | None = None,
                 lease_seconds: float = 10.0, fail_fast: int = 3) -> None:
        self.store, self.sid = store, sid
        self.holder = holder or make_holder()
        self.lease_seconds, self.fail_fast = lease_seconds, fail_fast
        self.cache = TrialCache(store.jobs, sid)
        self._suggester: Suggester | None = None
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
        for d in self.cache.of_kind(JobKind.TRIAL):  # ASHA: nothing waits at a rung any more
            if d.get("outcome") == Outcome.PAUSED.value:
                self.store.jobs.stop_at_rung(self.sid, d["tid"])
        if states & set(ACTIVE):
            return False
        self.store.studies.mark_settled(self.sid)
        log.info("study %s %s; counts %s", self.sid, now["state"], self.cache.counts())
        return True

    # -- search ------------------------------------------------------------------------------------
    def _search(self, study: dict[str, Any]) -> None:
        if self._fail_fast(study):
            return
        promoted = self._promote(study)
        counts = self.cache.counts()
        created = sum(counts[s.label] for s in JobState)
        room = min(study["parallelism"] - counts["new"] - counts["running"],  # promoted: new
                   study["n_trials"] - created)
        if room > 0:
            self._suggest(study, created, room)
        elif promoted == 0 and self._search_over(study, counts, created):
            self._start_retrain(study)

    def _search_over(self, study: dict[str, Any], counts: dict[str, int], created: int) -> bool:
        if not grid_of(study):
            return counts["finished"] >= study["n_trials"]
        return created >= study["n_trials"] and counts["new"] + counts["running"] == 0

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
        error = f"the first {k} finished trials failed with the same error: {messages.pop()}"
        if self._end(study, RUNNING, StudyState.FAILED, error=error):
            self.store.jobs.cancel_study(self.sid)
            log.warning("study %s failed fast: %s", self.sid, error)
        return True

    def _promote(self, study: dict[str, Any]) -> int:
        """ASHA: send every paused trial that is now in the top 1/η of its rung on."""
        grid = grid_of(study)
        if not grid:
            return 0
        trials = self.cache.of_kind(JobKind.TRIAL)
        n = 0
        for tid, limit in promotions(trials, grid, study["trial_epochs"],
                                     study["scheduler"]["reduction"]):
            if self.store.jobs.promote(self.sid, tid, limit):
                n += 1
                log.info("study %s: trial %d promoted to epoch %d", self.sid, tid, limit)
        if n:
            self.cache.refresh()
        return n

    def _suggest(self, study: dict[str, Any], created: int, room: int) -> None:
        if self._suggester is None:
            # imported on the first suggestion: hyperopt pulls in SciPy (~2 s of the API's start)
            from service.suggest import Suggester

            self._suggester = Suggester(study, self.cache)
        for i in range(room):
            # A cancel or delete may land while this pass inserts: look before every insert.
            now = self.store.studies.get(self.sid)
            if now is None or now["state"] != RUNNING:
                return
            self._suggester.new_trial(created + i, self.store.jobs.job_fields)
        log.info("study %s: queued %d trial(s)", self.sid, room)

    # -- retrain and test -------------------------------------------------------------------------
    def _ranked(self, study: dict[str, Any]) -> list[dict[str, Any]]:
        """Search trials with a result, best first: with ASHA by the highest rung reached and
        the score there; otherwise by best validation accuracy."""
        grid, top = grid_of(study), study["trial_epochs"]
        done = [d for d in self.cache.of_kind(JobKind.TRIAL) if d["state"] == JobState.DONE]
        if grid:
            return sorted(done, key=lambda d: (tuple(-x for x in search_rank(d, grid, top)),
                                               d["tid"]))
        return sorted(done, key=lambda d: (-float(d["result"].get("best_val_acc", 0.0)), d["tid"]))

    def _start_retrain(self, study: dict[str, Any]) -> None:
        ranked = self._ranked(study)
        if not ranked:
            groups = error_groups(self.cache.of_kind(JobKind.TRIAL))
            why = f"; most common error: {groups[0]['error']}" if groups else ""
            self._end(study, RUNNING, StudyState.FAILED,
                      error=f"no search trial finished successfully{why}")
            return
        for d in self.cache.of_kind(JobKind.TRIAL):  # ASHA: those still paused end here
            if d.get("outcome") == Outcome.PAUSED.value:
                self.store.jobs.stop_at_rung(self.sid, d["tid"])
        self._enqueue_retrains(study, ranked)
        if self.store.studies.transition(self.sid, [RUNNING], RETRAINING,
                                         search_finished=self.store.clock.now()):
            log.info("study %s: search done, retraining trial(s) %s", self.sid,
                     [d["tid"] for d in ranked[: study.get("retrain_top_k", 1)]])

    def _enqueue_retrains(self, study: dict[str, Any], ranked: list[dict[str, Any]]) -> None:
        if self.cache.of_kind(JobKind.RETRAIN):
            return
        for d in ranked[: study.get("retrain_top_k", 1)]:
            self.store.jobs.enqueue(self.sid, kind=JobKind.RETRAIN.value, params=d["params"],
                                    epochs=study["retrain_epochs"], source=d["_id"])

    def _retrain(self, study: dict[str, Any]) -> None:
        retrains = self.cache.of_kind(JobKind.RETRAIN)
        if not retrains:  # killed between the state change and the insert: do it again
            self.cache.refresh(full=True)
            self._enqueue_retrains(study, self._ranked(study))
            return
        if any(not JobState(r["state"]).is_terminal() for r in retrains):
            return
        done = [r for r in retrains if r["state"] == JobState.DONE]
        if not done:
            self._end(study, RETRAINING, StudyState.FAILED,
                      error=f"retrain failed: {retrains[0].get('error')}")
            return
        winner = max(done, key=lambda r: (r["result"].get("best_val_acc", 0.0), -r["tid"]))
        tests = self.cache.of_kind(JobKind.TEST)
        if not tests:  # the one evaluation on the test set, of the chosen retrain only
            self.store.jobs.enqueue(self.sid, kind=JobKind.TEST.value, params=winner["params"],
                                    epochs=1, source=winner["_id"])
            return
        test = tests[0]
        if test["state"] == JobState.DONE:
            if self._end(study, RETRAINING, StudyState.COMPLETED, retrain_tid=winner["tid"]):
                log.info("study %s completed: test_acc %s", self.sid,
                         test["result"].get("test_acc"))
        elif JobState(test["state"]).is_terminal():
            self._end(study, RETRAINING, StudyState.FAILED,
                      error=f"test evaluation failed: {test.get('error')}")

    # -- the published summary -----------------------------------------------------------------------
    def summary(self, study: dict[str, Any]) -> dict[str, Any]:
        """Counts, best trial, error groups, epochs spent and saved, the retrain, from the cache
        (computed once per change of the cache; the study's own fields it reads never change)."""
        return self.cache.memoized("summary", lambda: self._summarize(study))

    def _summarize(self, study: dict[str, Any]) -> dict[str, Any]:
        trials = self.cache.of_kind(JobKind.TRIAL)
        ranked = self._ranked(study)
        best = ranked[0] if ranked else None
        ran = [int((d.get("result") or {}).get("epochs_run") or 0) for d in trials
               if d["state"] == JobState.DONE]
        tests = self.cache.of_kind(JobKind.TEST)
        test = tests[0] if tests else None
        return {
            "counts": self.cache.counts(),
            "best": None if best is None else {
                "tid": best["tid"], "best_val_acc": best["result"].get("best_val_acc"),
                "best_epoch": best["result"].get("best_epoch"), "outcome": best.get("outcome"),
                "epochs_run": best["result"].get("epochs_run"), "params": best["params"]},
            "error_groups": error_groups(trials),
            "epochs_spent": sum(ran),
            "epochs_saved": sum(study["trial_epochs"] - r for r in ran),
            "promotions": sum(int(d.get("promotions") or 0) for d in trials),
            "retrain_state": self._retrain_state(test),
            "test_acc": (test.get("result") or {}).get("test_acc") if test else None,
            "rank_correlation": self._rank_correlation(),
        }

    def _retrain_state(self, test: dict[str, Any] | None) -> str:
        retrains = self.cache.of_kind(JobKind.RETRAIN)
        if not retrains:
            return "pending"
        if test is not None and JobState(test["state"]).is_terminal():
            return JobState(test["state"]).label
        if any(r["state"] == JobState.RUNNING for r in retrains + ([test] if test else [])):
            return "running"
        return "new" if any(r["state"] == JobState.NEW for r in retrains) else "running"

    def _rank_correlation(self) -> float | None:
        """Search score against retrain validation accuracy over the finished retrains."""
        pairs = []
        for r in self.cache.of_kind(JobKind.RETRAIN):
            src = next((d for d in self.cache.docs.values() if d["_id"] == r.get("source")), None)
            if r["state"] == JobState.DONE and src is not None:
                pairs.append((float(src["result"].get("best_val_acc", 0.0)),
                              float(r["result"].get("best_val_acc", 0.0))))
        return spearman([p[0] for p in pairs], [p[1] for p in pairs])

    def _end(self, study: dict[str, Any], frm: StudyState, to: StudyState, **fields: Any) -> bool:
        """End the study with its summary in the same write, so that no reader sees the final
        state beside the counts (or test accuracy) of a pass before."""
        summary = self.summary(study)
        if not self.store.studies.end(self.sid, [frm], to, summary=summary, **fields):
            return False
        self._summary = summary
        return True

    def _publish(self, study: dict[str, Any]) -> None:
        summary = self.summary(study)
        if summary != self._summary or summary != study.get("summary"):
            if self.store.studies.write_summary(self.sid, self.holder, summary):
                self._summary = summary
