"""Three hosts on one machine: network namespaces ``head``, ``gpu1`` and ``gpu2`` on a bridge,
with addresses from the benchmarking range 198.18.0.0/15. The database and the API run on the
head bound to its address; one worker runs on each GPU host and reaches the database over the
bridge. Traffic goes only to namespaces this test made; it removes them afterwards, even when
it fails. Needs root (CI runs as root); skipped with the reason where namespaces can't be made.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.client.api_client import http_client
from tests.conftest import HB, ROOT, wait_for

pytestmark = pytest.mark.slow
TOKEN = "multi-host-token"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


class Hosts:
    """The namespaces, the bridge and the veth pairs, torn down by ``close``."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 1000:03d}{random.randint(0, 99):02d}"
        self.net = random.randint(1, 250)
        self.names = {h: f"sru{tag}{h}" for h in ("head", "gpu1", "gpu2")}
        self.ip = {"head": f"198.18.{self.net}.1", "gpu1": f"198.18.{self.net}.2",
                   "gpu2": f"198.18.{self.net}.3"}
        self.bridge, self.links = f"srub{tag}", {}
        self.made: list[tuple[str, str]] = []

    def up(self) -> Hosts:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        sh("ip", "addr", "add", f"198.18.{self.net}.254/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for host, ns in self.names.items():
            sh("ip", "netns", "add", ns)
            self.made.append(("netns", ns))
            link = self.links[host] = f"{self.bridge}{host[-1]}"
            sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.made.append(("link", link))
            sh("ip", "link", "set", link, "master", self.bridge, "up")
            for cmd in (["ip", "addr", "add", f"{self.ip[host]}/24", "dev", "eth0"],
                        ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
                sh("ip", "netns", "exec", ns, *cmd)
        return self

    def run(self, host: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        out = open(log, "ab")  # noqa: SIM115 - owned by the child
        return subprocess.Popen(["ip", "netns", "exec", self.names[host], *args], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def link(self, host: str, state: str) -> None:
        sh("ip", "link", "set", self.links[host], state)

    def close(self) -> None:
        for kind, name in reversed(self.made):
            if kind == "netns":  # kills nothing by itself: processes were stopped before
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
            else:
                subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=30)


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    h = Hosts()
    try:
        h.up()
    except subprocess.CalledProcessError as exc:
        h.close()
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
    procs: list[subprocess.Popen] = []
    h.procs = procs  # type: ignore[attr-defined]
    yield h
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(30)
    h.close()
    for ns in h.names.values():  # leave nothing behind
        assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout


def test_workers_on_two_hosts_survive_a_partition(hosts, tmp_path):
    py = sys.executable
    db_url = f"mongodb://{hosts.ip['head']}:27017/"
    env = {**os.environ, "SRU_HPO_MONGO_URL": db_url, "SRU_HPO_DB_NAME": "multi",
           "SRU_HPO_HEARTBEAT_INTERVAL": HB, "SRU_HPO_API_TOKEN": TOKEN, "OMP_NUM_THREADS": "1",
           "SRU_HPO_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1", "SRU_HPO_SNAPSHOT_SECONDS": "0",
           "SRU_HPO_CONNECT_TIMEOUT": "300"}
    (tmp_path / "db").mkdir()
    hosts.procs.append(hosts.run("head", [py, "-m", "nx_27017.nx_27017", "--data-dir",
                                          str(tmp_path / "db"), "--host", hosts.ip["head"],
                                          "--port", "27017", "--pid-file",
                                          str(tmp_path / "db" / "pid"), "--log-file",
                                          str(tmp_path / "db" / "log")], env, tmp_path / "db.out"))
    api_env = {**env, "SRU_HPO_HOST": hosts.ip["head"], "SRU_HPO_PORT": "8000",
               "SRU_HPO_ALLOWED_HOSTS": hosts.ip["head"], "SRU_HPO_DRIVER_POLL": "0.2"}
    hosts.procs.append(hosts.run("head", [py, "-m", "sru_hpo", "serve"], api_env,
                                 tmp_path / "api.log"))
    url = f"http://{hosts.ip['head']}:8000"
    c = http_client(url, {"Authorization": f"Bearer {TOKEN}"}, 30)

    def healthy():
        try:
            return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 120, "the API on the head")
    worker = [py, "-m", "sru_hpo", "worker", "--device", "cpu", "--poll", "0.2"]
    w1 = hosts.run("gpu1", worker, env, tmp_path / "gpu1.log")
    w2 = hosts.run("gpu2", worker, env, tmp_path / "gpu2.log")
    hosts.procs += [w1, w2]
    wait_for(lambda: len(c.get("/workers").json()) == 2, 120, "a worker on each GPU host")
    from tests.service.test_api import TINY_SPACE

    # 100 epochs of ~0.05 s: a trial runs for seconds after its second epoch, far more than one
    # poll of the curve below and the link going down (a 2 s stall included)
    study = {"name": "multi", "model": "sru", "dataset": "digits", "space": TINY_SPACE,
             "n_trials": 4, "parallelism": 2, "trial_epochs": 100, "retrain_epochs": 2}
    sid = c.post("/studies", json=study).json()["id"]

    def gpu1_training():  # `ip netns exec` execs the worker: its pid is the Popen's
        """gpu1's running trial once it trained two epochs, read from the job and its curve
        (written every epoch; the worker list only shows progress once a heartbeat)."""
        running = [t for t in c.get(f"/studies/{sid}/trials").json()["trials"]
                   if t["state"] == "running" and t["kind"] == "trial"
                   and (t["owner"] or "").split(":")[1:2] == [str(w1.pid)]]
        for t in running:
            if len(c.get(f"/studies/{sid}/trials/{t['tid']}").json()["curve"] or []) >= 2:
                return t
        return None

    job = wait_for(gpu1_training, 300, "gpu1 training a trial")
    hosts.link("gpu1", "down")  # gpu1 is cut off mid-trial: its next write can not land
    tid = job["tid"]
    try:
        wait_for(lambda: (t := c.get(f"/studies/{sid}/trials/{tid}").json())["retries"] == 1
                 and t["state"] in ("running", "done") and t, 180, "gpu1's job requeued")
    finally:
        hosts.link("gpu1", "up")  # it comes back: its late writes must change nothing
    s = wait_for(lambda: (x := c.get(f"/studies/{sid}").json())["state"] in
                 ("completed", "failed") and x, 900, "the study to finish")
    assert s["state"] == "completed", s
    trials = c.get(f"/studies/{sid}/trials").json()["trials"]
    assert len(trials) == 4 and all(t["state"] == "done" for t in trials)
    moved = next(t for t in trials if t["tid"] == tid)
    assert moved["retries"] == 1 and moved["attempt"] >= 2
    epochs = [p["epoch"] for p in c.get(f"/studies/{sid}/trials/{tid}").json()["curve"]]
    assert epochs == list(range(1, 101))  # resumed on the other host: nothing lost or repeated
    owners = {t["owner"] for t in trials} | {o for t in trials for o in t["previous_owners"]}
    for w in (w1, w2):  # both hosts ran trials
        assert any(o.split(":")[1] == str(w.pid) for o in owners), (w.pid, owners)
    # gpu1 rejoined: it is listed as live again, and its late writes changed nothing (above)
    wait_for(lambda: any(w["pid"] == w1.pid for w in c.get("/workers").json()), 120,
             "gpu1 to rejoin")
    assert w1.poll() is None
