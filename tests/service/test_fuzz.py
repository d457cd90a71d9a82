"""The OpenAPI is the contract: schemathesis fuzzes every operation of a real API process and
checks that nothing answers 5xx and every status code is one the schema documents.

Bounded: ``FUZZ_EXAMPLES`` generated cases per operation (default 25), write endpoints
included (with the token), against loopback only.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.service.conftest import TOKEN, make_api, stop

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_api(mongo_url, tmp_path_factory):
    a = make_api(mongo_url, tmp_path_factory.mktemp("fuzz"), SRU_HPO_DRIVER_POLL="1")
    yield a
    stop(a.proc)


@pytest.mark.slow
def test_no_server_error_and_only_documented_codes(fuzz_api):
    """Each operation in turn (schemathesis' own pytest plugin does not load under this pytest,
    so its Python API drives hypothesis directly)."""
    schema = schemathesis.openapi.from_url(f"{fuzz_api.url}/openapi.json")
    failures, ran = [], 0
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case) -> None:
            case.call_and_validate(base_url=fuzz_api.url, timeout=60,
                                   headers={"Authorization": f"Bearer {TOKEN}"},
                                   checks=[not_a_server_error, status_code_conformance])

        try:
            run()
            ran += 1
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{op.label}: {exc}"[:2000])
    assert ran >= 12 and failures == [], "\n\n".join(failures)
