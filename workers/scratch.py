"""A retrain's scratch folder: its best weights go to a file here, then to GridFS.

A worker killed with SIGKILL cannot remove its folder, so each one holds a lock (``flock``) on a
file inside it while it lives, and a worker that starts removes every scratch folder whose lock
it can take: the kernel releases a lock when its holder dies, whatever PID namespace the holder
ran in (workers in containers can share a /tmp). A folder without a lock file is being made
right now, or was made by an older version; it is left alone.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["Scratch", "sweep_scratch", "PREFIX"]

log = logging.getLogger("sru_hpo.worker")

PREFIX = "sru-hpo-ckpt-"
LOCK = ".lock"


class Scratch:
    """``with Scratch() as folder:`` a new folder in the temporary directory, locked until the
    block ends and then removed."""

    def __enter__(self) -> Path:
        self._tmp = tempfile.TemporaryDirectory(prefix=PREFIX)
        folder = Path(self._tmp.name)
        self._lock = (folder / f"{LOCK}-new").open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        (folder / f"{LOCK}-new").rename(folder / LOCK)  # a sweep never sees it unlocked
        return folder

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._tmp.cleanup()  # while locked: a sweep never removes it under us
        self._lock.close()


def sweep_scratch() -> list[Path]:
    """Remove the scratch folders of workers that died without removing them; returns them."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            with (folder / LOCK).open("r") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its worker is gone
        except (FileNotFoundError, NotADirectoryError, BlockingIOError):
            continue  # being made, not ours, or its worker lives
        except OSError as exc:
            log.warning("scratch folder %s: %s", folder, exc)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d scratch folder(s) of workers that were killed", len(removed))
    return removed
