import time

import pytest

from service.launcher.embedded_db import free_port
from trials.connection import DatabaseUnavailable, connect, redact


def test_redact_hides_passwords_and_credential_options():
    assert redact("mongodb://u:pw@h:1/db?tls=true") == "mongodb://u:***@h:1/db?tls=true"
    assert redact("mongodb://h:1/") == "mongodb://h:1/"
    url = ("mongodb://u:pw@h/db?tls=true&tlsCertificateKeyFilePassword=kfp&authSource=admin"
           "&authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok123")
    shown = redact(url)
    for secret in ("pw", "kfp", "tok123"):
        assert f"={secret}" not in shown and f":{secret}@" not in shown
    assert "authSource=admin" in shown and "tls=true" in shown


def test_unreachable_database_is_retried_then_named_without_password():
    url = f"mongodb://me:hunter2@127.0.0.1:{free_port()}/?authSource=admin"
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as err:
        connect(url, "x", timeout=3)
    assert 2 <= time.monotonic() - t0 < 20  # retried for the budget, then gave up
    assert "hunter2" not in str(err.value) and "me:***@127.0.0.1" in str(err.value)
