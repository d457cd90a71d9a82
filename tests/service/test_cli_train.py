"""`sru-hpo train` as a user runs it: a real subprocess."""

import json
import subprocess
import sys

CLI = [sys.executable, "-m", "sru_hpo.cli"]


def test_train_json_output():
    out = subprocess.run(
        [*CLI, "train", "--model", "sru", "--dataset", "digits", "--epochs", "2", "--phi-size", "16",
         "--r-size", "4", "--out-size", "16", "--lr", "0.01", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and len(result["curve"]) == 2
    assert result["params"]["phi_size"] == 16


def test_train_bad_flag_names_the_flag():
    out = subprocess.run([*CLI, "train", "--phi-size", "0", "--epochs", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--phi-size" in out.stderr
    out = subprocess.run([*CLI, "train", "--alphas", "0,1.5", "--epochs", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--alphas" in out.stderr
