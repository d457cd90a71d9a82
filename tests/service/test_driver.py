"""The study driver in-process against the real test database (no workers)."""

from __future__ import annotations

import time

from service.driver import StudyDriver
from service.schemas import StudyCreate
from tests.service.test_api import STUDY


def make_study(db, **over) -> str:
    body = StudyCreate.model_validate({**STUDY, **over})
    sid = f"s{time.monotonic_ns()}"
    db.studies.insert_one({"_id": sid, **body.model_dump(), "state": "queued",
                           "created": time.time()})
    return sid


def test_two_drivers_never_top_up_the_same_study(store, db):
    sid = make_study(db, parallelism=3, n_trials=10)
    a = StudyDriver(store, db.studies, lease_seconds=60)
    b = StudyDriver(store, db.studies, lease_seconds=60)
    for _ in range(5):
        a.step(sid)
        b.step(sid)
    assert store.count(sid) == 3  # parallelism, not 2 x parallelism
    assert db.studies.find_one({"_id": sid})["driver"] == a.id


def test_a_lapsed_lease_is_taken_over(store, db):
    sid = make_study(db, parallelism=2)
    a = StudyDriver(store, db.studies, lease_seconds=0.2)
    b = StudyDriver(store, db.studies, lease_seconds=60)
    a.step(sid)
    assert not b._lease(sid)
    time.sleep(0.3)  # a "died"
    b.step(sid)
    assert db.studies.find_one({"_id": sid})["driver"] == b.id
    assert store.count(sid) == 2


def test_cancel_during_a_pass_leaves_nothing_to_run(store, db):
    from trials.states import JobState

    sid = make_study(db, parallelism=2)
    d = StudyDriver(store, db.studies)
    real_suggest = d._suggest

    def suggest_then_cancel(study, created, room):  # the API's cancel lands mid-pass
        db.studies.update_one({"_id": sid}, {"$set": {"state": "cancelled"}})
        store.cancel(sid)  # sees nothing yet
        real_suggest(study, created, room)

    d._suggest = suggest_then_cancel
    assert d.step(sid) is True
    assert store.count(sid, [JobState.NEW]) == 0 and store.count(sid, [JobState.CANCELLED]) == 2


def test_leases_of_different_studies_do_not_interfere(store, db):
    a = StudyDriver(store, db.studies, lease_seconds=60)
    b = StudyDriver(store, db.studies, lease_seconds=60)
    x, y = make_study(db), make_study(db)
    assert a._lease(x) and b._lease(y)
    assert not b._lease(x) and not a._lease(y)
    assert db.studies.find_one({"_id": x})["driver"] == a.id
    assert db.studies.find_one({"_id": y})["driver"] == b.id
