"""The package boundaries, checked over the import graph of the source tree.

- ``trials/`` is the only package that talks to MongoDB: nothing else imports pymongo, gridfs
  or bson (tests may, to inspect the database they run against).
- The API never imports torch: ``service/`` (but the worker-launching CLI module, which imports
  it lazily inside the commands that train) imports no torch at module level, nor anything
  that does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "workers", "trials", "search_spaces")
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


def test_the_api_imports_no_torch_at_module_level():
    seen: set[str] = set()
    todo = ["service.app"]
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
    assert "service.routes.studies" in seen and "trials.store" in seen  # the walk really walked
