"""The request on the product's front page, sent as it is written there, on a fresh org (no collections): it runs,
its collection and task are made on the first call, and the task keeps the runbook it was sent as its newest
version. Against a live server, a Celery worker and real sandboxes running Claude Code on the scripted model."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading

import httpx
import pytest
from django.test import Client

from orgs.models import ApiToken, Collection
from runs.models import Task, TaskVersion
from trajectories.models import Run

from .test_agent_runs import final_run, wait_for
from .test_webhooks import receiver  # noqa: F401  (fixture)
from .test_workflows import step, workflow

DIFF = b"--- a/app.py\n+++ b/app.py\n@@ -1 +1,2 @@\n-print('hi')\n+print('hello')\n+print('bye')\n"

# The front page's request, word for word, but for the model: the offline scripted one (see front_page_request()).
# `uploads/diff.patch` names the org's newest upload of `diff.patch` (the upload answers `uploads/<batch>/diff.patch`).
FRONT_PAGE = {
    "model": "claude-sonnet-4-6",
    "messages": [
        {"role": "system", "content": "You are a code reviewer..."},
        {"role": "user", "content": "Review the PR diff"},
    ],
    "jetty": {
        "runbook": True,
        "collection": "my-org",
        "task": "pr-review",
        "agent": "claude-code",
        "file_paths": ["uploads/diff.patch"],
    },
}

REVIEW_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
agent: claude-code
model: scripted/default
primary_outputs: [review.md]
---
# Objective
Review the PR diff in `/app/assets/diff.patch` for {{reviewer}}.

## REQUIRED OUTPUT FILES
- `/app/results/review.md`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Parameters
- `reviewer`: who reads the review

## Dependencies
- coreutils

## Step 1: environment setup
```bash
mkdir -p {{results_dir}} && ls /app/assets
```

## Step 2: review
```bash
(echo "review for {{reviewer}}"; grep -c '^+[^+]' /app/assets/diff.patch) > /app/results/review.md
```

## Evaluate
| result | when |
|---|---|
| PASS | review.md counts the added lines |

## Iterate (max 3 rounds)
| symptom | fix |
|---|---|
| no count | rerun step 2 |

## Summary
Write summary.md.

## Validation report
```bash
echo '{"version": "1.0.0", "overall_passed": true, "results": {"pass": 1, "partial": 0, "fail": 0},' \\
  '"stages": [{"name": "review", "passed": true, "message": "counted"}]}' > /app/results/validation_report.json
```

## Final Checklist
```bash
test -s /app/results/review.md && test -s /app/results/validation_report.json
```

## Tips
Keep it short.
"""


def upload_diff(jetty, token: str) -> list[str]:
    files = [("files", ("diff.patch", DIFF))]
    response = httpx.post(f"{jetty.url}/api/v1/sandbox/upload", files=files, headers=auth(token))
    assert response.status_code == 201, response.text
    return response.json()["file_paths"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def front_page_request(file_paths: list[str], *, runbook: str | None = None, **jetty) -> dict:
    body = copy.deepcopy(FRONT_PAGE)
    body["model"] = "scripted/default"
    body["jetty"].update(file_paths=file_paths, **jetty)
    if runbook is not None:
        body["messages"][0]["content"] = runbook
    return body


def post(jetty, token: str, body: dict, timeout: float = 240) -> httpx.Response:
    return httpx.post(f"{jetty.url}/v1/chat/completions", json=body, headers=auth(token), timeout=timeout)


def nothing_stored() -> bool:
    return not (Collection.objects.exists() or Task.objects.exists() or Run.objects.exists())


def assert_listed_under_the_task(jetty, alice, run: Run) -> None:
    """The run is the task's: on its page, and in the runs API filtered by collection and task."""
    page = signed_in(alice.member).get("/collections/my-org/pr-review/")
    assert page.status_code == 200 and run.public_id in page.content.decode()
    params = {"collection": "my-org", "task": "pr-review"}
    listed = httpx.get(f"{jetty.url}/api/v1/runs", params=params, headers=auth(alice.token)).json()
    assert run.public_id in [r["id"] for r in listed["results"]]


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def fresh(alice, jetty) -> list[str]:
    """Alice's org with no collection yet; the diff uploaded, its `file_paths` returned."""
    assert not Collection.objects.filter(org=alice.org).exists()
    return upload_diff(jetty, alice.token)


# The front page's request, as sent


def test_the_front_page_request_runs_and_makes_its_collection_and_task(alice, jetty, worker, fresh):
    response = post(jetty, alice.token, front_page_request(["uploads/diff.patch"]))
    assert response.status_code == 200, response.text
    body = response.json()
    summary = body["jetty"]
    run = final_run(summary["run_id"])
    assert summary["status"] == "succeeded", (run.error, list(run.events.values_list("kind", "payload")))
    assert (summary["collection"], summary["task"], summary["agent"]) == ("my-org", "pr-review", "claude-code")
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]

    collection = Collection.objects.get(org=alice.org)
    assert collection.name == "my-org" and run.collection == collection and run.task == "pr-review"
    task = Task.objects.get(collection=collection)
    assert (task.name, task.kind) == ("pr-review", "runbook")
    # "You are a code reviewer..." is no runbook the validator accepts: it ran as sent, and was not kept as a version.
    assert task.latest_version == 0 and not TaskVersion.objects.exists()
    assert summary["task_version"] is None
    assert "not stored as a version of task `pr-review`" in summary["warnings"][0]
    assert "no YAML frontmatter" in summary["warnings"][0]
    logs = [(e.seq, e.payload) for e in run.events.filter(kind="log") if "not stored" in e.payload["message"]]
    assert [(seq, payload["level"]) for seq, payload in logs] == [(2, "warning")]  # right after it was queued
    assert_listed_under_the_task(jetty, alice, run)
    assert run.job.file_paths == fresh  # `uploads/diff.patch`: the newest upload of that name
    newer = upload_diff(jetty, alice.token)
    again = post(jetty, alice.token, front_page_request(["uploads/diff.patch"], **{"async": True})).json()
    assert Run.objects.get(public_id=again["id"]).job.file_paths == newer != fresh


def test_the_front_page_request_streams(alice, jetty, worker, fresh):
    body = front_page_request(["uploads/diff.patch"])
    body["stream"] = True
    chunks = []
    with httpx.stream(
        "POST", f"{jetty.url}/v1/chat/completions", json=body, headers=auth(alice.token), timeout=240
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                chunks.append(line.removeprefix("data: "))
    assert chunks[-1] == "[DONE]"
    events = [json.loads(c) for c in chunks[:-1]]
    summary = events[-1]["jetty"]
    assert summary["event"] == "summary" and summary["status"] == "succeeded", summary
    assert (summary["collection"], summary["task"]) == ("my-org", "pr-review")
    assert {"run.state", "model.call"} <= {e["jetty"]["event"] for e in events[:-1]}
    run = Run.objects.get(public_id=summary["run_id"])
    assert run.collection.name == "my-org" and Task.objects.filter(collection=run.collection).count() == 1
    assert_listed_under_the_task(jetty, alice, run)


def test_the_front_page_request_runs_async_with_a_webhook(alice, jetty, worker, fresh, receiver):  # noqa: F811
    url, received = receiver
    secret = "whsec-front-page"
    hook = {"webhook_url": f"{url}/hook", "webhook_secret": secret}
    response = post(jetty, alice.token, front_page_request(["uploads/diff.patch"], **hook))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    assert response.json()["jetty"]["collection"] == "my-org"  # made before the answer
    wait_for(lambda: received, 120, "the webhook")
    headers, raw = received[0]["headers"], received[0]["body"]
    signed = hmac.new(secret.encode(), f"{headers['x-jetty-timestamp']}.".encode() + raw, hashlib.sha256)
    assert hmac.compare_digest(headers["x-jetty-signature"], signed.hexdigest())
    record = json.loads(raw)
    assert record["id"] == run_id and record["status"] == "succeeded", record
    assert (record["jetty"]["collection"], record["jetty"]["task"]) == ("my-org", "pr-review")
    assert record["jetty"]["warnings"]  # the runbook was not kept, and the webhook says so too
    assert_listed_under_the_task(jetty, alice, final_run(run_id))


# A runbook the validator accepts becomes the task's newest version


def test_the_runbook_sent_is_the_tasks_newest_version_and_uploads_keep_their_names(alice, jetty, worker, fresh):
    first = post(
        jetty, alice.token, front_page_request(fresh, runbook=REVIEW_RUNBOOK, template_variables={"reviewer": "ada"})
    ).json()["jetty"]
    run = final_run(first["run_id"])
    assert first["status"] == "succeeded", run.error
    assert first["task_version"] == 1 and first["warnings"] == [] and run.metadata["task_version"] == 1
    # The upload `diff.patch` is /app/assets/diff.patch in the sandbox: its own name, not its storage key.
    assert run.artifacts.get(path="review.md").file.read() == b"review for ada\n2\n"
    task = Task.objects.get(collection__org=alice.org, collection__name="my-org", name="pr-review")
    assert task.latest_version == 1
    stored = task.version()
    # Stored as sent: the placeholders stay, each call fills them with its own values.
    assert stored.runbook == REVIEW_RUNBOOK and "{{reviewer}}" in stored.runbook and stored.validation["valid"]
    assert "ada" not in stored.runbook and stored.message.startswith("sent to POST /v1/chat/completions")

    # The same runbook again (other values, another agent): no new version.
    again = post(
        jetty,
        alice.token,
        front_page_request(fresh, runbook=REVIEW_RUNBOOK, agent="jetty-agent", template_variables={"reviewer": "bo"}),
    ).json()["jetty"]
    assert again["status"] == "succeeded" and again["task_version"] == 1
    assert TaskVersion.objects.filter(task=task).count() == 1

    # A changed runbook: a new version, and the run says which.
    changed = REVIEW_RUNBOOK.replace("Keep it short.", "Keep it very short.")
    third = post(
        jetty,
        alice.token,
        front_page_request(fresh, runbook=changed, agent="jetty-agent", template_variables={"reviewer": "cy"}),
    ).json()["jetty"]
    assert third["status"] == "succeeded" and third["task_version"] == 2
    task.refresh_from_db()
    assert task.latest_version == 2 and task.version().runbook == changed
    listed = httpx.get(f"{jetty.url}/api/v1/collections/my-org/tasks/pr-review", headers=auth(alice.token)).json()
    assert listed["latest_version"] == 2 and listed["version"]["runbook"] == changed
    versions = [run.metadata.get("task_version") for run in Run.objects.filter(task="pr-review").order_by("pk")]
    assert versions == [1, 1, 2]
    page = signed_in(alice.viewer).get("/collections/my-org/pr-review/").content.decode()
    assert all(run_id in page for run_id in (first["run_id"], again["run_id"], third["run_id"]))


def test_a_stored_task_runs_the_version_agent_mode_kept(alice, alice_api, jetty, worker, fresh):
    post(
        jetty,
        alice.token,
        front_page_request(fresh, runbook=REVIEW_RUNBOOK, agent="jetty-agent", template_variables={"reviewer": "x"}),
    )
    response = alice_api.post(
        "/api/v1/run-sync/my-org/pr-review",
        {"init_params": json.dumps({"reviewer": "dee"}), "agent": "jetty-agent"},
        format="multipart",
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "succeeded", body
    assert body["task_version"] == 1 and body["collection"] == "my-org"


# Tokens


def test_a_collection_scoped_token_uses_only_its_own_collection(alice, jetty, worker, fresh):
    team = Collection.objects.create(org=alice.org, name="team")
    plain = ApiToken.generate(alice.org, name="team", collection=team)[1]
    response = post(jetty, plain, front_page_request(fresh, **{"async": True}))
    assert response.status_code == 404, response.text
    assert response.json()["error"]["param"] == "jetty.collection"
    assert list(Collection.objects.values_list("name", flat=True)) == ["team"] and not Run.objects.exists()

    # Its own collection, named or not, keeps the task there.
    for jetty_block in ({"collection": "team"}, {}):
        body = front_page_request(fresh, runbook=REVIEW_RUNBOOK, agent="jetty-agent", **{"async": True})
        body["jetty"].pop("collection")
        body["jetty"].update(template_variables={"reviewer": "t"}, **jetty_block)
        started = post(jetty, plain, body)
        assert started.status_code == 202, started.text
        run = final_run(started.json()["id"])
        assert run.collection == team and run.metadata["task_version"] == 1
    assert Task.objects.get().collection == team and TaskVersion.objects.count() == 1


def test_a_new_collection_without_a_task_holds_the_run_and_stores_no_task(alice, jetty, worker, fresh):
    body = front_page_request(fresh, agent="jetty-agent", **{"async": True})
    body["jetty"].pop("task")
    response = post(jetty, alice.token, body)
    assert response.status_code == 202, response.text
    run = final_run(response.json()["id"])
    assert run.status == "succeeded" and run.collection.name == "my-org" and run.task == "_agent"
    assert not Task.objects.exists()


def test_plain_gateway_mode_still_answers_404_for_an_unknown_collection(alice, jetty):
    body = {"model": "scripted/default", "messages": FRONT_PAGE["messages"], "jetty": {"collection": "my-org"}}
    response = post(jetty, alice.token, body)
    assert response.status_code == 404 and response.json()["error"]["param"] == "jetty.collection"
    assert not Collection.objects.exists()


# Bad input changes nothing


@pytest.mark.parametrize(
    "change, status, param",
    [
        ({"collection": "My Org"}, 400, "jetty.collection"),
        ({"collection": "../etc"}, 400, "jetty.collection"),
        ({"task": "PR Review"}, 400, "jetty.task"),
        ({"agent": "no-such-agent"}, 400, "jetty.agent"),
        ({"template_variables": {"unused": 1}}, 400, "jetty.template_variables"),
        ({"file_paths": ["uploads/nope/diff.patch"]}, 400, "jetty.file_paths"),
        ({"webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "s"}, 400, "jetty.webhook_url"),
        ({"timeout_s": 0}, 400, "jetty.timeout_s"),
        ({"collection": "my-org\n"}, 400, "jetty.collection"),  # a final newline is no name (the outside check)
        ({"task": "pr-review\n"}, 400, "jetty.task"),
        ({"runbook": "false"}, 400, "jetty.runbook"),  # a string is not false
        ({"async": "no"}, 400, "jetty.async"),
        ({"contract": "trust-the-agent"}, 400, "jetty.contract"),
    ],
)
def test_an_invalid_request_creates_nothing(alice, jetty, fresh, change, status, param):
    body = front_page_request(fresh)
    body["jetty"].update(change)
    response = post(jetty, alice.token, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert nothing_stored()


def test_two_files_that_would_land_on_one_path_are_refused(alice, jetty, fresh):
    again = upload_diff(jetty, alice.token)  # another diff.patch: both would be /app/assets/diff.patch
    response = post(jetty, alice.token, front_page_request([*fresh, *again]))
    assert response.status_code == 400 and response.json()["error"]["param"] == "jetty.file_paths"
    assert "/app/assets/diff.patch" in response.json()["error"]["message"]
    assert nothing_stored()


def test_a_model_the_org_may_not_use_creates_nothing(alice, jetty, fresh):
    alice.org.allowed_models = ["openai/*"]
    alice.org.save()
    response = post(jetty, alice.token, front_page_request(fresh))
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert nothing_stored()


def test_a_workflow_task_of_that_name_is_not_overwritten(alice, alice_api, jetty, fresh):
    alice_api.post("/api/v1/collections", {"name": "my-org"}, format="json")
    pushed = alice_api.post(
        "/api/v1/collections/my-org/tasks",
        {"name": "pr-review", "workflow": workflow(step("a", "text_echo", text="x"))},
        format="json",
    )
    assert pushed.status_code == 201
    body = front_page_request(fresh, runbook=REVIEW_RUNBOOK, template_variables={"reviewer": "w"})
    response = post(jetty, alice.token, body)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["param"] == "jetty.task" and "is a workflow task" in error["message"]
    task = Task.objects.get()
    assert task.kind == "workflow" and task.latest_version == 1 and not Run.objects.exists()


# Races


def test_concurrent_first_calls_make_one_collection_and_one_task(alice, jetty, worker, fresh):
    body = front_page_request(
        fresh, runbook=REVIEW_RUNBOOK, agent="jetty-agent", template_variables={"reviewer": "r"}, **{"async": True}
    )
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(4)

    def call():
        barrier.wait()
        answers.append(post(jetty, alice.token, body, timeout=60))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert Collection.objects.filter(org=alice.org).count() == 1
    assert Task.objects.count() == 1 and TaskVersion.objects.count() == 1
    runs = [final_run(a.json()["id"], 120) for a in answers]
    assert {(r.collection.name, r.task, r.metadata["task_version"]) for r in runs} == {("my-org", "pr-review", 1)}
