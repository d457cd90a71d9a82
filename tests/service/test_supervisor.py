"""`sru-hpo up` as a supervisor and the embedded database, with real process trees.

Each test starts a real ``up`` (or ``serve``) and kills parts of it as an OOM killer or a closed
terminal would. Waits are for conditions, with generous deadlines.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.launcher.embedded_db import DatabaseInUse, EmbeddedMongo, free_port
from service.launcher.processes import pid_alive
from tests.conftest import HB, ROOT, children_of, wait_for

pytestmark = pytest.mark.slow


def up_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SRU_HPO_HOME": str(home), "SRU_HPO_PORT": str(port),
           "SRU_HPO_HEARTBEAT_INTERVAL": HB, "OMP_NUM_THREADS": "1", **extra}
    env.pop("SRU_HPO_MONGO_URL", None)
    return env


def start_up(home: Path, port: int, *args: str, **extra: str) -> subprocess.Popen:
    extra.setdefault("OMP_NUM_THREADS", "")  # up sets the workers' own
    return subprocess.Popen([sys.executable, "-m", "sru_hpo", "up", *args], cwd=ROOT,
                            env=up_env(home, port, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def live_workers(url: str) -> list[dict] | None:
    try:
        return httpx.get(f"{url}/workers", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None


def health(url: str) -> dict | None:
    try:
        r = httpx.get(f"{url}/healthz", timeout=2)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def finish(p: subprocess.Popen) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(90)
        except subprocess.TimeoutExpired:
            p.kill()
    return p.stdout.read() if p.stdout else ""


def test_a_killed_worker_and_a_killed_api_are_restarted(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = start_up(tmp_path, port, "--workers", "2", "--device", "cpu")
    try:
        ws = wait_for(lambda: (w := live_workers(url)) and len(w) == 2 and w, 180, "2 workers")
        victim = ws[0]["pid"]
        environ = Path(f"/proc/{victim}/environ").read_bytes().split(b"\0")
        assert b"OMP_NUM_THREADS=1" in environ  # up splits the cores between its workers
        os.kill(victim, signal.SIGKILL)  # as the OOM killer would
        wait_for(lambda: (w := live_workers(url)) and len(w) >= 2
                 and victim not in {x["pid"] for x in w}, 180, "a replacement worker")
        assert p.poll() is None  # up did not give up or exit
        instance = health(url)["instance"]
        api_pid = next(c for c in children_of(p.pid)
                       if b"serve" in Path(f"/proc/{c}/cmdline").read_bytes())
        os.kill(api_pid, signal.SIGKILL)
        wait_for(lambda: (h := health(url)) and h["instance"] == instance and not pid_alive(api_pid),
                 180, "the API restarted")
        assert p.poll() is None
    finally:
        out = finish(p)
    assert p.returncode == 0, out
    assert "worker-0 (pid" in out or "worker-1 (pid" in out  # the restart was logged
    assert "api (pid" in out and "restarted" in out


def test_killing_the_launcher_takes_every_child_with_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = start_up(tmp_path, port, "--workers", "1", "--device", "cpu")
    wait_for(lambda: live_workers(url) == [] or live_workers(url), 180, "the API")
    wait_for(lambda: len(live_workers(url) or []) == 1, 180, "one worker")
    tree = children_of(p.pid)
    tree += [g for c in tree for g in children_of(c)]
    db_port = int((tmp_path / "db" / "port").read_text())
    assert len(tree) >= 3  # database, API, worker
    p.send_signal(signal.SIGKILL)
    p.wait()
    wait_for(lambda: not any(pid_alive(c) for c in tree), 60, "the children to die")
    # a new up starts cleanly on the same folder, and the database on the same port
    q = start_up(tmp_path, port, "--workers", "0")
    try:
        wait_for(lambda: health(url), 180, "the second up")
        assert int((tmp_path / "db" / "port").read_text()) == db_port
        assert health(url)["database"] == f"mongodb://127.0.0.1:{db_port}/"
    finally:
        out = finish(q)
    assert q.returncode == 0, out


def test_kill_9_of_up_while_trials_run_leaves_nothing_alive_and_loses_no_retry(tmp_path):
    """Every child used to get SIGTERM at once and the database died first: a worker retried
    "database unreachable" for 20+ s, orphaned, and later released its job into the next
    up's database. Now nothing of the home is alive within 5 s, and the next up puts the held
    job back with no retry spent."""
    from tests.service.test_api import STUDY

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = start_up(tmp_path, port, "--workers", "1", "--device", "cpu",
                 SRU_HPO_SNAPSHOT_SECONDS="0")
    wait_for(lambda: len(live_workers(url) or []) == 1, 180, "one worker")
    study = {**STUDY, "n_trials": 1, "parallelism": 1, "queue_ahead": 0, "trial_epochs": 10_000}
    sid = httpx.post(f"{url}/studies", json=study, timeout=30).json()["id"]

    def running() -> dict | None:
        trials = httpx.get(f"{url}/studies/{sid}/trials", timeout=5).json()["trials"]
        return next((t for t in trials if t["state"] == "running"), None)

    def curve_len() -> int:
        curves = httpx.get(f"{url}/studies/{sid}/curves", timeout=5).json()["curves"]
        return max((len(c["points"]) for c in curves), default=0)

    wait_for(lambda: curve_len() >= 2, 180, "two epochs of the trial")
    tree = children_of(p.pid)
    tree += [g for c in tree for g in children_of(c)]  # the worker's trainer too
    assert len(tree) >= 4  # database, API, worker, trainer
    p.send_signal(signal.SIGKILL)
    p.wait()
    wait_for(lambda: not any(pid_alive(c) for c in tree), 5, "every process of the home gone")
    q = start_up(tmp_path, port, "--workers", "1", "--device", "cpu")
    try:
        t = wait_for(lambda: health(url) and (r := running()) and r["attempt"] == 2 and r, 180,
                     "the held job released and reserved again")
        assert t["retries"] == 0  # released, not requeued as stale: no retry spent
        before = curve_len()
        wait_for(lambda: curve_len() > before, 180, "training goes on")
    finally:
        out = finish(q)
    assert q.returncode == 0, out
    assert "released 1 job(s)" in out, out


def test_sighup_stops_everything_gracefully(tmp_path):
    port = free_port()
    p = start_up(tmp_path, port, "--workers", "1", "--device", "cpu")
    wait_for(lambda: len(live_workers(f"http://127.0.0.1:{port}") or []) == 1, 180, "a worker")
    tree = children_of(p.pid)
    p.send_signal(signal.SIGHUP)  # the terminal closed
    assert p.wait(120) == 0
    assert not any(pid_alive(c) for c in tree)


def test_a_busy_port_is_a_clear_error_not_a_false_success(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = start_up(tmp_path, port, "--workers", "0")
        out = p.communicate(timeout=120)[0]
    assert p.returncode == 3 and f"port {port}" in out and "already in use" in out
    assert not (tmp_path / "db" / "nx-27017.pid").exists()  # nothing was started


def test_up_gives_up_on_a_part_that_keeps_dying(tmp_path):
    port = free_port()
    # a worker asked for a GPU on a machine without one exits at once, every time
    p = start_up(tmp_path, port, "--workers", "1", "--device", "cuda:0", "--max-restarts", "2")
    out = p.communicate(timeout=240)[0]
    assert p.returncode == 1, out
    assert "giving up: worker-0 exited 3 times within 60 s" in out
    assert out.count("restarting in") == 2


def test_a_killed_serve_comes_back_on_the_same_database_url(tmp_path):
    port = free_port()
    env = up_env(tmp_path, port)
    cmd = [sys.executable, "-m", "sru_hpo", "serve"]
    a = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        first = wait_for(lambda: health(url), 120, "serve")["database"]
        db_pids = children_of(a.pid)
        a.send_signal(signal.SIGKILL)
        a.wait()
        wait_for(lambda: not any(pid_alive(d) for d in db_pids), 60, "its database to die with it")
        b = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: health(url), 120, "serve again")["database"] == first
        finally:
            b.terminate()
            b.wait(60)
    finally:
        if a.poll() is None:
            a.kill()


def test_an_orphaned_database_is_reclaimed_and_a_live_one_is_refused(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    port = free_port()
    # an nx-27017 whose owner died without taking it along (no parent-death signal)
    orphan = subprocess.Popen(
        [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", str(folder), "--host",
         "127.0.0.1", "--port", str(port), "--pid-file", str(folder / "nx-27017.pid"),
         "--log-file", str(folder / "nx.log")], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (folder / "nx-27017.pid").exists(), 60, "the orphan's pid file")
        dead = subprocess.Popen(["true"])
        dead.wait()
        (folder / "owner").write_text(str(dead.pid))
        (folder / "port").write_text(str(port))
        db = EmbeddedMongo(folder).start()
        try:
            assert orphan.wait(30) is not None  # stopped
            assert db.port == port  # and replaced on the same port
            # another live process owns it now: a second server on the folder is refused
            (folder / "owner").write_text(str(os.getppid()))
            with pytest.raises(DatabaseInUse, match="in use by process"):
                EmbeddedMongo(folder).start()
            assert pid_alive(db.proc.pid)  # and the running one was left alone
        finally:
            (folder / "owner").write_text(str(os.getpid()))
            db.stop()
    finally:
        if orphan.poll() is None:
            orphan.kill()
