"""How long the API takes to answer 503 while its database is stalled (SIGSTOP): `/healthz`
(promised within 2 s) and the first request to each read route (promised within 5 s).

Starts the embedded database and a real ``sru-hpo serve`` on loopback, creates one study,
stops the database process, times one GET of each route, resumes the database. Prints seconds
per route; the suite asserts the bounds with margins
(``tests/service/test_api_contract.py::test_a_database_stall_is_a_503_and_health_answers_in_2_s``).

    python benchmarks/stall_timings.py
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.launcher.embedded_db import EmbeddedMongo  # noqa: E402
from tests.service.conftest import make_api, stop  # noqa: E402
from tests.service.test_api import STUDY  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sru-hpo-stall-"))
    db = EmbeddedMongo(tmp / "db").start()
    api = make_api(db.url, tmp, SRU_HPO_CONNECT_TIMEOUT="5")
    try:
        sid = api.client().post("/studies", json=STUDY).json()["id"]
        os.kill(db.proc.pid, signal.SIGSTOP)
        try:
            for path in ("/healthz", "/studies", f"/studies/{sid}", f"/studies/{sid}/trials",
                         f"/studies/{sid}/curves", f"/studies/{sid}/retrain", "/workers",
                         "/metrics", "/healthz"):
                t0 = time.monotonic()
                code = api.client().get(path).status_code
                print(f"{path.replace(sid, 'ID'):24s} {code} in {time.monotonic() - t0:.2f} s")
        finally:
            os.kill(db.proc.pid, signal.SIGCONT)
    finally:
        stop(api.proc)
        db.stop()


if __name__ == "__main__":
    main()
