"""The embedded database: an nx-27017 server (MongoDB wire protocol over SQLite) as a child process.

Used when no ``SRU_HPO_MONGO_URL`` is set (``sru-hpo up``, ``serve``, ``make demo``) and by the
tests when no real MongoDB is given. It listens on 127.0.0.1 only; its SQLite files live in a
folder, so data survives a restart, and so does its address:

- the port is kept in ``<folder>/port``: a restarted ``serve`` or ``up`` comes back on the same
  URL, so workers that hold it reconnect instead of failing;
- ``<folder>/owner`` records which process started the server. A server found running whose
  owner is dead is an orphan (its parent was SIGKILLed before children died with their parent,
  or on a system without prctl) and is stopped and replaced; one whose owner lives is in use,
  and starting a second is a clear error. A pid file left by a dead server is removed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.launcher.processes import pid_alive, spawn, terminate
from trials.connection import answers

__all__ = ["EmbeddedMongo", "DatabaseInUse", "free_port", "port_is_free"]


class DatabaseInUse(RuntimeError):
    """The embedded database folder is served by another live sru-hpo process."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now. SO_REUSEADDR as the servers set
    it: a port whose last connections linger in TIME_WAIT is free, one with a listener is not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_embedded(home: Path) -> EmbeddedMongo:
    """The embedded database of the home folder ``home`` (in ``home/db``), started: the one place
    a service starts it (``serve``, and the cluster of ``up``/``demo``)."""
    return EmbeddedMongo(home / "db").start()


class EmbeddedMongo:
    """Start/stop one nx-27017 server. Use as a context manager or call start()/stop()."""

    def __init__(self, folder: str | os.PathLike, port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.folder / "nx-27017.pid"

    def _reclaim(self) -> None:
        """Deal with a server this folder already has: orphan -> stop it; in use -> refuse."""
        pid = _read_int(self.pid_file)
        if pid is None or not pid_alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return
        owner = _read_int(self.folder / "owner")
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            raise DatabaseInUse(f"the embedded database in {self.folder} is in use by process "
                                f"{owner} (pid {pid} serves it); stop that sru-hpo first or "
                                "set SRU_HPO_HOME to another folder")
        print(f"stopping an orphaned embedded database (pid {pid}, owner {owner} is gone)",
              file=sys.stderr)
        terminate(pid)
        self.pid_file.unlink(missing_ok=True)

    def _choose_port(self) -> int:
        if self.port is not None:
            return self.port
        saved = _read_int(self.folder / "port")
        if saved is not None and port_is_free("127.0.0.1", saved):
            return saved
        if saved is not None:
            print(f"port {saved} of the embedded database is taken by another program; "
                  "using a new one", file=sys.stderr)
        return free_port()

    def start(self, timeout: float = 60.0) -> EmbeddedMongo:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._reclaim()
        self.port = self._choose_port()
        (self.folder / "port").write_text(str(self.port))
        (self.folder / "owner").write_text(str(os.getpid()))
        cmd = [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", str(self.folder),
               "--host", "127.0.0.1", "--port", str(self.port),
               "--log-file", str(self.folder / "nx-27017.log"), "--pid-file", str(self.pid_file)]
        # SIGKILL when this process dies: sent SIGTERM, an nx-27017 was sometimes still alive a
        # minute after its serve was killed on a loaded machine (tests/service/test_supervisor.py),
        # an orphan; SQLite's journal makes a kill safe, and the next start reclaims the pid file
        proc = self.proc = spawn(cmd, log=self.folder / "nx-27017.out", death_signal=signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.folder / "nx-27017.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded database exited with {proc.returncode}: {tail}")
            if answers(self.url):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded database did not answer on {self.url} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        terminate(self.proc.pid, timeout)
        self.proc.wait()
        (self.folder / "owner").unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
