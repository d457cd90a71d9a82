"""Database documents -> public response models (what a study or a trial looks like over REST)."""

from __future__ import annotations

import time
from typing import Any

from service.schemas import Counts, StudyPublic, TrialPublic
from trials.states import JobKind, JobState
from trials.store import JobStore

__all__ = ["study_public", "trial_public", "study_counts"]


def trial_public(doc: dict[str, Any], curve: list[dict[str, Any]] | None = None) -> TrialPublic:
    res = doc.get("result") or {}
    return TrialPublic(
        tid=doc["tid"], kind=doc.get("kind", "trial"), state=JobState(doc["state"]).label,
        outcome=doc.get("outcome"), params=doc.get("params") or {}, epochs=doc.get("epochs", 0),
        best_val_acc=res.get("best_val_acc"), best_epoch=res.get("best_epoch"),
        epochs_run=res.get("epochs_run"), test_acc=res.get("test_acc"), loss=res.get("loss"),
        retries=doc.get("retries", 0), previous_owners=doc.get("previous_owners") or [],
        owner=doc.get("owner"), book_time=doc.get("book_time"),
        refresh_time=doc.get("refresh_time"), seconds=res.get("seconds"),
        error=doc.get("error"), curve=curve,
    )


def study_counts(store: JobStore, sid: str) -> Counts:
    c = store.trial_counts(sid)
    return Counts(**c, finished=c["done"] + c["error"])


def study_public(store: JobStore, doc: dict[str, Any]) -> StudyPublic:
    sid = doc["_id"]
    best = next(iter(store.best_trials(sid, k=1)), None)
    retrain = store.jobs.find_one({"exp_key": sid, "kind": JobKind.RETRAIN.value},
                                  {"state": 1, "result": 1})
    end = doc.get("finished") or time.time()
    fields = {k: v for k, v in doc.items()
              if k in StudyPublic.model_fields and k not in ("id", "test_acc")}
    return StudyPublic(
        id=sid, **fields, counts=study_counts(store, sid),
        best=trial_public(best) if best else None,
        retrain_state=JobState(retrain["state"]).label if retrain else "pending",
        test_acc=(retrain.get("result") or {}).get("test_acc") if retrain else None,
        elapsed=end - doc["created"],
    )
