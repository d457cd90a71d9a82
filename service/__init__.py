"""service: the API, the study drivers, the launcher and the CLI of sru-hpo."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The package's version: from its metadata when installed, else from the pyproject.toml
    beside this package (a GPU host runs the source tree without installing it)."""
    try:
        return metadata.version("sru-hpo")
    except metadata.PackageNotFoundError:
        import tomllib

        try:
            pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
            return str(tomllib.loads(pyproject)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _version()
