"""The study driver: keeps a study's queue filled, promotes paused trials, then retrains the best.

``StudyDriver(store, sid).step()`` is one pass. It reads the study document, holds the study's
driver lease, brings its job cache up to date (only what changed since the last pass), and moves
the study one step through its states, each move a compare-and-set:

1. queued -> running.
2. running: one search pass (service/orchestrator/search.py: promotions, new configurations within
   ``n_trials`` and the budget, the end of the search that takes a trial to the top). If the
   first ``SRU_HPO_FAIL_FAST_TRIALS`` finished trials all failed with the same error, the study
   fails at once with that error.
3. When the search is over (trials still paused end as ``stopped_at_rung``), the
   ``retrain_top_k`` best configurations (the highest rung reached first) are queued for
   ``retrain_epochs`` each -> retraining.
4. retraining: when every candidate ended, the one with the best validation accuracy wins;
   it is retrained with ``retrain_seeds`` seeds and each seed run is tested once on the test
   set (a ``test`` job reads its checkpoint; service/orchestrator/evaluation.py) -> completed; no retrain
   finished, or no test did -> failed.
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
from collections.abc import Mapping
from typing import Any

from service.orchestrator.evaluation import FinalEvaluation
from service.orchestrator.search import Search
from service.orchestrator.summary import error_groups, summarize
from trials.cache import TrialCache
from trials.interface import DriverStore
from trials.jobs import job_id
from trials.records import JobRecord, Study, Summary
from trials.scheduling import rank_key
from trials.states import JobKind, JobState, StudyState

__all__ = ["StudyDriver", "make_holder"]

log = logging.getLogger("sru_hpo.driver")
RUNNING, RETRAINING = StudyState.RUNNING, StudyState.RETRAINING


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class StudyDriver:
    def __init__(self, store: DriverStore, sid: str, *, holder: str | None = None,
                 lease_seconds: float = 10.0, fail_fast: int = 3,
                 publish_every: float = 0.0) -> None:
        """``publish_every``: seconds (server clock) between summary writes while the study
        runs; a pass between them skips the summary, the final state is always written with
        its own (the service uses 1 s: a summary is O(trials) to compute)."""
        self.store, self.sid = store, sid
        self.holder = holder or make_holder()
        self.lease_seconds, self.fail_fast = lease_seconds, fail_fast
        self.publish_every = publish_every
        self.cache = TrialCache(store, sid)
        self.search = Search(store, sid, self.cache)
        self._summary: Summary | None = None
        self._published = -float("inf")  # server time of the last summary write

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
        state = study.state
        if state == StudyState.QUEUED:
            if studies.transition(sid, [state], RUNNING, started=self.store.clock.now()):
                state = RUNNING
        if state == RUNNING:
            self._search(study)
        elif state == RETRAINING:
            self._retrain(study)
        now = studies.get(sid)  # as this pass left it
        if now is None:
            self.store.purge_study(sid)
            return True
        done = self._settled(now)
        if done or self.store.clock.now() - self._published >= self.publish_every:
            self._publish(now)
        return done

    def _settled(self, now: Study) -> bool:
        """True once the study ended and none of its jobs is new or running any more."""
        if now.active:
            return False
        jobs = self.cache.records()
        if any(j.state == JobState.NEW for j in jobs):  # inserted by a pass that a cancel or a
            self.store.jobs.cancel_study(self.sid)  # failure missed
        self._stop_paused()  # ASHA: nothing waits at a rung any more
        if any(j.active for j in jobs):
            return False
        self.store.studies.mark_settled(self.sid)
        log.info("study %s %s; counts %s", self.sid, now.state.value, self.cache.counts())
        return True

    # -- search ------------------------------------------------------------------------------------
    def _search(self, study: Study) -> None:
        if self._fail_fast(study):
            return
        if self.search.step(study):
            self._start_retrain(study)

    def _fail_fast(self, study: Study) -> bool:
        """The first ``fail_fast`` finished trials all errored with one message: fail the study
        with it rather than spend the rest of the budget on the same error."""
        k = self.fail_fast
        if k < 1:
            return False
        finished = sorted((t for t in self.cache.of_kind(JobKind.TRIAL) if t.state.is_finished()),
                          key=lambda t: (t.refresh_time or 0, t.tid))[:k]
        if len(finished) < k or not all(t.raised for t in finished):
            return False
        messages = {t.error for t in finished}
        if len(messages) != 1:
            return False
        error = f"the first {k} finished trials failed with the same error: {messages.pop()}"
        if self._end(study, RUNNING, StudyState.FAILED, error=error):
            self.store.jobs.cancel_study(self.sid)
            log.warning("study %s failed fast: %s", self.sid, error)
        return True

    # -- retrain and test -------------------------------------------------------------------------
    def _ranked(self, study: Study) -> list[JobRecord]:
        """Search trials with a result, best first: with ASHA by the highest rung reached and
        the score there; otherwise by best validation accuracy."""
        grid, top = study.grid, study.trial_epochs
        done = [t for t in self.cache.of_kind(JobKind.TRIAL) if t.rankable]
        return sorted(done, key=lambda t: rank_key(t, grid, top, study.seed), reverse=True)

    def _best(self, study: Study) -> JobRecord | None:
        """The first of ``_ranked`` (without sorting the others), or a trial a cancel cut."""
        grid, top = study.grid, study.trial_epochs
        done = (t for t in self.cache.of_kind(JobKind.TRIAL) if t.reportable)
        return max(done, key=lambda t: rank_key(t, grid, top, study.seed), default=None)

    def _stop_paused(self) -> None:
        """ASHA: end the trials still paused at a rung as ``stopped_at_rung``."""
        for t in self.cache.of_kind(JobKind.TRIAL):
            if t.paused:
                self.store.jobs.stop_at_rung(self.sid, t.tid)

    def _start_retrain(self, study: Study) -> None:
        ranked = self._ranked(study)
        if not ranked:
            groups = error_groups(self.cache.of_kind(JobKind.TRIAL))
            why = f"; most common error: {groups[0]['error']}" if groups else ""
            self._end(study, RUNNING, StudyState.FAILED,
                      error=f"no search trial finished successfully{why}")
            return
        self._stop_paused()  # ASHA: those still paused end here
        self._enqueue_retrains(study, ranked)
        if self.store.studies.transition(self.sid, [RUNNING], RETRAINING,
                                         search_finished=self.store.clock.now()):
            log.info("study %s: search done, retraining trial(s) %s", self.sid,
                     [t.tid for t in ranked[: study.retrain_top_k]])

    def _enqueue_retrains(self, study: Study, ranked: list[JobRecord]) -> None:
        """The ``retrain_top_k`` candidates with the study's seed (service/orchestrator/evaluation.py); with
        one candidate, its other seeds beside it."""
        if self.cache.of_kind(JobKind.RETRAIN):
            return
        top = ranked[: study.retrain_top_k]
        for t in top:
            tid = self.store.jobs.enqueue(self.sid, kind=JobKind.RETRAIN.value,
                                          params=dict(t.params), epochs=study.retrain_epochs,
                                          source=t.id)
            if len(top) == 1:
                self._enqueue_seeds(study, t.params, t.id, job_id(self.sid, tid),
                                    study.seeds[1:])

    def _enqueue_seeds(self, study: Study, params: Mapping[str, Any], source: str, winner: str,
                       seeds: list[int]) -> None:
        for seed in seeds:
            self.store.jobs.enqueue(self.sid, kind=JobKind.RETRAIN.value,
                                    params={**params, "seed": seed},
                                    epochs=study.retrain_epochs, source=source,
                                    seed_of=winner)

    def _retrain(self, study: Study) -> None:
        retrains = self.cache.of_kind(JobKind.RETRAIN)
        if not retrains:  # killed between the state change and the insert: do it again
            self.cache.refresh(full=True)
            self._enqueue_retrains(study, self._ranked(study))
            return
        final = FinalEvaluation.of(study, retrains, self.cache.of_kind(JobKind.TEST))
        if final.no_winner:
            self._end(study, RETRAINING, StudyState.FAILED,
                      error=f"retrain failed: {final.candidates[0].error}")
            return
        winner = final.winner
        if winner is None:
            return  # candidates still training
        if final.missing_seeds():  # the winner's own run is tested while they train
            self._enqueue_seeds(study, winner.params, str(winner.source), winner.id,
                                final.missing_seeds())
        for run in final.untested():  # the one evaluation on the test set of each seed run
            self.store.jobs.enqueue(self.sid, kind=JobKind.TEST.value, params=dict(run.params),
                                    epochs=1, source=run.id)
        if not final.settled:
            return
        if not final.succeeded:
            self._end(study, RETRAINING, StudyState.FAILED, error=final.failure())
        elif self._end(study, RETRAINING, StudyState.COMPLETED, retrain_tid=winner.tid):
            stats = final.stats()
            log.info("study %s completed: test_acc %s over %d seed(s)", self.sid,
                     stats["test_acc"], stats["tests"])

    # -- the published summary -----------------------------------------------------------------------
    def summary(self, study: Study) -> Summary:
        """Counts, best trial, error groups, epochs spent and saved, the retrain, from the cache
        (computed once per change of the cache; the study's own fields it reads never change)."""
        return self.cache.memoized("summary", lambda: summarize(study, self.cache,
                                                                 self._best(study)))

    def _end(self, study: Study, frm: StudyState, to: StudyState, **fields: Any) -> bool:
        """End the study with its summary in the same write, so that no reader sees the final
        state beside the counts (or test accuracy) of a pass before."""
        summary = self.summary(study)
        if not self.store.studies.end(self.sid, [frm], to, summary=summary, **fields):
            return False
        self._summary = summary
        return True

    def _publish(self, study: Study) -> None:
        summary = self.summary(study)
        self._published = self.store.clock.now()
        if summary != self._summary or summary != study.summary:
            if self.store.studies.write_summary(self.sid, self.holder, summary):
                self._summary = summary
