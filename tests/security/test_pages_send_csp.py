"""Finding 3, the pages' side: every page the platform serves carries a strict Content-Security-Policy (no inline
script, no eval, no plugins, no framing, forms post only here) and a Referrer-Policy, so script that got into a
page through a tenant's data would not run. And the pages still work under it: in headless Chromium none of them
reports a CSP violation, the run page replays, the dashboards draw their plotly charts, the API docs render."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from tests.factories import make_rubric, make_run
from tests.security.test_stored_xss_through_result_files import opener_for
from tests.support.browser import screenshot, sign_in
from tests.test_ui_browser import SLOW_RUNBOOK, long_run
from tests.test_ui_dashboards import graded, signed_in
from tests.test_workflows import push

pytestmark = pytest.mark.browser

REQUIRED = {
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def directives(header: str) -> dict[str, list[str]]:
    parts = [p.strip().split() for p in header.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


def assert_strict_csp(response, where: str) -> None:
    header = response.headers.get("Content-Security-Policy") or ""
    policy = directives(header)
    for name, value in REQUIRED.items():
        assert policy.get(name) == [value], (where, name, header)
    script = policy.get("script-src", [])
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "https:", "http:"} & set(script), (where, header)
    assert response.headers.get("Referrer-Policy") == "same-origin", where
    assert response.headers.get("X-Content-Type-Options") == "nosniff", where
    assert response.headers.get("X-Frame-Options") == "DENY", where


def anonymous_get(base_url: str, path: str):
    try:
        return urllib.request.urlopen(base_url + path, timeout=30)
    except urllib.error.HTTPError as error:
        return error


@pytest.fixture
def site(alice, alice_api):
    """One of everything a page shows: runs (one long, for replay), a stored task, a labelling queue, graded runs
    for the dashboards, and a staff owner for the admin."""
    assert push(alice_api, "demo", "greet", runbook=SLOW_RUNBOOK).status_code == 201
    run = long_run(alice.org, 120)
    other = make_run(alice.org, task="long")
    for i in range(4):
        graded(alice.org, f"scripted/m{i % 2}", grade=0.5 + i / 10, passed=i % 2 == 0)
    rubric = make_rubric(alice.org)
    response = signed_in(alice.owner).post(
        "/labelling/new", {"name": "essays", "rubric": rubric.public_id, "reviewers_per_item": "1", "task": "essay"}
    )
    assert response.status_code == 302
    from evals.models import LabelQueue

    queue = LabelQueue.objects.get(name="essays")
    alice.owner.is_staff = alice.owner.is_superuser = True
    alice.owner.save()
    return {
        "runs": "/runs/",
        "runs filtered": "/runs/?status=succeeded&q=step",
        "run": f"/runs/{run.public_id}/",
        "run at an event": f"/runs/{run.public_id}/?at=50",
        "compare": f"/compare/?runs={run.public_id},{other.public_id}",
        "collections": "/collections/",
        "task": "/collections/demo/greet/",
        "queues": "/labelling/",
        "queue": f"/labelling/{queue.public_id}/",
        "labelling item": f"/labelling/{queue.public_id}/items/1/",
        "disagreements": f"/labelling/{queue.public_id}/disagreements/",
        "dashboards": "/dashboards/",
        "admin": "/admin/",
        "admin orgs": "/admin/orgs/org/",
    }


ANONYMOUS = {"login": "/login/", "admin login": "/admin/login/", "api docs": "/api/docs", "redoc": "/api/redoc"}


def test_every_page_sends_a_strict_csp(jetty, alice, site):
    get = opener_for(alice.owner, jetty.url)
    for name, path in site.items():
        response = get(path)
        assert response.status == 200, (name, path, response.status)
        assert_strict_csp(response, name)
    for name, path in ANONYMOUS.items():
        response = anonymous_get(jetty.url, path)
        assert response.status == 200, (name, path)
        assert_strict_csp(response, name)
    # Error pages too.
    assert_strict_csp(get("/runs/run_doesnotexist/"), "a 404")


def test_pages_work_in_chromium_without_a_csp_violation(browser, jetty, alice, site):
    violations: list[str] = []
    browser.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text or "CSP" in m.text else None,
    )
    for path in ANONYMOUS.values():
        browser.goto(path)
        browser.wait_for_load_state("networkidle")
    browser.goto("/api/docs")
    browser.wait_for_selector(".swagger-ui .info", timeout=20_000)
    browser.goto("/api/redoc")
    browser.wait_for_selector("[role=search], .menu-content", timeout=20_000)
    screenshot(browser, "csp-redoc")
    sign_in(browser, jetty.url, alice.owner)
    for path in site.values():
        browser.goto(path)
        browser.wait_for_load_state("networkidle")
    # The run page: the timeline loads, replay steps, search answers.
    browser.goto(site["run"])
    browser.locator("body").click(position={"x": 5, "y": 5})
    browser.keyboard.press("j")
    browser.keyboard.press("j")
    browser.wait_for_url(re.compile(r"\?at=2$"))
    browser.fill("#event-search", "step 77")
    browser.press("#event-search", "Enter")
    browser.wait_for_selector("#search-hits a.hit")
    screenshot(browser, "csp-run-page")
    # The runs table filters by Enter in a field (no eval'd trigger filter).
    browser.goto("/runs/")
    browser.fill("#runs-search", "step 5")
    browser.press("#runs-search", "Enter")
    browser.wait_for_url(re.compile(r"q=step"))
    # Dashboards draw plotly charts; the task filter submits on change.
    browser.goto("/dashboards/")
    browser.wait_for_selector("div.chart .main-svg")
    screenshot(browser, "csp-dashboards")
    browser.select_option("select[name=task]", "essay")
    browser.wait_for_url(re.compile(r"task=essay"))
    browser.goto(site["labelling item"])
    browser.wait_for_load_state("networkidle")
    screenshot(browser, "csp-labelling-item")
    assert violations == [], "\n".join(violations)
    assert browser.errors == []
