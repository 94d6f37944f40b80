"""The labelling and dashboard pages in Chromium against the live server: scoring items with the keyboard only,
a plotly chart drawn from the locally served plotly.js, and another org's queue as a 404 page."""

from __future__ import annotations

from evals.actions import create_queue, submit_review
from tests.factories import command, make_rubric, make_run
from tests.support.browser import screenshot, sign_in
from trajectories.actions import EventRecord, append_events, record_label
from trajectories.models import Label


def reviewed_queue(tenant):
    rubric = make_rubric(tenant.org)
    runs = []
    for i in range(3):
        run = make_run(tenant.org, task="essay", model=f"scripted/m{i}", events=0)
        append_events(
            run.pk,
            [
                command(f"write essay {i}", 1.0, output="done"),
                EventRecord(kind="agent.message", ts=2.0, payload={"content": f"Here is essay {i}."}),
            ],
        )
        runs.append(run)
    return create_queue(tenant.org, "essays", rubric, runs, created_by=tenant.owner)


def test_a_reviewer_scores_items_with_the_keyboard_only(browser, jetty, alice):
    queue = reviewed_queue(alice)
    item = queue.items.get(position=1)
    submit_review(item, alice.owner, {"correctness": 5, "clarity": 5})  # someone else's scores stay hidden
    sign_in(browser, jetty.url, alice.member)
    base = f"{jetty.url}/labelling/{queue.public_id}"
    browser.goto(f"{base}/")
    screenshot(browser, "labelling-queue")
    browser.click("#start-labelling")
    browser.wait_for_url(f"{base}/items/1/")
    assert browser.locator("input[type=radio]:checked").count() == 0
    assert browser.locator(".criterion.focus").get_attribute("data-criterion") == "correctness"
    browser.keyboard.press("4")
    assert browser.locator(".criterion.focus").get_attribute("data-criterion") == "clarity"
    browser.keyboard.press("2")
    screenshot(browser, "labelling-item")
    browser.keyboard.press("Enter")
    browser.wait_for_url(f"{base}/items/2/")
    mine = {lab.key: lab.value for lab in Label.objects.filter(run=item.run, author="acme-member")}
    assert mine == {"score.correctness": 4, "score.clarity": 2, "eval.grade": 3.3333, "eval.pass": False}
    browser.keyboard.press("n")
    browser.wait_for_url(f"{base}/items/3/")
    browser.keyboard.press("p")
    browser.wait_for_url(f"{base}/items/2/")
    browser.keyboard.press("5")
    browser.keyboard.press("4")
    browser.keyboard.press("Enter")
    browser.wait_for_url(f"{base}/items/3/")
    second = queue.items.get(position=2).run
    assert Label.objects.get(run=second, author="acme-member", key="score.clarity").value == 4
    # Back on item 1 the form holds this reviewer's own scores, not the owner's.
    browser.goto(f"{base}/items/1/")
    assert browser.locator("input[name='score.correctness']:checked").get_attribute("value") == "4"
    browser.goto(f"{base}/disagreements/")
    assert browser.locator("#item-1").is_visible()
    screenshot(browser, "labelling-disagreements")
    browser.goto(f"{jetty.url}/labelling/")
    screenshot(browser, "labelling-queues")
    assert browser.errors == []


def test_the_dashboard_draws_its_charts(browser, jetty, alice):
    for i, model in enumerate(["scripted/a", "scripted/a", "scripted/b", "scripted/b", "scripted/b"]):
        run = make_run(alice.org, task="essay", model=model)
        record_label(run, "eval.grade", 2.0 + i % 3, source="judge", author="judge:scripted/judge")
        record_label(run, "eval.pass", i % 2 == 0, source="judge", author="judge:scripted/judge")
    sign_in(browser, jetty.url, alice.member)
    browser.goto(f"{jetty.url}/dashboards/")
    for chart in ("score-by-model", "cost-vs-score", "latency", "pass-rate-over-time"):
        browser.wait_for_selector(f"#chart-{chart} .main-svg")
    assert "scripted/b" in browser.locator("#chart-score-by-model").inner_text()
    screenshot(browser, "dashboards")
    assert browser.errors == []


def test_another_orgs_queue_is_a_not_found_page(browser, jetty, alice, bob):
    queue = reviewed_queue(alice)
    sign_in(browser, jetty.url, bob.owner)
    response = browser.goto(f"{jetty.url}/labelling/{queue.public_id}/items/1/")
    assert response.status == 404
    assert "essay" not in browser.content()
