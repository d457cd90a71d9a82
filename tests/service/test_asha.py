"""Promotion-based ASHA end to end: real API, real workers, real database.

A paused trial snapshots and releases its job at a rung; when promoted it resumes on any worker
with exactly the curve it would have had; no epoch is trained twice, no retry is spent; the
top-k retrain tests only the best retrain.
"""

from __future__ import annotations

import signal

import pytest
import torch

from tests.conftest import proc_env, wait_for
from tests.service.conftest import make_api, start_api, stop
from tests.service.test_api import TINY_SPACE
from tests.service.test_e2e import wait_state, workers

pytestmark = pytest.mark.slow

ASHA = {"name": "asha", "model": "sru", "dataset": "digits", "space": TINY_SPACE, "n_trials": 9,
        "parallelism": 2, "trial_epochs": 9, "retrain_epochs": 2, "seed": 3,
        "scheduler": {"rule": "asha", "min_epochs": 1, "reduction": 3}, "retrain_top_k": 3}


def trials_of(c, sid) -> list[dict]:
    return c.get(f"/studies/{sid}/trials", params={"limit": 1000}).json()["trials"]


def curve_of(c, sid, tid) -> list[dict]:
    return c.get(f"/studies/{sid}/trials/{tid}").json()["curve"]


def check_no_epoch_twice(c, sid, ts) -> None:
    for t in ts:
        epochs = [p["epoch"] for p in curve_of(c, sid, t["tid"])]
        assert epochs == list(range(1, t["epochs_run"] + 1)), (t["tid"], epochs)
        assert t["retries"] == 0  # a pause is not a failure: no retry spent


def test_asha_promotes_asynchronously_and_retrains_the_top_k(mongo_url, tmp_path, spawn):
    api = make_api(mongo_url, tmp_path, SRU_HPO_SNAPSHOT_SECONDS="600")
    c = api.client()
    try:
        workers(spawn, api, 2)
        sid = c.post("/studies", json=ASHA).json()["id"]
        s = wait_state(c, sid, ("completed", "failed"), 600)
        assert s["state"] == "completed", s
        s = wait_for(lambda: (x := c.get(f"/studies/{sid}").json())["counts"]["paused"] == 0
                     and x["retrain_state"] == "done" and x, 60, "the final summary")
        ts = trials_of(c, sid)
        assert len(ts) == 9  # n_trials counts configurations
        outcomes = {t["outcome"] for t in ts}
        assert "stopped_at_rung" in outcomes and s["promotions"] >= 2
        assert s["epochs_saved"] > 0 and s["epochs_spent"] + s["epochs_saved"] == 9 * 9
        assert any(t["epochs_run"] == 9 for t in ts)  # someone reached the top
        check_no_epoch_twice(c, sid, ts)
        # exact resume: a trial paused and promoted equals one trained straight through (CPU)
        top = next(t for t in ts if t["epochs_run"] == 9 and t["promotions"] >= 1)
        from workers.train import train

        torch.set_num_threads(1)  # as the workers run (OMP_NUM_THREADS=1)
        straight = train(top["params"], epochs=9)
        strip = lambda cv: [(p["epoch"], p["val_acc"], p["train_loss"]) for p in cv]  # noqa: E731
        assert strip(curve_of(c, sid, top["tid"])) == strip(straight.curve)
        # top-k retrain: 3 retrains, only the best on validation is tested
        r = c.get(f"/studies/{sid}/retrain").json()
        assert len(r["candidates"]) == 3 and r["test_acc"] is not None
        assert r["best_val_acc"] == max(x["best_val_acc"] for x in r["candidates"])
        tests = c.get(f"/studies/{sid}/curves").json()["curves"]
        assert sum(1 for cv in tests if cv["kind"] == "test") == 1
        assert "sru_hpo_promotions_total" in c.get("/metrics").text
    finally:
        stop(api.proc)


def test_promotions_survive_killing_the_api_and_a_worker(mongo_url, tmp_path, spawn):
    api = make_api(mongo_url, tmp_path, SRU_HPO_SNAPSHOT_SECONDS="0")
    c = api.client()
    try:
        env = proc_env(api.env["SRU_HPO_MONGO_URL"], api.db_name, SRU_HPO_SNAPSHOT_SECONDS="0")
        ws = [spawn(["worker", "--device", "cpu", "--poll", "0.2"], env, f"w{i}")
              for i in range(2)]
        study = {**ASHA, "n_trials": 12, "trial_epochs": 27, "retrain_top_k": 1}
        sid = c.post("/studies", json=study).json()["id"]
        wait_for(lambda: c.get(f"/studies/{sid}").json()["counts"]["paused"] >= 2, 300,
                 "paused trials")
        api.proc.send_signal(signal.SIGKILL)
        api.proc.wait()
        ws[0].send_signal(signal.SIGKILL)  # mid-trial or idle: either way its job comes back
        ws[0].wait()
        spawn(["worker", "--device", "cpu", "--poll", "0.2"], env, "w-new")
        api.proc = start_api(api.env, api.log, int(api.env["SRU_HPO_PORT"]))
        s = wait_state(c, sid, ("completed", "failed"), 900)
        assert s["state"] == "completed", s
        ts = trials_of(c, sid)
        assert len(ts) == 12 and all(t["state"] == "done" for t in ts)
        for t in ts:  # contiguous curves: nothing lost, nothing trained twice
            epochs = [p["epoch"] for p in curve_of(c, sid, t["tid"])]
            assert epochs == list(range(1, t["epochs_run"] + 1)), (t["tid"], epochs)
        kinds = [cv["kind"] for cv in c.get(f"/studies/{sid}/curves").json()["curves"]]
        assert kinds.count("retrain") == 1 and kinds.count("test") == 1
    finally:
        stop(api.proc)


def test_a_budgeted_study_stops_at_its_budget_with_real_workers(mongo_url, tmp_path, spawn):
    """budget {epochs: 30}, no n_trials: the workers train at most 30 search epochs in all
    (counted from the curves they wrote), and the study still ends with a trial at the top."""
    api = make_api(mongo_url, tmp_path, SRU_HPO_SNAPSHOT_SECONDS="600")
    c = api.client()
    try:
        workers(spawn, api, 2)
        study = {**ASHA, "n_trials": None, "budget": {"epochs": 30}, "retrain_top_k": 1}
        r = c.post("/studies", json=study)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        s = wait_state(c, sid, ("completed", "failed"), 600)
        assert s["state"] == "completed", s
        ts = trials_of(c, sid)
        trained = sum(len(curve_of(c, sid, t["tid"])) for t in ts)
        assert trained == s["epochs_spent"] and 30 - 9 <= trained <= 30
        assert any(t["epochs_run"] == 9 for t in ts) and len(ts) > 30 // 9
        assert s["budget_epochs"] == 30 and s["epochs_left"] >= 0
        check_no_epoch_twice(c, sid, ts)
        m = c.get("/metrics").text
        assert "sru_hpo_study_epochs_spent" in m
        bad = c.post("/studies", json={**study, "budget": {"epochs": 5}})  # < trial_epochs
        assert bad.status_code == 422 and "budget.epochs" in bad.text
        unsized = c.post("/studies", json={k: v for k, v in study.items() if k != "budget"})
        assert unsized.status_code == 422 and "n_trials" in unsized.text
    finally:
        stop(api.proc)
