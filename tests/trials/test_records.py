"""The typed study record (trials/records.py): read from a document, and the facts derived from
it defined once (rungs, retrain seeds, TPE's random share, the retrain state a reader is told)."""

from __future__ import annotations

import dataclasses

import pytest

from trials.records import Study
from trials.states import StudyState
from trials.studies import new_study_doc


def _study(**fields) -> Study:
    return Study.from_doc(new_study_doc("s1", {"name": "x", "model": "sru", "dataset": "mnist",
                                               **fields}, 100.0))


def test_a_document_missing_settings_reads_with_the_defaults():
    s = _study()
    assert (s.id, s.state, s.created) == ("s1", StudyState.QUEUED, 100.0)
    assert (s.trial_epochs, s.retrain_epochs, s.retrain_top_k, s.retrain_seeds) == (50, 200, 1, 1)
    assert s.scheduler.rule == "off" and s.budget is None and s.summary == {}
    assert s.grid == [] and s.seeds == [0] and s.rho == 0.0


def test_the_record_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _study().state = StudyState.RUNNING  # type: ignore[misc]


def test_rungs_seeds_and_the_random_share_come_from_the_settings():
    s = _study(trial_epochs=27, seed=7, retrain_seeds=3, budget={"epochs": 100, "hours": None},
               scheduler={"rule": "asha", "min_epochs": 1, "reduction": 3})
    assert s.grid == [1, 3, 9] and s.seeds == [7, 8, 9] and s.rho == pytest.approx(1 / 3)
    assert s.budget is not None and s.budget.epochs == 100 and s.budget.hours is None
    assert _study(random_fraction=0.5, scheduler={"rule": "asha"}, trial_epochs=50).rho == 0.5


@pytest.mark.parametrize(("state", "published", "computed", "told"), [
    (StudyState.RUNNING, None, None, "pending"),
    (StudyState.CANCELLED, None, None, "not run"),
    (StudyState.FAILED, "pending", None, "not run"),
    (StudyState.RETRAINING, "running", None, "running"),
    (StudyState.RETRAINING, "running", "done", "done"),  # /retrain: computed from the jobs now
    (StudyState.CANCELLED, "done", None, "done"),  # cancelled after its retrain ended
])
def test_one_rule_for_the_retrain_state_a_reader_is_told(state, published, computed, told):
    s = dataclasses.replace(_study(), state=state,
                            summary={} if published is None else {"retrain_state": published})
    assert s.retrain_state(computed) == told


def test_the_settings_round_trip_to_the_fields_it_was_created_with():
    fields = {"n_trials": 5, "parallelism": 2, "queue_ahead": 1, "trial_epochs": 9,
              "scheduler": {"rule": "median", "warmup": 2, "min_trials": 3, "min_epochs": 5,
                            "reduction": 3}, "warm_start": [{"lr": 0.01}], "trial_timeout": 60.0}
    settings = _study(**fields).settings()
    assert {k: settings[k] for k in fields} == fields
