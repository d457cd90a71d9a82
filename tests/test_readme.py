"""The README as a user follows it: every file it names exists, the example study files are
valid studies, and the quick start runs as written (issue 21)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import httpx
import pytest
import yaml

from service.launcher.embedded_db import free_port
from tests.conftest import ROOT
from tests.service.conftest import wait_healthy

README = (ROOT / "README.md").read_text()
#: where the README names output or placeholders, not files of the repository
NOT_FILES = ("runs/", "report/", "data/", "MNIST/", "$", "<", "../", "gpu-check-report.txt",
             "comparison.")  # the last: the files compare report writes
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.*-]+|[\w-]+\.(?:py|yaml|yml|sh|toml|md|txt))`")


def _named_paths() -> set[str]:
    found = set()
    for m in PATH.finditer(README):
        path = m.group(1)
        ratio = re.fullmatch(r"[a-z-]+/[a-z-]+", path) and not (ROOT / path.split("/")[0]).is_dir()
        if not path.startswith(NOT_FILES) and "*" not in path and "ID" not in path and not ratio:
            found.add(path)
    return found


def _exists(path: str) -> bool:
    if (ROOT / path).exists():
        return True
    # a bare file name (`sru_digits.yaml`, `store.py`) is one somewhere in the tree
    return "/" not in path and any(ROOT.glob(f"*/**/{path}"))


def test_every_file_the_readme_names_exists():
    paths = _named_paths()
    assert {"examples/digits.yaml", "examples/paper.yaml", "examples/families.yaml",
            "deploy/wheelhouse.py"} <= paths
    assert [p for p in sorted(paths) if not _exists(p)] == []


@pytest.mark.parametrize("name", ["digits.yaml", "paper.yaml"])
def test_the_example_studies_are_valid(name):
    from service.studies.schemas import StudyCreate

    StudyCreate.model_validate(yaml.safe_load((ROOT / "examples" / name).read_text()))


def test_the_example_comparison_is_valid():
    from service.studies.comparisons import ComparisonCreate, plan

    c = ComparisonCreate.model_validate(yaml.safe_load(
        (ROOT / "examples" / "families.yaml").read_text()))
    assert [name for name, _ in plan(c)] == ["sru", "gru", "sru-iid"]


def _quick_start() -> list[str]:
    """The commands of the quick start's step-by-step block, comments removed."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("Step by step", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.slow
def test_the_quick_start_runs_as_written(tmp_path):
    commands = _quick_start()
    assert commands[0] == "make install && . .venv/bin/activate"  # this suite runs in that venv
    port = free_port()
    env = {**os.environ, "SRU_HPO_HOME": str(tmp_path), "SRU_HPO_PORT": str(port),
           "SRU_HPO_API_URL": f"http://127.0.0.1:{port}", "OMP_NUM_THREADS": "1",
           "COLUMNS": "200"}
    for var in ("SRU_HPO_MONGO_URL", "SRU_HPO_API_TOKEN", "SRU_HPO_DB_NAME"):
        env.pop(var, None)
    sid, up = None, None
    try:
        for line in commands[1:]:
            args = shlex.split(line.removesuffix("&").strip())
            assert args[0] == "sru-hpo", line
            args = [sid if a == "ID" else a for a in args[1:]]
            cmd = [sys.executable, "-m", "sru_hpo", *args]
            if line.endswith("&"):
                up = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
                wait_healthy(port, up, lambda p=up: f"sru-hpo up exited with {p.returncode}")
                continue
            out = subprocess.run(cmd, env=env, cwd=tmp_path if args[0] == "report" else ROOT,
                                 capture_output=True, text=True, timeout=900)
            assert out.returncode == 0, f"{line}\n{out.stdout}\n{out.stderr}"
            if args[0] == "submit":
                sid = out.stdout.split()[1]
        study = httpx.get(f"http://127.0.0.1:{port}/studies/{sid}").json()
        assert study["state"] == "completed" and study["test_acc"] is not None, study
        assert (tmp_path / "report" / "curves.png").exists()
        page = httpx.get(f"http://127.0.0.1:{port}/?study={sid}")  # the dashboard URL it names
        assert page.status_code == 200 and "dashboard.js" in page.text
        assert "http://127.0.0.1:8000/?study=ID" in README
    finally:
        if up is not None and up.poll() is None:
            up.terminate()
            up.wait(60)


def test_worker_help_says_how_it_finds_the_database():
    out = subprocess.run([sys.executable, "-m", "sru_hpo", "worker", "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0 and "SRU_HPO_MONGO_URL" in out.stdout
    assert "127.0.0.1 only" in out.stdout
