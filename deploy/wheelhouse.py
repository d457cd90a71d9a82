"""The wheelhouse for an air-gapped GPU host (``make wheelhouse``): the one list of the wheels this
project needs beyond what such a host already has, and the download of them.

The host we plan for (README: Air-gapped GPU host) has Python 3.12 and a CUDA build of PyTorch,
plus the packages in ``HOST`` below, and no network. Run this on a machine that reaches a package
index; copy the tree with its ``.whl/`` folder to the host; ``make gpu-check`` there installs the
wheels with ``pip install --no-index --no-deps --target`` into a temporary folder.

Each wheel is pinned: they are installed with ``--no-deps``, so the set must be consistent on its
own, and the pinned set is the one the offline-install test (tests/test_wheelhouse.py) runs
``gpu_check.py --dry-run`` and the API on. torch (and torchvision, which must match its torch
build) is never included: the host's own CUDA build is the point.

    python3 deploy/wheelhouse.py [--python-version 3.12] [--dest .whl]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

# What the host already has (never downloaded; their own dependencies come with them there).
HOST = ("torch", "numpy", "scipy", "networkx", "cloudpickle", "rich", "typer", "httpx", "PyYAML",
        "matplotlib", "scikit-learn", "psutil", "tqdm", "prometheus-client")

# name: (version, why it is needed). Pure-Python wheels unless the note says it is compiled.
WHEELS: dict[str, tuple[str, str]] = {
    "hyperopt": ("0.3.0", "TPE, the suggester; pinned: service/orchestrator/tpe_speed.py patches it"),
    "pymongo": ("4.20.1", "the database driver (trials/); compiled (its bson speed-ups)"),
    "dnspython": ("2.9.2", "pymongo's"),
    "nx-27017": ("0.8.1", "the embedded MongoDB-protocol database (gpu-check, the demo)"),
    "neosqlite": ("1.17.2", "nx-27017's storage"),
    "pydantic": ("2.14.4", "schemas and settings (sru_hpo/settings.py, the API)"),
    "pydantic-core": ("2.50.5", "pydantic's; compiled"),
    "annotated-types": ("0.8.0", "pydantic's"),
    "typing-inspection": ("0.4.5", "pydantic's and fastapi's"),
    "pydantic-settings": ("2.16.3", "the SRU_HPO_* settings"),
    "python-dotenv": ("1.2.4", "pydantic-settings'"),
    "fastapi": ("0.165.0", "the HTTP API"),
    "starlette": ("1.10.0", "fastapi's"),
    "annotated-doc": ("0.0.7", "fastapi's (and recent typer's)"),
    "opentelemetry-api": ("1.45.2", "fastapi's"),
    "uvicorn": ("0.55.0", "the HTTP server"),
    "click": ("8.5.1", "uvicorn's (typer brought it until 0.2x; a host with a newer typer lacks it)"),
    "fastapi-offline": ("1.7.7", "/docs without a CDN"),
    "plotly": ("7.1.0", "the dashboard's charts (plotly.min.js served from the wheel)"),
}

# manylinux tags pip matches exactly (the device README's list): compiled wheels name one of them
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def requirements() -> list[str]:
    return [f"{name}=={version}" for name, (version, _why) in WHEELS.items()]


def download(dest: Path, python_version: str) -> list[Path]:
    """Every pinned wheel for CPython ``python_version`` on manylinux x86-64 into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", *platform_args,
           "--dest", str(dest), *requirements()]
    subprocess.run(cmd, check=True)
    wanted = {(n.replace("-", "_").lower(), v) for n, (v, _why) in WHEELS.items()}
    for w in dest.glob("*.whl"):  # a wheel of an earlier list would be installed beside this one
        name, version = w.name.split("-")[:2]
        if (name.lower(), version) not in wanted:
            w.unlink()
    return sorted(dest.glob("*.whl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--python-version", default="3.12", help="the host's CPython (default 3.12)")
    ap.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / ".whl")
    args = ap.parse_args()
    wheels = download(args.dest, args.python_version)
    size = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels for CPython {args.python_version}, {size / 2**20:.1f} MiB, "
          f"in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
