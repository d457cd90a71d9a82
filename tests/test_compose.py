"""docker-compose.yml and the Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose["services"]


def test_services_and_volumes():
    assert set(services) == {"mongo", "api", "worker"}
    assert services["mongo"]["image"].startswith("mongo:7")
    assert any(v.endswith(":/data/db") for v in services["mongo"]["volumes"])
    assert any(v.endswith(":/data") for v in services["worker"]["volumes"])
    for vol in ("mongo-data", "mnist-data"):
        assert vol in compose["volumes"]


def test_healthchecks_gate_start_up():
    for name in ("mongo", "api"):
        hc = services[name]["healthcheck"]
        assert hc["test"][0] == "CMD" and hc["retries"] >= 3
    assert services["api"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_gpu_reservation_and_graceful_stop():
    dev = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["driver"] == "nvidia" and "gpu" in dev["capabilities"]
    assert "device_ids" not in dev  # scaling with --scale needs no fixed ids
    assert "replicas" not in services["worker"].get("deploy", {})  # --scale decides
    assert "container_name" not in services["worker"]  # would forbid --scale
    grace = services["worker"]["stop_grace_period"]
    assert re.fullmatch(r"\d+m", grace) and int(grace[:-1]) >= 5
    assert services["worker"]["command"][:2] == ["sru-hpo", "worker"]


def test_api_and_worker_share_image_and_settings():
    api, worker = services["api"], services["worker"]
    assert api["image"] == worker["image"]
    shared = {k: v for k, v in api["environment"].items() if k not in ("SRU_HPO_HOST", "SRU_HPO_PORT")}
    shared.pop("SRU_HPO_ALLOWED_HOSTS")
    assert shared == worker["environment"]
    url = worker["environment"]["SRU_HPO_MONGO_URL"]
    assert url.startswith("mongodb://${SRU_HPO_DB_USER:-sru}:${SRU_HPO_DB_PASSWORD:?")
    assert url.endswith("@mongo:27017/?authSource=admin")  # authentication on


def test_token_and_password_are_required_and_ports_are_loopback_by_default():
    token = services["api"]["environment"]["SRU_HPO_API_TOKEN"]
    assert re.fullmatch(r"\$\{SRU_HPO_API_TOKEN:\?.+\}", token)
    (port,) = services["api"]["ports"]
    assert "127.0.0.1:8000" in port and port.endswith(":8000")
    mongo = services["mongo"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${SRU_HPO_DB_PASSWORD:?")
    (db_port,) = mongo["ports"]
    assert "127.0.0.1:27017" in db_port


def test_the_worker_only_file_for_other_gpu_hosts():
    other = yaml.safe_load((ROOT / "deploy" / "compose.workers.yml").read_text())
    assert set(other["services"]) == {"worker"}
    w = other["services"]["worker"]
    assert w["environment"]["SRU_HPO_MONGO_URL"].startswith("${SRU_HPO_MONGO_URL:?")
    assert w["image"] == services["worker"]["image"]
    assert w["deploy"] == services["worker"]["deploy"]
    assert _schema_check(ROOT / "deploy" / "compose.workers.yml").returncode == 0


def test_kubernetes_manifests_validate_against_the_schemas():
    """Offline, against the schemas kubernetes-validate bundles (never run on a cluster here)."""
    import kubernetes_validate

    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
            if f.name != "kustomization.yaml" for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) >= {"Secret", "StatefulSet", "Service", "Deployment"}
    for d in docs:
        kubernetes_validate.validate(d, "1.30.0", strict=True)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = deployments["sru-hpo-api"]["spec"]["template"]["spec"]
    (container,) = api["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = deployments["sru-hpo-worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["terminationGracePeriodSeconds"] >= 600  # longer than an epoch
    secret_refs = {e["valueFrom"]["secretKeyRef"]["key"] for d in deployments.values()
                   for c in d["spec"]["template"]["spec"]["containers"] for e in c["env"]
                   if "valueFrom" in e}
    assert secret_refs == {"api-token", "mongo-url"}
    broken = {**deployments["sru-hpo-api"], "spec": {"replicas": "two"}}
    import pytest

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_dockerfile_installs_the_project_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]  # every package the wheel holds is copied into the image
    for pkg in (p.rstrip("*") for p in packages):
        assert f"COPY {pkg} ./{pkg}" in text
    assert "pip install ." in text and "USER sru" in text
    assert re.search(r'CMD \["sru-hpo", "serve"\]', text)
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert "cuda" in base and "pytorch" in base


def _schema_check(path: Path):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec_schema(tmp_path):
    ok = _schema_check(ROOT / "docker-compose.yml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["worker"]["stop_grace_period"] = {"minutes": 15}  # not a duration
    (tmp_path / "c.yml").write_text(yaml.safe_dump(broken))
    assert _schema_check(tmp_path / "c.yml").returncode != 0
