"""The web UI end to end in headless Chromium against the live server and a real worker: log in, start a run and
watch it live, replay with keys and permalinks, search, scroll a long run, compare, and another org's run is a 404.
Each test keeps screenshots of its pages under var/screenshots/ (CI's artifacts)."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.factories import command, make_run
from tests.support.browser import give_password, log_in, screenshot, sign_in
from tests.test_workflows import push
from trajectories.actions import append_events
from trajectories.models import Run

pytestmark = pytest.mark.browser

SLOW_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
agent: jetty-agent
model: scripted/default
primary_outputs: [greeting.txt]
---
# Objective
Greet {{name}} slowly, so a reviewer can watch the run grow.

## Parameters
- `name`: who to greet

## Dependencies
- coreutils

## REQUIRED OUTPUT FILES
- `/app/results/greeting.txt`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Step 1: start
```bash
mkdir -p /app/results && echo "starting for {{name}}"
```

## Step 2: think
```bash
sleep 2 && echo "still thinking"
```

## Step 3: greet
```bash
sleep 1 && echo "hello {{name}}" > /app/results/greeting.txt && cat /app/results/greeting.txt
```

## Step 4: report
```bash
printf '# Greeting\\n\\nGreeted **{{name}}**.\\n' > /app/results/summary.md && \
echo '{"version": "1.0.0", "overall_passed": true, "results": {"pass": 1, "partial": 0, "fail": 0},' \
  '"stages": [{"name": "greet", "passed": true, "message": "ok"}]}' \
  > /app/results/validation_report.json
```

## Evaluate
| result | when |
|---|---|
| PASS | greeting.txt greets |

## Iterate (max 2 rounds)
| symptom | fix |
|---|---|
| no greeting | rerun step 3 |

## Final Checklist
```bash
test -s /app/results/greeting.txt
```

## Tips
Take your time.
"""


def commands(run: Run, texts: list[str]) -> None:
    append_events(run.pk, [command(c, float(i)) for i, c in enumerate(texts)])


def long_run(org, n: int) -> Run:
    run = make_run(org, task="long", events=0)
    append_events(
        run.pk,
        [command(f"echo step {i}", float(i), output=f"out {i}") for i in range(1, n + 1)],
    )
    return run


def current_seq(page) -> int:
    return int(page.locator("li.event.current").get_attribute("data-seq"))


def test_a_reviewer_logs_in_starts_a_run_and_watches_it_grow(browser, jetty, worker, alice, alice_api):
    assert push(alice_api, "demo", "greet", runbook=SLOW_RUNBOOK).status_code == 201
    give_password(alice.member, "pw-acme")
    log_in(browser, jetty.url, "acme-member", "pw-acme")
    screenshot(browser, "runs-table-empty")
    browser.click("text=Tasks")
    browser.click("a[href='/collections/demo/greet/']")
    assert browser.locator("#runbook h1").inner_text() == "Objective"
    screenshot(browser, "task-page")
    browser.fill("textarea[name=init_params]", '{"name": "Ada"}')
    browser.click("#start-run")
    browser.wait_for_url(re.compile(r"/runs/run_\w+/$"))
    browser.evaluate("window.__sameDocument = true")
    seen, modes = set(), set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen.add(browser.locator("li.event").count())
        modes.add(browser.locator("#live-state").inner_text())
        if browser.locator("#run-status").inner_text() in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert browser.locator("#run-status").inner_text() == "succeeded"
    browser.wait_for_function("() => document.querySelectorAll('li.event[data-kind=\"run.state\"]').length >= 3")
    assert browser.evaluate("window.__sameDocument") is True  # the events came without a reload
    assert len(seen - {0}) >= 3, f"the timeline should grow while the run works, saw counts {sorted(seen)}"
    # With Redis the server pushes notices over the WebSocket; without it (embedded defaults) the page polls.
    assert ("live" if os.environ.get("REDIS_URL") else "live (polling)") in modes, modes
    assert browser.locator("li.event[data-kind=command]").count() >= 4
    browser.reload()
    assert "Greeted Ada" in browser.locator("#summary-md").inner_text()
    assert browser.locator("#validation td").first.inner_text() == "greet"
    assert "greeting.txt" in browser.locator("#artifacts").inner_text()
    assert "hello Ada" in browser.locator("#main-output").inner_text()
    screenshot(browser, "run-page")
    assert browser.errors == []


def test_replay_steps_plays_and_links_to_each_event(browser, jetty, alice):
    run = long_run(alice.org, 300)
    sign_in(browser, jetty.url, alice.viewer)
    browser.goto(f"/runs/{run.public_id}/")
    browser.keyboard.press("j")
    browser.keyboard.press("j")
    browser.keyboard.press("j")
    browser.keyboard.press("k")
    browser.wait_for_url(re.compile(r"\?at=2$"))
    assert current_seq(browser) == 2
    browser.click("#replay-forward")
    assert current_seq(browser) == 3
    browser.select_option("#replay-speed", "20")
    browser.keyboard.press(" ")
    browser.wait_for_function("() => Number(document.querySelector('li.event.current').dataset.seq) > 20")
    browser.keyboard.press(" ")
    paused = current_seq(browser)
    time.sleep(0.3)
    assert current_seq(browser) == paused
    # Stepping past the loaded window fetches the next page.
    browser.fill("#jump-seq", "99")
    browser.press("#jump-seq", "Enter")
    browser.wait_for_function("() => document.querySelector('li.event.current')?.dataset.seq === '99'")
    browser.locator("body").click(position={"x": 5, "y": 5})
    for _ in range(3):
        browser.keyboard.press("j")
    browser.wait_for_function("() => document.querySelector('li.event.current')?.dataset.seq === '102'")
    # A permalink opens the run at that event.
    browser.goto(f"/runs/{run.public_id}/?at=250")
    assert browser.locator("#e-250").get_attribute("class").split() >= ["event"]
    assert "current" in browser.locator("#e-250").get_attribute("class")
    assert browser.locator("#e-250").is_visible()
    browser.click("#e-260 a.permalink")
    browser.wait_for_url(re.compile(r"\?at=260$"))
    screenshot(browser, "replay")
    assert browser.errors == []


def test_search_and_scrolling_keep_a_long_run_small(browser, jetty, alice):
    run = long_run(alice.org, 3000)
    sign_in(browser, jetty.url, alice.member)
    browser.goto(f"/runs/{run.public_id}/")
    assert browser.locator("li.event").count() == 100
    browser.fill("#event-search", "step 2777")
    browser.wait_for_selector("#search-hits a.hit")
    browser.click("#search-hits a.hit")
    browser.wait_for_function("() => document.querySelector('li.event.current')?.dataset.seq === '2777'")
    assert browser.locator("#e-2777").is_visible()
    browser.goto(f"/runs/{run.public_id}/")
    for _ in range(12):  # scroll down through twelve pages
        browser.eval_on_selector("#timeline-scroll", "el => el.scrollTop = el.scrollHeight")
        time.sleep(0.25)
    last = int(browser.locator("li.event").last.get_attribute("data-seq"))
    assert last > 600
    assert browser.locator("li.event").count() <= 500, "rows far above are dropped"
    assert browser.locator("li.loader.before").count() == 1
    browser.eval_on_selector("#timeline-scroll", "el => el.scrollTop = 0")  # and fetched again going up
    first = int(browser.locator("li.event").first.get_attribute("data-seq"))
    browser.wait_for_function(f"() => Number(document.querySelector('li.event').dataset.seq) < {first}")
    assert browser.errors == []


def test_compare_marks_where_two_runs_part(browser, jetty, alice):
    a = make_run(alice.org, task="fix-bug", model="scripted/a", events=0)
    b = make_run(alice.org, task="fix-bug", model="scripted/b", events=0)
    commands(a, ["ls", "cat main.py", "pytest -q", "git diff"])
    commands(b, ["ls", "cat main.py", "sed -i s/x/y/ main.py", "pytest -q", "git diff"])
    sign_in(browser, jetty.url, alice.member)
    browser.goto("/runs/?task=fix-bug")
    browser.check(f"input[value={a.public_id}]")
    browser.check(f"input[value={b.public_id}]")
    screenshot(browser, "runs-table")
    browser.click("#compare-selected")
    browser.wait_for_url(re.compile(r"/compare/"))
    assert browser.locator("#first-divergence-link").inner_text() == "first divergence: row 3"
    cells = sorted(c.strip() for c in browser.locator("#divergence .cell").all_inner_texts())
    assert cells[0] == "" and "sed -i" in cells[1]  # a gap in one run, the extra step in the other
    assert browser.locator("#metrics").inner_text().count("scripted/") == 2
    screenshot(browser, "compare")
    assert browser.errors == []


def test_another_orgs_run_is_a_404(browser, jetty, alice, bob):
    theirs = make_run(bob.org, events=3)
    sign_in(browser, jetty.url, alice.owner)
    response = browser.goto(f"/runs/{theirs.public_id}/")
    assert response.status == 404
    assert theirs.public_id not in browser.goto("/runs/").text()


def test_fork_from_a_model_call_opens_beside_its_source(browser, jetty, worker, alice, alice_client):
    from .test_agent_clis import run_cli

    _, summary = run_cli(alice_client, "jetty-agent", "off")
    source = Run.objects.get(public_id=summary["run_id"])
    third = source.events.filter(kind="model.call").order_by("seq")[2]
    sign_in(browser, jetty.url, alice.member)
    browser.goto(f"/runs/{source.public_id}/?at={third.seq}")
    browser.click(f"#e-{third.seq} details > summary")
    browser.select_option(f"#e-{third.seq} select[name=model]", "scripted/alt")
    screenshot(browser, "fork-from-here")
    browser.click(f"#e-{third.seq} button.fork-here")
    browser.wait_for_url(re.compile(r"/compare/\?runs="))
    fork_id = browser.url.rsplit(",", 1)[1]
    deadline = time.monotonic() + 90
    while Run.objects.get(public_id=fork_id).status not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert Run.objects.get(public_id=fork_id).status == "succeeded"
    browser.reload()
    assert "scripted/alt" in browser.locator("#metrics").inner_text()
    browser.goto(f"/runs/{fork_id}/")
    assert browser.locator("#replay-source").inner_text() == source.public_id
    screenshot(browser, "fork")
    assert browser.errors == []
