"""``make paper``'s dry run (issue 22): the published protocol's path on digits, on CPU, with
all six variants, then run again on the same home to show that it resumes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def paper(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/paper.py", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def test_the_estimate_comes_first_and_counts_the_protocol():
    out = paper("--estimate-only", "--seconds-per-epoch", "30")
    assert out.returncode == 0, out.stderr
    # 6 variants × (30 × 50 search epochs + 3 seeds × 200 retrain epochs) = 12,600 epochs
    assert "= 12600 epochs ≈ 105.0 GPU-hours at 30 s/epoch" in out.stdout


def test_bad_flags_are_one_line_and_exit_2():
    out = paper("--workers", "0")
    assert out.returncode == 2 and "--workers: must be positive, got 0" in out.stderr


@pytest.mark.timeout(1200)  # two service starts and 24 epochs: 74 s idle, 142 s in the suite
def test_the_dry_run_runs_every_variant_and_resumes(tmp_path):
    home = tmp_path / "home"
    first = paper("--dry-run", "--home", str(home), "--workers", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert "GPU-hours" in lines[0]  # the estimate before anything starts
    md = (home / "results" / "comparison.md").read_text()
    rows = {line.split(" | ")[0][2:]: line for line in md.splitlines()
            if line.startswith("| sru") or line.startswith(("| gru", "| lstm"))}
    assert sorted(rows) == sorted(["sru", "gru", "lstm", "sru-iid", "sru-recur", "sru-multi"])
    for line in rows.values():  # test accuracy ± sd over the 2 seeds, and the equal budget
        assert " ± " in line and "| 2 epochs |" in line and line.endswith("| completed |")
    again = paper("--dry-run", "--home", str(home), "--workers", "1")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming comparison" in again.stdout and "completed" in again.stdout
    assert (home / "results" / "comparison.md").read_text() == md


def test_make_has_the_targets():
    out = subprocess.run(["make", "-n", "paper-dry-run", "paper"], cwd=ROOT, text=True,
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    assert "benchmarks/paper.py --dry-run" in out.stdout
