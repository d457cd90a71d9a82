"""The prepared GPU check stays runnable: its CPU dry run runs in the suite (the numbers are
printed, never asserted as timings)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 600) -> str:
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_gpu_check_dry_run_on_the_cpu():
    out = run("benchmarks/gpu_check.py", "--dry-run")
    assert "0 failure(s)" in out and "[FAIL]" not in out
    assert out.count("[ok]") == 10 and "epochs/min" in out and "x LSTM" in out

