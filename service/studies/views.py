"""Store records -> public response models (what a study or a trial looks like over REST).

A study is read from its own document alone: the driver keeps its ``summary`` (counts, best
trial, error groups, retrain state) up to date, so ``GET /studies`` and ``GET /studies/ID``
cost the same whatever the size of the study.
"""

from __future__ import annotations

import time

from service.orchestrator.summary import epochs_to_fraction
from service.studies.schemas import StudyPublic, TrialPublic
from trials.records import JobRecord, Point, Study

__all__ = ["study_public", "trial_public"]


def trial_public(job: JobRecord, curve: list[Point] | None = None) -> TrialPublic:
    res, hist = job.result, job.history
    return TrialPublic(
        tid=job.tid, kind=job.kind.value, state=job.state.label,
        outcome=job.outcome and job.outcome.value, rung=job.limit, bracket=job.bracket,
        promotions=hist.promotions, params=dict(job.params), epochs=job.epochs,
        best_val_acc=res.best_val_acc, best_epoch=res.best_epoch, epochs_run=res.epochs_run,
        test_acc=res.test_acc, loss=res.loss, retries=hist.retries, attempt=hist.attempt,
        previous_owners=hist.previous_owners, owner=hist.owner, book_time=hist.book_time,
        refresh_time=job.refresh_time, seconds=res.seconds, error=job.error,
        error_at=hist.error_at, failure_class=hist.failure_class, failures=dict(hist.failures),
        peak_rss_mb=res.peak_rss_mb, peak_gpu_mb=res.peak_gpu_mb, curve=curve)


def study_public(study: Study, now: float | None = None) -> StudyPublic:
    summary = study.summary
    end = study.finished or (now if now is not None else time.time())
    return StudyPublic(
        id=study.id, **study.settings(), state=study.state, created=study.created,
        started=study.started, search_finished=study.search_finished, finished=study.finished,
        error=study.error, comparison=study.comparison, counts=summary.get("counts") or {},
        best=summary.get("best"),
        retrain_state=study.retrain_state(),
        test_acc=summary.get("test_acc"), test_acc_sd=summary.get("test_acc_sd"),
        tests=summary.get("tests", int(summary.get("test_acc") is not None)),  # older summaries
        retrain_val_acc=summary.get("val_acc"), test_drop=summary.get("test_drop"),
        n_params=summary.get("n_params"), trial_hours=summary.get("trial_hours") or 0.0,
        anytime=summary.get("anytime") or [],
        epochs_to_95=epochs_to_fraction(summary.get("anytime") or []),
        epochs_spent=summary.get("epochs_spent", 0),
        epochs_saved=summary.get("epochs_saved", 0), promotions=summary.get("promotions", 0),
        epochs_committed=summary.get("epochs_committed", 0),
        budget_epochs=summary.get("budget_epochs"), epochs_left=summary.get("epochs_left"),
        fidelity=summary.get("fidelity") or [], advice=summary.get("advice") or [],
        rank_correlation=summary.get("rank_correlation"),
        error_groups=summary.get("error_groups") or [],
        failures=summary.get("failures") or {}, elapsed=max(0.0, end - study.created))
