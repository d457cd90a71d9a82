"""Every endpoint of the API: happy paths and the 401/404/409/413/422 paths. The app runs in
this process (tests/service/conftest.py ``in_process_api``, the drivers included); what needs a
server process of its own (uvicorn, signals, a stalled database) is in test_api_contract.py and
the end-to-end tests."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import wait_for
from tests.service.conftest import in_process_api

TINY_SPACE = {
    "model": "sru",
    "params": {
        "phi_size": {"type": "quniform", "low": 8, "high": 16, "q": 8},
        "r_size": {"type": "quniform", "low": 0, "high": 4, "q": 2},
        "out_size": 8,
        "alphas": {"type": "choice", "options": [[0.0, 0.5], [0.0, 0.9]]},
        "lr": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
        "batch_size": 256,
    },
}
STUDY = {"name": "t", "model": "sru", "dataset": "digits", "space": TINY_SPACE,
         "n_trials": 4, "parallelism": 2, "trial_epochs": 2, "retrain_epochs": 2}


@pytest.fixture(scope="module")
def api(mongo_url, tmp_path_factory):
    with in_process_api(mongo_url, tmp_path_factory.mktemp("api"), max_body_bytes=20_000) as a:
        yield a


def n_studies(api) -> int:
    return len(api.client().get("/studies").json()["studies"])


def test_health_docs_and_dashboard(api):
    c = api.client(None)
    h = c.get("/healthz").json()
    assert h["status"] == "ok" and "mongodb://" in h["database"]
    assert c.get("/openapi.json").json()["info"]["title"] == "sru-hpo"
    page = c.get("/").text
    assert "<title>sru-hpo</title>" in page and "/static/dashboard.js" in page
    assert c.get("/static/plotly.min.js").status_code == 200


def test_create_and_read_a_study(api):
    c = api.client()
    r = c.post("/studies", json=STUDY)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["state"] in ("queued", "running") and s["n_trials"] == 4
    assert s["space"]["params"]["out_size"] == 8
    sid = s["id"]
    # the driver queues parallelism + queue_ahead (1) trials (no workers here: they stay new)
    wait_for(lambda: c.get(f"/studies/{sid}/trials").json()["total"] == 3, 60,
             "three queued trials")
    assert c.get(f"/studies/{sid}").json()["state"] == "running"
    trials = c.get(f"/studies/{sid}/trials", params={"state": "new"}).json()
    assert trials["total"] == 3 and {t["state"] for t in trials["trials"]} == {"new"}
    t0 = trials["trials"][0]
    assert t0["params"]["model"] == "sru" and t0["params"]["dataset"] == "digits"
    assert t0["params"]["out_size"] == 8 and t0["epochs"] == 2
    assert t0["params"]["phi_size"] in (8, 16)
    one = c.get(f"/studies/{sid}/trials/{t0['tid']}").json()
    assert one["tid"] == t0["tid"] and one["curve"] == []
    assert c.get(f"/studies/{sid}/trials", params={"state": "done"}).json()["total"] == 0
    page = c.get(f"/studies/{sid}/trials", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and len(page["trials"]) == 1
    assert c.get(f"/studies/{sid}/trials/best").json() == []
    curves = c.get(f"/studies/{sid}/curves").json()["curves"]
    assert len(curves) == 3 and all(cv["points"] == [] for cv in curves)
    assert c.get(f"/studies/{sid}/retrain").json()["state"] == "pending"
    assert c.get(f"/studies/{sid}/checkpoint").status_code == 404
    assert sid in [x["id"] for x in c.get("/studies").json()["studies"]]
    assert [x["id"] for x in c.get("/studies", params={"state": "running"}).json()["studies"]]
    m = c.get("/metrics").text
    assert 'sru_hpo_jobs{state="new"}' in m and "sru_hpo_queue_depth" in m
    assert "sru_hpo_workers 0" in m


def test_cancel_and_delete(api, api_store):
    c = api.client()
    sid = c.post("/studies", json=STUDY).json()["id"]
    wait_for(lambda: api_store.db.jobs.count_documents({"exp_key": sid}) == 3, 60,
             "queued trials")
    r = c.post(f"/studies/{sid}/cancel").json()
    assert r["state"] == "cancelled" and r["queued_cancelled"] == 3
    wait_for(lambda: c.get(f"/studies/{sid}").json()["counts"]["cancelled"] == 3, 60,
             "the driver to publish the cancelled counts")
    assert c.post(f"/studies/{sid}/cancel").status_code == 409
    assert c.delete(f"/studies/{sid}").status_code == 204
    assert c.get(f"/studies/{sid}").status_code == 404
    assert api_store.db.jobs.count_documents({"exp_key": sid}) == 0


@pytest.mark.parametrize("method,path", [
    ("post", "/studies"), ("post", "/studies/abc/cancel"), ("delete", "/studies/abc")])
@pytest.mark.parametrize("token", [None, "wrong"])
def test_write_endpoints_need_the_token(api, method, path, token):
    before = n_studies(api)
    c = api.client(token)
    r = c.request(method.upper(), path, json=STUDY if path == "/studies" else {})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert n_studies(api) == before


def test_read_endpoints_are_open(api):
    assert api.client(None).get("/studies").status_code == 200


@pytest.mark.parametrize("path", [
    "/studies/nope", "/studies/nope/trials", "/studies/nope/trials/best", "/studies/nope/trials/3",
    "/studies/nope/curves", "/studies/nope/retrain", "/studies/nope/checkpoint"])
def test_unknown_ids_are_404_naming_the_id(api, path):
    r = api.client().get(path)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_unknown_trial_is_404(api):
    sid = api.client().post("/studies", json=STUDY).json()["id"]
    r = api.client().get(f"/studies/{sid}/trials/999")
    assert r.status_code == 404 and "999" in r.json()["detail"]
    api.client().post(f"/studies/{sid}/cancel", json={})


def _with(path: list, value):
    body = copy.deepcopy(STUDY)
    d = body
    for k in path[:-1]:
        d = d[k]
    if value is _DROP:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return body


_DROP = object()


@pytest.mark.parametrize(("body", "field", "needle"), [
    (_with(["n_trials"], 0), "n_trials", "greater than or equal to 1"),
    (_with(["model"], "rnn"), "model", "sru"),
    (_with(["dataset"], "cifar"), "dataset", "digits"),
    (_with(["name"], _DROP), "name", "required"),
    (_with(["surprise"], 1), "surprise", "not a known field"),
    (_with(["space"], "nonexistent"), "space", "sru_mnist"),
    (_with(["space", "params", "phi_size", "low"], 0), "phi_size", "got 0"),
    (_with(["space", "params", "alphas", "options"], [[0.0, 1.0]]), "alphas", "[0, 1)"),
    (_with(["space", "params", "hidden_size"], 3), "hidden_size", "not a parameter"),
    (_with(["space", "params", "lr"], {"type": "loguniform", "low": 0, "high": 1}), "lr",
     "not > 0: bounds are values, not logs"),
    (_with(["space", "params", "dropout"], {"type": "uniform", "low": 0.5, "high": 1.0}),
     "dropout", "got 1.0"),
    (_with(["space", "model"], "gru"), "space", "model"),
    (_with(["pruning"], {"rule": "mean"}), "scheduler", "median"),  # the field's old name
    (_with(["scheduler"], {"rule": "asha", "min_epochs": 2}), "min_epochs",
     "must be ≤ trial_epochs"),
    (_with(["scheduler"], {"rule": "hyperband", "reduction": 1}), "scheduler",
     "greater than or equal to 2"),
    ({**STUDY, "scheduler": {"rule": "off"}, "pruning": {"rule": "off"}}, "body", "not both"),
    (_with(["retrain_top_k"], 11), "retrain_top_k", "less than or equal to 10"),
    (_with(["parallelism"], 1024), "parallelism", "at most 256"),
    (_with(["space", "params", "lr"], {"type": "choice", "options": [0.001] * 300}), "space",
     "at most 256"),
    (_with(["space", "params", "dropout"], {"type": "quniform", "low": 0, "high": 0.96,
                                            "q": 0.1}), "dropout", "got 1.0"),
    (_with(["warm_start"], [{"phi_size": 8, "r_size": 2, "alphas": [0.0, 0.5], "lr": 5.0}]),
     "warm_start", "lr"),
])
def test_bad_input_is_422_naming_the_field_and_stores_nothing(api, body, field, needle):
    before = n_studies(api)
    r = api.client().post("/studies", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(field in [str(x) for x in e["loc"]] and needle in e["msg"] for e in errors), errors
    assert n_studies(api) == before


def test_body_over_the_limit_is_413_and_stores_nothing(api):
    before = n_studies(api)
    body = {**STUDY, "name": "x" * 30_000}
    r = api.client().post("/studies", json=body)
    assert r.status_code == 413
    assert n_studies(api) == before


def test_workers_endpoint_lists_live_workers(api, api_store):
    assert api.client().get("/workers").json() == []
    api_store.workers.register("hostx:123:cpu:abc", "cpu")
    ws = api.client().get("/workers").json()
    assert [w["id"] for w in ws] == ["hostx:123:cpu:abc"] and ws[0]["device"] == "cpu"
    api_store.workers.unregister("hostx:123:cpu:abc")


def test_token_is_not_needed_when_unset(mongo_url, tmp_path):
    with in_process_api(mongo_url, tmp_path, api_token=None) as a:
        r = a.client(None).post("/studies", json=STUDY)
        assert r.status_code == 201
        a.client(None).post(f"/studies/{r.json()['id']}/cancel", json={})


def test_warm_start_points_are_evaluated_first(api):
    point = {"phi_size": 16, "r_size": 2, "alphas": [0.0, 0.9], "lr": 0.005}
    body = {**STUDY, "warm_start": [point], "parallelism": 1}
    sid = api.client().post("/studies", json=body).json()["id"]
    first = wait_for(lambda: api.client().get(f"/studies/{sid}/trials").json()["trials"], 60,
                     "the first trial")[0]
    assert {k: first["params"][k] for k in point} == point
    api.client().post(f"/studies/{sid}/cancel", json={})
