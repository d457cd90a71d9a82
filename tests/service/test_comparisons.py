"""Comparisons (issue 22): validation, creation that survives a kill, and one end to end run
with real workers: equal budgets, a row per variant with mean and sd, two logged test
evaluations per winner, every seed's checkpoint, the CLI's table and files."""

from __future__ import annotations

import io

import pytest
import torch

from service.studies import comparisons as cmp
from service.studies.comparisons import ComparisonCreate
from tests.conftest import read_log, wait_for
from tests.service.conftest import make_api, stop
from tests.service.test_cli_client import cli
from tests.service.test_e2e import workers

BASE = {"name": "cmp", "dataset": "digits", "variants": ["sru", "gru", "sru-iid"],
        "budget": {"epochs": 6}, "trial_epochs": 2, "retrain_epochs": 2, "retrain_seeds": 2,
        "parallelism": 2, "seed": 3}


def test_every_variant_gets_the_same_budget_scheduler_and_seeds():
    c = ComparisonCreate.model_validate({**BASE, "variants": ["sru", "gru", "lstm", "sru-iid",
                                                              "sru-recur", "sru-multi"]})
    studies = dict(cmp.plan(c))
    assert list(studies) == ["sru", "gru", "lstm", "sru-iid", "sru-recur", "sru-multi"]
    same = {(s.budget.epochs, s.trial_epochs, s.scheduler.rule, s.seed, s.retrain_epochs,
             s.retrain_seeds, s.dataset, s.parallelism) for s in studies.values()}
    assert same == {(6, 2, "off", 3, 2, 2, "digits", 1)}  # parallelism 2 shared by 6
    assert [s.model for s in studies.values()] == ["sru", "gru", "lstm", "sru", "sru", "sru"]
    fixed = {n: {k: s.spec().params.get(k) for k in ("r_size", "alphas")}
             for n, s in studies.items() if n.startswith("sru-")}
    assert fixed["sru-iid"] == {"r_size": 0, "alphas": [0.99]}
    assert fixed["sru-recur"]["alphas"] == [0.99] and isinstance(fixed["sru-recur"]["r_size"],
                                                                 dict)
    assert fixed["sru-multi"]["r_size"] == 0 and isinstance(fixed["sru-multi"]["alphas"], dict)


@pytest.mark.parametrize(("over", "loc", "needle"), [
    ({"variants": ["sru", "sru-idd"]}, "variants.1",
     "unknown variant 'sru-idd'; did you mean 'sru-iid'?"),
    ({"variants": ["sru", "sru"]}, "variants", "sru named more than once"),
    ({"variants": ["sru"]}, "variants", "at least 2"),
    ({"budget": {"epochs": 1}}, "budget.epochs", "1 is less than trial_epochs (2)"),
    ({"scheduler": "asha"}, "scheduler.min_epochs", "5 × reduction 3"),
    ({"variants": ["sru", {"name": "mine", "model": "gru", "space": "sru_digits"}]},
     "variants.1", "mine: space: model: the space is for model 'sru' but the study trains 'gru'"),
    ({"budget": None}, "budget", ""),
])
def test_bad_comparisons_get_a_422_naming_the_field_and_store_nothing(api, over, loc, needle):
    c = api.client()
    before = c.get("/comparisons").json()["total"], c.get("/studies").json()["total"]
    r = c.post("/comparisons", json={**BASE, **over})
    assert r.status_code == 422, r.text
    problems = r.json()["detail"]
    assert any(loc in ".".join(map(str, p["loc"])) and needle in p["msg"] for p in problems), \
        problems
    assert (c.get("/comparisons").json()["total"], c.get("/studies").json()["total"]) == before


def test_a_kill_between_the_writes_is_finished_and_a_deleted_variant_stays_gone(store):
    c = ComparisonCreate.model_validate(BASE)
    doc = store.comparisons.create("c1", c.model_dump(mode="json"),
                                   {"sru": "s1", "gru": "s2", "sru-iid": "s3"})
    store.studies.create("s1", {"name": "made before the kill"})  # the kill came after s1
    assert cmp.ensure_studies(store, doc) == ["s2", "s3"]
    assert store.studies.get("s1").name == "made before the kill"
    assert store.studies.get("s3").comparison == "c1"
    assert store.studies.get("s3").space["params"]["r_size"] == 0
    assert cmp.ensure_studies(store, doc) == []  # a second service with the stale document
    assert store.studies.get("s2").comparison == "c1"
    store.delete_study("s2")
    assert cmp.ensure_studies(store, store.comparisons.get("c1")) == []  # not made again
    assert store.studies.get("s2") is None
    assert cmp.delete(store, "c1")
    assert store.comparisons.get("c1") is None and store.studies.get("s1") is None


@pytest.mark.parametrize("parallelism", [2, 3])
def test_the_first_wave_gives_every_variant_a_worker_before_any_gets_two(store, parallelism):
    import uuid

    from service.orchestrator.driver import StudyDriver

    c = ComparisonCreate.model_validate({**BASE, "parallelism": parallelism})
    doc, made = cmp.create(store, c)
    for sid in made:  # the drivers' first passes, in the variants' order
        StudyDriver(store, sid, fail_fast=0).step()
    got = [store.work.reserve(f"w:{i}", token=uuid.uuid4().hex) for i in range(parallelism)]
    studies = [j.sid for j in got if j is not None and j.sid in made]
    assert len(studies) == parallelism and len(set(studies)) == parallelism


@pytest.mark.slow
def test_a_comparison_runs_at_equal_budgets_and_evaluates_each_winner_over_two_seeds(
        mongo_url, tmp_path, spawn):
    api = make_api(mongo_url, tmp_path)
    try:
        ws = workers(spawn, api, 2)
        c = api.client()
        r = c.post("/comparisons", json=BASE)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        done = wait_for(lambda: (x := c.get(f"/comparisons/{cid}").json())["state"] != "running"
                        and x, 900, "the comparison ends", interval=1)
        assert done["state"] == "completed", (done, read_log(ws[0]))
        rows = {row["variant"]: row for row in done["rows"]}
        assert list(rows) == ["sru", "gru", "sru-iid"]
        spent = [row["epochs_spent"] for row in rows.values()]
        assert max(spent) - min(spent) <= BASE["trial_epochs"] == done["trial_epochs"]
        assert done["epochs_spread"] == max(spent) - min(spent) and max(spent) <= 6
        for name, row in rows.items():
            assert row["tests"] == 2 and 0 <= row["test_acc"] <= 1, row
            assert row["test_acc_sd"] is not None and row["test_acc_sd"] >= 0
            assert row["n_params"] > 0 and row["trial_hours"] > 0 and row["anytime"]
            assert row["epochs_to_95"] is not None and row["epochs_to_95"] <= row["epochs_spent"]
            study = c.get(f"/studies/{row['study_id']}").json()
            assert study["comparison"] == cid and study["model"] == ("gru" if name == "gru"
                                                                     else "sru")
            retrain = c.get(f"/studies/{row['study_id']}/retrain").json()
            evals = retrain["evaluations"]  # the log: one test-set evaluation per seed
            assert sorted(e["seed"] for e in evals) == [3, 4] and all(e["at"] for e in evals)
            assert len({e["retrain_tid"] for e in evals}) == 2
            assert sum(e["test_acc"] for e in evals) / 2 == pytest.approx(row["test_acc"])
            for e in evals:  # every seed's checkpoint can be downloaded
                blob = c.get(f"/studies/{row['study_id']}/checkpoint",
                             params={"tid": e["retrain_tid"]})
                assert blob.status_code == 200
                assert torch.load(io.BytesIO(blob.content), weights_only=True)["params"][
                    "seed"] == e["seed"]
        iid = c.get(f"/studies/{rows['sru-iid']['study_id']}/trials").json()["trials"]
        assert iid and all(t["params"]["r_size"] == 0 and t["params"]["alphas"] == [0.99]
                           for t in iid)
        assert c.get(f"/studies/{rows['sru']['study_id']}/checkpoint",
                     params={"tid": 0}).status_code == 404  # a search trial is not a retrain

        env = {**api.env, "SRU_HPO_API_URL": api.url, "SRU_HPO_API_TOKEN": "s3cret-token"}
        out = cli("compare", "status", cid[:6], env=env)
        assert out.returncode == 0, out.stderr
        assert all(v in out.stdout for v in rows) and " ± " in out.stdout
        out = cli("compare", "report", cid, "--out", str(tmp_path / "rep"), env=env)
        assert out.returncode == 0, out.stderr
        md = (tmp_path / "rep" / "comparison.md").read_text()
        assert "| variant | test accuracy (%) ± sd | parameters | budget |" in md
        assert md.count("| 6 epochs |") == 3
        csv = (tmp_path / "rep" / "comparison.csv").read_text().splitlines()
        assert csv[0].startswith("variant,state,test_acc,test_acc_sd") and len(csv) == 4
        assert (tmp_path / "rep" / "anytime.png").stat().st_size > 1000

        assert c.delete(f"/comparisons/{cid}").status_code == 204
        assert c.get(f"/comparisons/{cid}").status_code == 404
        assert all(c.get(f"/studies/{row['study_id']}").status_code == 404
                   for row in rows.values())
    finally:
        stop(api.proc)
