"""The CLI client commands and `sru-hpo up`, as a user runs them (real processes)."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from service.launcher.embedded_db import free_port
from tests.conftest import ROOT, wait_for
from tests.service.conftest import TOKEN
from tests.service.test_api import STUDY


def cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    width = {} if env and "COLUMNS" in env else {"COLUMNS": "250"}  # a test may set its own
    env = {**(env or os.environ), **width}
    return subprocess.run([sys.executable, "-m", "sru_hpo", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_submit_status_best_curves_cancel(api, tmp_path):
    import yaml

    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump({**STUDY, "name": "from-cli"}))
    common = ["--api", api.url, "--token", TOKEN]
    out = cli("submit", str(f), *common)
    assert out.returncode == 0, out.stderr
    sid = out.stdout.split()[1]
    assert api.client().get(f"/studies/{sid}").json()["name"] == "from-cli"
    out = cli("status", sid, "--api", api.url)
    assert out.returncode == 0 and sid in out.stdout and "from-cli" in out.stdout
    assert sid in cli("status", "--api", api.url).stdout
    out = cli("best", sid, "--api", api.url)
    assert out.returncode == 0
    wait_for(lambda: len(api.client().get(f"/studies/{sid}/curves").json()["curves"]) == 3, 60,
             "trials")
    png = tmp_path / "c.png"
    out = cli("curves", sid, "--png", str(png), "--api", api.url)
    assert out.returncode == 0 and png.stat().st_size > 1000
    out = cli("cancel", sid, *common)
    assert out.returncode == 0 and "cancelled" in out.stdout
    assert api.client().get(f"/studies/{sid}").json()["state"] == "cancelled"


def test_client_errors_are_clear(api, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: sru\ndataset: digits\nspace: sru_digits\nn_trials: 0\n")
    out = cli("submit", str(bad), "--api", api.url, "--token", TOKEN)
    assert out.returncode == 2 and "422" in out.stdout and "n_trials" in out.stdout
    out = cli("submit", str(bad), "--api", api.url, "--token", "wrong")
    assert out.returncode == 1 and "401" in out.stdout
    out = cli("status", "nope", "--api", api.url)
    assert out.returncode == 2 and "404" in out.stdout
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\nmodel: sru\ndataset: digits\nspace: sru_digits\ntrial_epoch: 5\n"
                    "scheduler: {rule: asha, min_epoch: 2}\n")
    out = cli("submit", str(typo), "--api", api.url, "--token", TOKEN)
    assert out.returncode == 2
    assert "trial_epoch: not a known field; did you mean 'trial_epochs'?" in out.stdout
    assert "scheduler.min_epoch: not a known field; did you mean 'min_epochs'?" in out.stdout
    out = cli("submit", str(tmp_path / "missing.yaml"), "--api", api.url)
    assert out.returncode == 2 and "study_file" in out.stderr and "does not exist" in out.stderr


@pytest.mark.slow
def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path):
    import os

    port = free_port()
    env = {**os.environ, "SRU_HPO_HOME": str(tmp_path), "SRU_HPO_HEARTBEAT_INTERVAL": "0.5",
           "OMP_NUM_THREADS": "1"}
    env.pop("SRU_HPO_MONGO_URL", None)
    env.pop("SRU_HPO_PORT", None)
    p = subprocess.Popen([sys.executable, "-m", "sru_hpo", "up", "--workers", "1",
                          "--port", str(port)], env=env,
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def workers_live():
        try:
            return httpx.get(f"{url}/workers", timeout=1).json()
        except httpx.HTTPError:
            return None

    try:
        ws = wait_for(workers_live, 90, "API and one live worker")
        assert len(ws) == 1
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=1)
    assert (tmp_path / "db").is_dir() and (tmp_path / "logs" / "api.log").exists()


@pytest.mark.slow
def test_demo_runs_a_small_study_to_the_end(tmp_path):
    import os

    env = {**os.environ, "SRU_HPO_HOME": str(tmp_path), "SRU_HPO_PORT": str(free_port())}
    env.pop("SRU_HPO_MONGO_URL", None)
    out = cli("demo", "--trials", "2", "--retrain-epochs", "2", env=env, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "test accuracy" in out.stdout
    assert (tmp_path / "demo" / "curves.png").exists()
    assert list((tmp_path / "demo").glob("*.pt"))


def test_demo_refuses_a_budget_smaller_than_one_trial_and_starts_nothing(tmp_path):
    import os

    env = {**os.environ, "SRU_HPO_HOME": str(tmp_path), "SRU_HPO_PORT": str(free_port())}
    out = cli("demo", "--budget", "3", env=env, timeout=60)
    assert out.returncode == 2 and "--budget" in out.stderr and "trial_epochs" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "db").exists()


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    import os

    env = {**os.environ, "SRU_HPO_HOST": "0.0.0.0", "SRU_HPO_HOME": str(tmp_path)}
    env.pop("SRU_HPO_API_TOKEN", None)
    out = cli("serve", env=env, timeout=120)
    assert out.returncode == 2
    assert "SRU_HPO_API_TOKEN" in out.stderr and "SRU_HPO_HOST" in out.stderr
    assert not (tmp_path / "db").exists()  # refused before anything started


@pytest.mark.parametrize("case", ["nan", "inf", "yaml", "healthz", "cancel", "best", "curves",
                                  "report-proc", "report-file", "png"])
def test_bad_command_line_input_is_one_line_and_exit_2(api, tmp_path, case):
    """Each of these used to end in a traceback (or a usage box); now one line naming the
    argument or flag, exit 2, and nothing stored."""
    import yaml

    sid = api.client().post("/studies", json={**STUDY, "name": "cli-edges"}).json()["id"]
    before = len(api.client().get("/studies?limit=1000").json()["studies"])
    study = tmp_path / "s.yaml"
    regular = tmp_path / "a-file"
    regular.write_text("x")
    if case in ("nan", "inf"):
        study.write_text(yaml.safe_dump({**STUDY, "random_fraction": 0.5}).replace(
            "random_fraction: 0.5", f"random_fraction: .{case}"))
    elif case == "yaml":
        study.write_text("name: [unclosed\nmodel: sru\n")
    args, param = {
        "nan": (["submit", str(study)], "STUDY_FILE"), "inf": (["submit", str(study)], "STUDY_FILE"),
        "yaml": (["submit", str(study)], "STUDY_FILE"),
        "healthz": (["status", "../healthz"], "STUDY_ID"), "cancel": (["cancel", ""], "STUDY_ID"),
        "best": (["best", ""], "STUDY_ID"), "curves": (["curves", "?x=1"], "STUDY_ID"),
        "report-proc": (["report", sid, "--out", "/proc/sru-hpo-report"], "--out"),
        "report-file": (["report", sid, "--out", str(regular / "sub")], "--out"),
        "png": (["curves", sid, "--png", "/nonexistent/dir/x.png"], "--png"),
    }[case]
    out = cli(*args, "--api", api.url, "--token", TOKEN)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 2, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert param in text, text
    assert len(api.client().get("/studies?limit=1000").json()["studies"]) == before
    assert api.client().get(f"/studies/{sid}").json()["state"] != "cancelled"


BASE = "name: msg\nmodel: sru\ndataset: digits\nn_trials: 2\ntrial_epochs: 9\n"
INLINE = ("space:\n  model: sru\n  params:\n    lr: {type: loguniform, low: -9.2, high: -4.6}\n"
          "    phi_size: {type: quniform, low: 300, high: 100, q: 8}\n    phi_sise: 64\n")
JARGON = ("Input should be", "Value error", "dictionary or object", "Extra inputs", "Field required")


@pytest.mark.parametrize(("text", "lines"), [
    # issue 21's exact inputs, each with the line(s) a user now reads
    (BASE + "space: sru_digit\n",
     ["space: unknown built-in space 'sru_digit'; did you mean 'sru_digits'? (built-in: "
      "sru_mnist, gru_mnist, lstm_mnist, sru_digits, sru_digits_wide, gru_digits, lstm_digits; "
      "or write the space inline)"]),
    (BASE + "space: sru_digits\nscheduler: ashaa\n",
     ["scheduler.rule: 'ashaa' is not one of off, median, asha, hyperband; did you mean "
      "'asha'?"]),
    (BASE + INLINE,  # every problem of the space at once, no "space: space: Value error"
     ["space.params.lr: low: -9.2 is not > 0: bounds are values, not logs (e^-9.2 is 0.000101)",
      "space.params.lr: high: -4.6 is not > 0: bounds are values, not logs (e^-4.6 is 0.0101)",
      "space.params.phi_size: low (300.0) must be < high (100.0)",
      "space.params.phi_sise: not a known parameter for 'sru'; did you mean 'phi_size'? (known: "
      "alphas, batch_size, clip_norm, diverge_loss, dropout, learn_alphas, lr, lr_decay, "
      "momentum, optimizer, out_size, phi_size, r_size, weight_decay)"]),
    (BASE.replace("digits", "minst") + "space: sru_digits\n",
     ["dataset: 'minst' is not one of mnist, pmnist, digits; did you mean 'mnist'?"]),
])
def test_validation_messages_say_what_to_write(api, tmp_path, text, lines):
    f = tmp_path / "study.yaml"
    f.write_text(text)
    out = cli("submit", str(f), "--api", api.url, "--token", TOKEN)
    assert out.returncode == 2, out.stdout + out.stderr
    got = [line.strip() for line in out.stdout.splitlines()[1:]]
    assert got == lines, out.stdout
    assert not any(j in out.stdout for j in JARGON), out.stdout


def test_the_scheduler_shorthand_is_accepted(api, tmp_path):
    f = tmp_path / "study.yaml"
    f.write_text(BASE.replace("trial_epochs: 9", "trial_epochs: 15")  # asha's rungs 5, 15
                 + "space: sru_digits\nscheduler: asha\n")
    out = cli("submit", str(f), "--api", api.url, "--token", TOKEN)
    assert out.returncode == 0, out.stdout + out.stderr
    sid = out.stdout.split()[1]
    scheduler = api.client().get(f"/studies/{sid}").json()["scheduler"]
    assert scheduler == {"rule": "asha", "warmup": 5, "min_trials": 3, "min_epochs": 5,
                         "reduction": 3}
    api.client().post(f"/studies/{sid}/cancel", json={})


def test_status_watch_prints_until_the_study_ends(api, tmp_path):
    sid = api.client().post("/studies", json={**STUDY, "name": "watched"}).json()["id"]
    log = tmp_path / "watch.out"
    with open(log, "w") as out:
        p = subprocess.Popen([sys.executable, "-m", "sru_hpo", "status", sid, "--watch",
                              "--interval", "0.5", "--api", api.url], stdout=out,
                             stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(lambda: log.read_text().count("watched") >= 2, 60, "two prints")
        assert p.poll() is None  # still watching an active study
        api.client().post(f"/studies/{sid}/cancel", json={})
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
    last = log.read_text().rsplit(sid, 1)[1]  # the last print: the study as it ended
    assert last.split("\n")[0].split(" · ")[2] == "cancelled", log.read_text()


def test_delete_asks_first_and_then_deletes(api, tmp_path):
    sid = api.client().post("/studies", json={**STUDY, "name": "doomed"}).json()["id"]
    out = subprocess.run([sys.executable, "-m", "sru_hpo", "delete", sid, "--api", api.url,
                          "--token", TOKEN], input="n\n", capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "not deleted" in out.stdout
    assert api.client().get(f"/studies/{sid}").status_code == 200
    out = cli("delete", sid[:8], "--yes", "--api", api.url, "--token", TOKEN)
    assert out.returncode == 0 and f"study {sid} deleted" in out.stdout, out.stdout + out.stderr
    assert api.client().get(f"/studies/{sid}").status_code == 404


def test_one_version_from_the_package_metadata(api):
    from importlib.metadata import version

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"sru-hpo {version('sru-hpo')}"
    assert api.client().get("/openapi.json").json()["info"]["version"] == version("sru-hpo")


def test_report_says_why_a_plot_was_skipped(api, tmp_path):
    sid = api.client().post("/studies", json={**STUDY, "name": "few"}).json()["id"]
    api.client().post(f"/studies/{sid}/cancel", json={})
    out = cli("report", sid, "--out", str(tmp_path / "r"), "--api", api.url)
    assert out.returncode == 0, out.stdout + out.stderr
    skipped = [line for line in out.stdout.splitlines() if line.startswith("skipped")]
    assert skipped == [f"skipped {tmp_path / 'r' / 'importance.png'}: 0 finished trial(s); "
                       "importance needs at least 10"], out.stdout
