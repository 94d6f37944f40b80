"""Last in the session (by name): credentials must never reach a log line of daphne or a Celery worker, a stored
row, an export or a webhook body, whatever the tests before did (failed runs, bad requests, crashes, escape
attempts included). The credentials: org API tokens (``jty_…``), sandbox run tokens (``jrt_…``), the provider key
the tests configure and the collection and caller secrets of the stored-run tests.

Logs are scanned here, once; the database, exports and webhook bodies after each test, before its rows are
flushed (``conftest.pytest_runtest_teardown``, ``tests/support/secrets_scan.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.secrets_scan import CREDENTIALS, KNOWN, TALLY
from tests.test_stored_runs import CALLER_SECRET, COLLECTION_SECRET

assert {CALLER_SECRET, COLLECTION_SECRET} <= set(KNOWN)


def test_no_credential_reached_any_server_log(logs: Path, jetty_server, worker_process):
    # The fake upstream is the provider itself: receiving the key is its job, so its log is not scanned.
    files = [f for f in logs.rglob("*.log") if not f.name.startswith("fake-upstream")]
    assert any(f.name == "daphne.log" for f in files) and any(f.name.startswith("celery-worker") for f in files)
    found = []
    for log in files:
        text = log.read_text(errors="replace")
        found += [f"{log.name}: {m.group(0)[:12]}…" for m in CREDENTIALS.finditer(text)]
        found += [f"{log.name}: {secret[:6]}…" for secret in KNOWN if secret in text]
    assert found == [], found


def test_the_access_log_redacts_keys_sent_in_the_query():
    from jetty_site.daphne import SECRET_QUERY

    line = "POST /v1beta/models/m:generateContent?alt=sse&key=jty_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG HTTP"
    assert (
        SECRET_QUERY.sub(r"\1[redacted]", line) == "POST /v1beta/models/m:generateContent?alt=sse&key=[redacted] HTTP"
    )


def test_no_credential_was_stored_exported_or_sent_in_a_webhook():
    if TALLY.scans == 0:
        pytest.skip("runs with the suite: no test before this one stored anything")
    assert TALLY.found == [], TALLY.found[:20]
    print(
        f"scanned after {TALLY.scans} tests: {TALLY.rows} rows, {TALLY.exports} runs exported four ways, "
        f"{TALLY.webhook_bodies} webhook bodies"
    )
    assert TALLY.rows > 0 and TALLY.exports > 0
