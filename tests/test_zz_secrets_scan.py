"""Last in the session (by name): everything the session's servers logged is scanned for credentials. Org API
tokens (``jty_…``), sandbox run tokens (``jrt_…``), the provider key the tests configure and the collection
secrets of the stored-run tests must never reach a log line of daphne or a Celery worker, whatever the tests
before did (failed runs, bad requests, crashes included)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_stored_runs import CALLER_SECRET, COLLECTION_SECRET

CREDENTIALS = re.compile(r"\b(?:jty|jrt)_[A-Za-z0-9_-]{40,}")
KNOWN = ("sk-upstream-secret-0123456789", COLLECTION_SECRET, CALLER_SECRET, "unused-secret-123")


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
