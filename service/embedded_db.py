"""The embedded database: an nx-27017 server (MongoDB wire protocol over SQLite) as a child process.

Used when no ``SRU_HPO_MONGO_URL`` is set (``sru-hpo up``, ``make demo``) and by the tests when
no real MongoDB is given. It listens on 127.0.0.1 only; its SQLite files live in a folder, so
data survives a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

__all__ = ["EmbeddedMongo", "free_port", "port_is_free"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedMongo:
    """Start/stop one nx-27017 server. Use as a context manager or call start()/stop()."""

    def __init__(self, folder: str | os.PathLike, port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> EmbeddedMongo:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "nx_27017.nx_27017",
            "--data-dir", str(self.folder),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--log-file", str(self.folder / "nx-27017.log"),
            "--pid-file", str(self.folder / "nx-27017.pid"),
        ]
        log = open(self.folder / "nx-27017.out", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.folder / "nx-27017.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded database exited with {self.proc.returncode}: {tail}")
            try:
                c: MongoClient = MongoClient(self.url, serverSelectionTimeoutMS=300)
                with c:
                    c.admin.command("ping")
                return self
            except PyMongoError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded database did not answer on {self.url} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
