"""Child processes that never outlive their parent.

Every process ``up``, ``demo`` and ``serve`` start is spawned through :func:`spawn`, which asks
the Linux kernel (``prctl(PR_SET_PDEATHSIG, SIGTERM)``) to send the child SIGTERM the moment its
parent dies, however it dies: SIGKILL, OOM killer, a closed terminal. SIGTERM is what the
children already handle gracefully (a worker releases its job). The child checks right after
the fork that its parent is still the one that forked it, which closes the race where the
parent dies before the request is made. On systems without prctl the children are still
stopped by the parent's normal shutdown path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["spawn", "pid_alive", "terminate"]

PR_SET_PDEATHSIG = 1


def _die_with(parent: int, sig: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(cmd: list[str], *, log: Path, env: dict[str, str] | None = None,
          cwd: str | Path | None = None, death_signal: int = signal.SIGTERM) -> subprocess.Popen:
    """Start ``cmd`` in its own session (a terminal's Ctrl-C reaches only the parent, which
    stops the children in order), output appended to ``log``, dying with this process: the
    kernel sends it ``death_signal`` when this process dies (SIGTERM lets a worker release its
    job; SIGKILL is for a child whose graceful exit can hang, see ``embedded_db``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with(os.getpid(), death_signal))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``pid`` is still there after ``timeout`` seconds."""
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
