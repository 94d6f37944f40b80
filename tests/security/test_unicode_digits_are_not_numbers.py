"""Found by the outside attack pass: `"²".isdigit()` is true and `int("²")` raises, so a superscript digit in a
page's `?at=`, a fork's `at`, a stored run's `timeout_s` or `version` and a queue's form fields was a 500. Numbers
from requests are now checked with `isdecimal()`, which holds exactly for what `int()` reads."""

from __future__ import annotations

import re
from pathlib import Path

from tests.factories import make_run
from tests.test_ui_pages import signed_in

ROOT = Path(__file__).resolve().parents[2]


def test_a_superscript_digit_is_a_4xx_or_ignored_never_a_500(alice, alice_api):
    run = make_run(alice.org, task="t")
    client = signed_in(alice.owner)
    for path in (f"/runs/{run.public_id}/?at=²", f"/runs/{run.public_id}/fork-form?at=²"):
        assert client.get(path).status_code < 500, path
    alice_api.post("/api/v1/collections", {"name": "c"}, format="json")
    response = alice_api.post("/api/v1/run/c/missing", {"timeout_s": "²"}, format="json")
    assert 400 <= response.status_code < 500, response.content


def test_no_app_code_reads_numbers_with_isdigit():
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for app in ("orgs", "runs", "trajectories", "evals", "jetty_site", "jetty_cli")
        for path in (ROOT / app).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.isdigit\(\)", line)
    ]
    assert found == []
