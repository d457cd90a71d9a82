"""The replay benchmark's simulator takes the decisions the real service takes.

A tiny table is made by the real trainer (every configuration of a small discrete space, so the
nearest-neighbour look-up is exact). The same study then runs twice: for real (the real driver
threads in this process, one real ``sru-hpo worker`` process training on the embedded database)
and simulated (the real driver over the in-memory store, a simulated worker replaying the
table). One worker, ``parallelism`` 1 and ``queue_ahead`` 0 make the real run's order
deterministic: only one trial is ever queued or running, so every decision the driver takes
sees every result (with a trial queued ahead, the real worker could finish its next rung before
the driver's next pass on a loaded machine, and the driver would decide on more). Both must
suggest the same configurations in the same order, promote the same trials to the same rungs,
end every trial the same way, and retrain the same configuration.
"""

from __future__ import annotations

import itertools

import pytest

from benchmarks.make_table import build_table
from benchmarks.replay.ours import Simulation, study_fields
from benchmarks.replay.problems import TableProblem
from benchmarks.replay.spaces import finish, searched
from search_spaces.schema import SpaceSpec
from service.orchestrator.drivers import DriverManager
from tests.conftest import proc_env, read_log, wait_for
from trials.records import hyperopt_doc
from trials.states import JobKind
from trials.store import Store

pytestmark = pytest.mark.slow

SPACE = {"model": "sru", "params": {
    "phi_size": {"type": "choice", "options": [8, 16]},
    "r_size": {"type": "choice", "options": [0, 8]},
    "lr": {"type": "choice", "options": [0.003, 0.01, 0.03]},
    "out_size": 8, "alphas": [0.0, 0.9], "batch_size": 64}}
EPOCHS = 4
ARMS = {
    "asha": ({"algorithm": "tpe", "scheduler": {"rule": "asha", "min_epochs": 1, "reduction": 2}},
             14),
    "tpe": ({"algorithm": "tpe", "scheduler": {"rule": "off"}}, 23),  # 3 past the start-up
}


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    spec = SpaceSpec.model_validate(SPACE)
    names = list(searched(spec))
    configs = [finish(spec, dict(zip(names, idx, strict=True)))
               for idx in itertools.product(*(range(len(spec.parsed[n].options)) for n in names))]
    out = tmp_path_factory.mktemp("table") / "tiny.json.gz"
    return build_table(spec.model_dump(), configs, [0], EPOCHS, out, procs=2, log=lambda *a, **k: None)


def _decisions(trials: list[dict], retrains: list[dict]) -> dict:
    by_id = {t["_id"]: t["tid"] for t in trials}
    return {
        "trials": [(t["tid"], {k: v for k, v in t["params"].items() if k in SPACE["params"]},
                    t["outcome"], t.get("promotions", 0), t.get("limit"),
                    t["result"].get("epochs_run"),
                    {k: round(v, 4) for k, v in (t["result"].get("rung_scores") or {}).items()})
                   for t in sorted(trials, key=lambda t: t["tid"])],
        "retrained": sorted(by_id[r["source"]] for r in retrains),
    }


def _real(mongo_url: str, db_name: str, spawn, fields: dict) -> dict:
    store = Store.connect(mongo_url, db_name, heartbeat_interval=3)
    store.ensure_indexes()
    store.studies.create("real", fields)
    manager = DriverManager(store, poll=0.05, lease_seconds=30, fail_fast=0)
    manager.resume_all()
    worker = spawn(["worker", "--device", "cpu", "--poll", "0.05"], proc_env(mongo_url, db_name),
                   name="worker")
    try:
        wait_for(lambda: store.studies.get("real").state not in ("queued", "running"), 300,
                 f"the real search to end; worker log:\n{read_log(worker)[-2000:]}")
    finally:
        manager.stop()
    jobs = [hyperopt_doc(j) for j in store.job_reads.page("real", state=None, kind=None,
                                                          by_score=False, offset=0, limit=1000)]
    return _decisions([j for j in jobs if j["kind"] == JobKind.TRIAL],
                      [j for j in jobs if j["kind"] == JobKind.RETRAIN])


def _simulated(problem: TableProblem, fields: dict) -> dict:
    sim = Simulation(problem, fields, workers=1, budget=10**9, seed=0).run()
    jobs = sim.store.job_reads.changed("sim", None)
    return _decisions([j for j in jobs if j["kind"] == JobKind.TRIAL],
                      [j for j in jobs if j["kind"] == JobKind.RETRAIN])


@pytest.mark.parametrize("arm", list(ARMS))
def test_simulated_and_real_runs_take_the_same_decisions(arm, tiny_table, mongo_url, db_name,
                                                         spawn):
    problem = TableProblem(tiny_table, name="tiny")
    settings, n_trials = ARMS[arm]
    fields = study_fields(problem, settings, workers=1, seed=0, n_trials=n_trials,
                          queue_ahead=0)
    real = _real(mongo_url, db_name, spawn, fields)
    simulated = _simulated(problem, fields)
    assert len(real["trials"]) == n_trials and len(real["retrained"]) == 1
    if arm == "asha":  # the scenario exercises what it is meant to
        assert any(t[3] for t in real["trials"]) and any(t[2] == "stopped_at_rung"
                                                         for t in real["trials"])
    assert simulated == real


def test_the_committed_table_is_the_one_the_readme_describes():
    problem = TableProblem.load()
    t = problem.table
    assert len(problem.rows) >= 200 and problem.n_seeds >= 2 and problem.epochs >= 27
    assert t["space_name"] == "sru_digits_wide" and t["command"].startswith("python benchmarks/")
    for row in problem.rows:
        for run in row["runs"]:
            n = len(run["val_acc"])
            assert n == problem.epochs or run["status"] == "diverged"
            assert len(run["seconds"]) == len(run["val_loss"]) == n
    # configurations differ by far more than one training seed's noise
    spread = problem.final.mean(1).std()
    noise = (problem.final[:, 0] - problem.final[:, 1]).std() / 2**0.5
    assert spread > 2 * noise


def test_a_budgeted_simulated_study_spends_its_budget_and_reaches_the_top():
    from benchmarks.replay.problems import MFHartmannProblem

    problem = MFHartmannProblem(0.1)
    arm = {"algorithm": "tpe", "scheduler": {"rule": "asha", "min_epochs": 1, "reduction": 3}}
    fields = study_fields(problem, arm, workers=4, seed=3, n_trials=None,
                          budget={"epochs": 10 * problem.epochs})
    sim = Simulation(problem, fields, workers=4, budget=10**9, seed=3).run()
    spent = sum(t.trained for t in sim.trials)
    assert spent == sim.loop.spent and 10 * 27 - 27 <= spent <= 10 * 27
    assert max(t.trained for t in sim.trials) == problem.epochs
    assert len(sim.trials) > 30 and sim.incumbent.quality is not None
