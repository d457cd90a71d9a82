"""The package boundaries, checked over the import graph of the source tree.

- ``trials/`` is the only package that talks to MongoDB: nothing else imports pymongo, gridfs
  or bson (tests may, to inspect the database they run against).
- The API never imports torch: ``service.api.app`` imports no torch at module level, nor anything
  that does. Nor does a CPU worker (``workers.worker``): its trainer child does.
- The orchestrator (``service/orchestrator/``) and the study model (``service/studies/``) never
  import FastAPI or torch, at module level or lazily, nor anything that does: the orchestrator
  runs as its own process (``sru-hpo orchestrate``) with neither.
- ``trials/`` imports neither FastAPI nor torch, nor any package above it.
- No library package imports another's CLI: only ``sru_hpo/`` (the command line at the top)
  imports ``workers.cli``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sru_hpo", "service", "workers", "trials", "search_spaces")
DATABASE = ("pymongo", "gridfs", "bson")


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # submodules by name
    return out


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_only_trials_imports_the_database_driver():
    offenders = [f"{p.relative_to(ROOT)} imports {m}"
                 for pkg in PACKAGES if pkg != "trials" for p in sources(pkg)
                 for m in imports(p, top_level_only=False) if m.split(".")[0] in DATABASE]
    assert offenders == []


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    p = ROOT.joinpath(*parts)
    return p.with_suffix(".py") if p.with_suffix(".py").exists() else (
        p / "__init__.py" if (p / "__init__.py").exists() else None)


def _no_torch_at_module_level(start: str) -> set[str]:
    """The project modules ``start`` imports at module level (transitively), asserting that none
    of them imports torch."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(name)
        if path is None:
            continue
        mods = imports(path, top_level_only=True)
        assert not any(m.split(".")[0] == "torch" for m in mods), f"{name} imports torch"
        todo += [m for m in mods if m.split(".")[0] in PACKAGES]
    return seen


def test_the_api_imports_no_torch_at_module_level():
    seen = _no_torch_at_module_level("service.api.app")
    assert "service.api.routes.studies" in seen and "trials.store" in seen  # the walk really walked


def test_a_cpu_worker_imports_no_torch():
    """The worker process holds the job; its trainer child trains and imports torch. The worker
    imports torch only to find its GPU (workers/worker.py ``_take_device``)."""
    seen = _no_torch_at_module_level("workers.worker")
    assert "workers.trainer" in seen and "workers.trial" in seen and "trials.store" in seen
    assert "workers.train" not in seen and "workers.gpu" not in seen


def test_the_cli_entry_and_a_worker_load_no_client_stack():
    """``sru-hpo worker`` runs the CLI's module, which composes every command: loading it must not
    load httpx, FastAPI or the API's response models (the client commands import them when they
    run). They cost every worker and every ``sru-hpo train`` 0.4 s of CPU at start."""
    probe = ("import sys, sru_hpo.cli, workers.worker, workers.cli; print(sorted(m for m in "
             "('httpx', 'fastapi', 'service.studies.schemas', 'service.client.api_client', "
             "'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _closure(start: list[str], top_level_only: bool) -> dict[str, set[str]]:
    """Every project module reachable from ``start`` -> the modules it imports."""
    seen: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(name)
        if path is None:
            continue
        seen[name] = imports(path, top_level_only)
        todo += [m for m in seen[name] if m.split(".")[0] in PACKAGES]
    return seen


def _modules(package: str) -> list[str]:
    return [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for p in sources(package)]


def test_the_orchestrator_imports_neither_fastapi_nor_torch():
    start = _modules("service/orchestrator") + _modules("service/studies")
    graph = _closure(start, top_level_only=False)
    offenders = [f"{name} imports {m}" for name, mods in graph.items() for m in mods
                 if m.split(".")[0] in ("fastapi", "starlette", "uvicorn", "torch")]
    assert offenders == []
    assert "service.orchestrator.driver" in graph and "service.studies.schemas" in graph
    assert not any(name.startswith("service.api") for name in graph)


def test_trials_imports_nothing_above_it():
    graph = _closure(_modules("trials"), top_level_only=False)
    offenders = [f"{name} imports {m}" for name, mods in graph.items() for m in mods
                 if m.split(".")[0] in ("fastapi", "starlette", "torch", "service", "workers")]
    assert offenders == [] and "trials.store" in graph


def test_only_the_command_line_imports_the_workers_cli():
    offenders = [f"{p.relative_to(ROOT)} imports {m}"
                 for pkg in PACKAGES if pkg != "sru_hpo" for p in sources(pkg)
                 for m in imports(p, top_level_only=False)
                 if m == "workers.cli" or m.startswith("workers.cli.")
                 if p.relative_to(ROOT).as_posix() != "workers/cli.py"]
    assert offenders == []
    assert "workers.cli" in imports(ROOT / "sru_hpo" / "cli.py", top_level_only=False)


def _defs(kind: type) -> list[tuple[str, ast.AST]]:
    return [(f"{p.relative_to(ROOT)}:{n.name}", n) for pkg in PACKAGES for p in sources(pkg)
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, kind)]


def test_no_function_is_longer_than_60_lines():
    long = [f"{name} {n.end_lineno - n.lineno + 1} lines"  # type: ignore[attr-defined]
            for kind in (ast.FunctionDef, ast.AsyncFunctionDef) for name, n in _defs(kind)
            if n.end_lineno - n.lineno + 1 > 60]  # type: ignore[attr-defined]
    assert long == []


def test_no_class_has_more_than_about_20_methods():
    """One role per class (the job queue is four: trials/jobs.py, job_protocol.py,
    job_reads.py, job_upkeep.py). Above 20 today: the API client (23, a method per endpoint),
    StudyRepo (21) and the in-memory twin of the job roles (25)."""
    big = [f"{name} {k}" for name, n in _defs(ast.ClassDef)
           if (k := sum(isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for b in n.body)) > 25]  # type: ignore[attr-defined]
    assert big == []


def test_the_settings_are_one_module_every_part_may_import():
    """sru_hpo/settings.py is the one settings module: it imports nothing of the project, and it
    is the only module of sru_hpo/ (the command line at the top) a library package imports."""
    own = imports(ROOT / "sru_hpo" / "settings.py", top_level_only=False)
    assert not any(m.split(".")[0] in PACKAGES for m in own)
    reached_up = [f"{p.relative_to(ROOT)} imports {m}"
                  for pkg in PACKAGES if pkg != "sru_hpo" for p in sources(pkg)
                  for m in imports(p, top_level_only=False)
                  if m.split(".")[0] == "sru_hpo" and m not in ("sru_hpo.settings",
                                                                 "sru_hpo.settings.Settings",
                                                                 "sru_hpo.settings.get_settings")]
    assert reached_up == []
    settings_classes = [f"{p.relative_to(ROOT)}" for pkg in PACKAGES for p in sources(pkg)
                        if "BaseSettings" in p.read_text() and p.name != "settings.py"]
    assert settings_classes == []  # no second settings object anywhere
