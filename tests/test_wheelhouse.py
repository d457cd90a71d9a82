"""The air-gapped GPU host path on the CPU: ``make wheelhouse`` (deploy/wheelhouse.py) and
``make gpu-check`` without a .venv (benchmarks/gpu_check_offline.sh). Its dry run here is the
suite's run of benchmarks/gpu_check.py: every check and section of the CPU dry run, on the
packages a GPU host has (the suite's own venv is a superset of them).

The host is rebuilt here as closely as this machine allows: a fresh virtual environment whose only
packages are this interpreter's torch and the packages the host is planned to have
(``deploy.wheelhouse.HOST`` and what they need, linked in, never copied), nothing of this
project's own dependencies. The wheelhouse is built for this interpreter's CPython (the host's is
3.12; CI runs 3.11), then installed and used inside a network namespace with no network: an
install that tried to fetch anything would fail there.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.wheelhouse import HOST, WHEELS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _needs(dist: md.Distribution) -> list[str]:
    """The names a distribution requires outside its extras, for this interpreter."""
    from packaging.requirements import Requirement

    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def _host_distributions() -> list[md.Distribution]:
    """HOST and everything it needs, as installed here, less anything the wheelhouse brings (a
    host of the plan has no pydantic, even where this machine's typer pulls it in)."""
    brought = {_key(n) for n in WHEELS}
    seen: dict[str, md.Distribution] = {}
    todo = list(HOST)
    while todo:
        key = _key(todo.pop())
        if key in seen or key in brought:
            continue
        try:
            seen[key] = md.distribution(key)
        except md.PackageNotFoundError:
            continue  # psutil, tqdm...: the host has them; nothing this project runs needs them
        todo += _needs(seen[key])
    return list(seen.values())


def _link_host_site(dest: Path) -> None:
    dest.mkdir()
    for dist in _host_distributions():
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            src = Path(str(dist.locate_file(top)))
            if top != ".." and src.exists() and not (dest / top).exists():
                (dest / top).symlink_to(src)


def _offline(*cmd: str) -> list[str]:
    """``cmd`` in a new network namespace that has a loopback and nothing else."""
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "offline", *cmd]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("unshare") is None or subprocess.run(_offline("true")).returncode != 0:
        pytest.skip("no network namespace here (unshare --net needs root): the offline install "
                    "cannot be shown offline")
    tmp = tmp_path_factory.mktemp("airgap")
    wheels = tmp / "whl"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    built = subprocess.run([sys.executable, str(ROOT / "deploy" / "wheelhouse.py"),
                            "--python-version", version, "--dest", str(wheels)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"the wheelhouse cannot be built here (no package index reachable?): "
                    f"{built.stderr.strip().splitlines()[-1:]}")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "bare")], check=True)
    python = tmp / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    _link_host_site(tmp / "host-site")
    Path(purelib, "host-site.pth").write_text(str(tmp / "host-site") + "\n")
    return {"tmp": tmp, "wheels": wheels, "python": python, "bare": tmp / "bare" / "bin" / "python"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("SRU_HPO_")}
    return {**env, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **extra}


def test_the_host_environment_has_torch_and_none_of_the_wheelhouse(host: dict[str, Path]) -> None:
    probe = ("import importlib.util as u; import torch; "
             "print([m for m in ('pydantic', 'fastapi', 'hyperopt', 'pymongo', 'service') "
             "if u.find_spec(m)])")
    out = subprocess.run([host["python"], "-c", probe], capture_output=True, text=True,
                         cwd=host["tmp"], env=_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_gpu_check_dry_run_runs_on_the_wheelhouse_with_no_network(host: dict[str, Path]) -> None:
    report = host["tmp"] / "report.txt"
    run = subprocess.run(_offline("bash", str(ROOT / "benchmarks" / "gpu_check_offline.sh"),
                                  "--dry-run"),
                         capture_output=True, text=True, timeout=600,
                         env=_env(PY=str(host["python"]), WHEELS=str(host["wheels"]),
                                  REPORT=str(report)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = report.read_text()
    assert f"{len(WHEELS)} wheels from {host['wheels']}/ installed offline" in text
    assert "a real trial through `sru-hpo worker --device cpu`" in text
    assert "[ok] trial finished after a resume" in text
    assert text.rstrip().endswith("done; 0 failure(s)") and "[FAIL]" not in text
    # every check of the dry run, and its speed sections (printed, never asserted as timings)
    assert text.count("[ok]") == 10 and "epochs/min" in text and "x LSTM" in text


def test_the_api_and_the_worker_import_from_the_wheelhouse(host: dict[str, Path]) -> None:
    """The README's worker command for such a host, and the API, on the same wheels; and the
    pinned set is consistent (pip check over the host's packages and the wheels)."""
    site = host["tmp"] / "site"
    subprocess.run(_offline(str(host["python"]), "-m", "pip", "install", "--quiet", "--no-index",
                            "--no-deps", "--no-compile", "--target", str(site),
                            *map(str, sorted(host["wheels"].glob("*.whl")))),
                   check=True, env=_env())
    env = _env(PYTHONPATH=f"{site}:{ROOT}")
    for cmd in (["-c", "from service.api.app import create_app; create_app()"],
                ["-m", "sru_hpo", "worker", "--help"]):
        run = subprocess.run(_offline(str(host["python"]), *cmd), capture_output=True,
                             text=True, env=env, cwd=host["tmp"], timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
    check = subprocess.run([host["python"], "-m", "pip", "check"], capture_output=True, text=True,
                           env=env)
    # the torch family is the host's own (here: this machine's CUDA torch without its CUDA
    # packages linked in, and no torchvision, which only downloads MNIST)
    torch_family = r"(torch|torchvision|triton|nvidia-\S+|cuda-\S+)"
    broken = [line for line in check.stdout.splitlines()
              if not re.match(rf"{torch_family} |\S+ \S+ requires {torch_family}[,=<>!~ ]", line)
              and line != "No broken requirements found."]
    assert broken == [], check.stdout


def _tree_copy(dest: Path) -> Path:
    """The working tree as it would travel to a host: tracked and untracked-not-ignored files."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.parametrize("python", ["bare", "python"])
def test_gpu_check_without_a_venv_needs_cuda_and_fetches_nothing(host: dict[str, Path],
                                                                 python: str,
                                                                 tmp_path: Path) -> None:
    """No .venv and no CUDA PyTorch (none at all, or one that sees no GPU): a clear line, a
    non-zero exit, no .venv made and nothing fetched (there is no network to fetch with)."""
    tree = _tree_copy(tmp_path / "tree")
    run = subprocess.run(_offline("make", "--no-print-directory", "gpu-check",
                                  f"PY={host[python]}"),
                         capture_output=True, text=True, cwd=tree, timeout=300,
                         env=_env(CUDA_VISIBLE_DEVICES=""))
    assert run.returncode != 0
    assert "make gpu-check needs a CUDA build of PyTorch" in run.stderr, run.stderr
    why = "cannot import torch" if python == "bare" else "no GPU is visible"
    assert why in run.stderr
    assert not (tree / ".venv").exists()
    assert "needs a CUDA build of PyTorch" in (tree / "gpu-check-report.txt").read_text()
