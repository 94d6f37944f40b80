"""Runs of stored tasks (`/api/v1/run/…`, `/api/v1/run-sync/…`) with a worker process and a real sandbox: the
collection's variables reach the sandbox, secrets reach it only as the variables the runbook declares, and no
secret value is stored anywhere: events, runs, jobs, steps, webhook deliveries, logs."""

from __future__ import annotations

import io
import json
from pathlib import Path

from runs.models import Job, PendingModelCall, StepRun, WebhookDelivery
from trajectories.models import Event, Run

from .factories import STORED_RUNBOOK
from .test_workflow_steps import Receiver, receiver  # noqa: F401  (fixture)
from .test_workflows import finished, push, step, workflow

COLLECTION_SECRET = "col-secret-7c1d93e0aa"
CALLER_SECRET = "call-secret-55be02f1c4"


def set_environment(api):
    api.post("/api/v1/collections", {"name": "stored"}, format="json")
    response = api.patch(
        "/api/v1/collections/stored/environment",
        {"env": {"REGION": "eu-west"}, "secrets": {"API_TOKEN": COLLECTION_SECRET, "UNUSED": "unused-secret-123"}},
        format="json",
    )
    assert response.status_code == 200


def assert_nowhere(secret: str, logs: Path) -> None:
    """The secret is in no stored row and no log line this test session wrote."""
    for event in Event.objects.all():
        assert secret not in json.dumps(event.payload), (event.kind, event.payload)
    for run in Run.objects.all():
        assert secret not in f"{run.error} {json.dumps(run.metadata)}"
    for job in Job.objects.all():
        assert secret not in f"{job.runbook} {json.dumps(job.params)} {json.dumps(job.env)} {job.final_answer}"
        assert job.secrets_encrypted == "" or job.run.status not in ("succeeded", "failed", "cancelled")
    assert not PendingModelCall.objects.exists()
    for step_run in StepRun.objects.all():
        assert secret not in json.dumps([step_run.inputs, step_run.outputs, step_run.state, step_run.error])
    for delivery in WebhookDelivery.objects.all():
        assert secret not in delivery.error
    for log in logs.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log.name


def test_a_stored_runbook_runs_with_the_collection_environment_and_secrets_stay_out(alice_api, worker, logs):
    set_environment(alice_api)
    assert push(alice_api, "stored", "greet", runbook=STORED_RUNBOOK).status_code == 201
    response = alice_api.post(
        "/api/v1/run-sync/stored/greet",
        {"init_params": json.dumps({"name": "ada"}), "files": [io.BytesIO(b"a,b\n")]},
        format="multipart",
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "succeeded", body
    assert body["task"] == "greet" and body["collection"] == "stored" and body["agent"] == "jetty-agent"
    run = Run.objects.get(public_id=body["run_id"])
    assert run.metadata["task_version"] == 1 and run.artifacts.get(path="count.txt").file.read() == b"2\n"
    outputs = [e.payload.get("output", "") for e in run.events.filter(kind="command")]
    # The secret reached the sandbox as $SERVICE_TOKEN (the step's `test -n` passed) and was masked in its output.
    assert any("region eu-west token [secret:SERVICE_TOKEN]" in o for o in outputs), outputs
    assert run.job.secrets_encrypted == ""  # wiped when the run ended
    assert "unused-secret-123" not in run.job.runbook
    assert_nowhere(COLLECTION_SECRET, logs)


def test_secret_params_win_for_one_run_and_are_never_stored(alice_api, worker, logs, receiver):  # noqa: F811
    set_environment(alice_api)
    push(alice_api, "stored", "greet", runbook=STORED_RUNBOOK)
    started = alice_api.post(
        "/api/v1/run/stored/greet",
        {
            "init_params": {"name": "bo"},
            "secret_params": {"API_TOKEN": CALLER_SECRET},
            "webhook_url": f"{receiver}/hook",
            "webhook_secret": "whsec-1",
        },
        format="json",
    )
    assert started.status_code == 202 and started.json()["status"] == "queued"
    run = finished(started.json()["run_id"])
    assert run.status == "succeeded", run.error
    outputs = " ".join(e.payload.get("output", "") for e in run.events.filter(kind="command"))
    assert "[secret:SERVICE_TOKEN]" in outputs and COLLECTION_SECRET not in outputs
    calls = run.events.filter(kind="model.call")
    assert any("[secret:SERVICE_TOKEN]" in json.dumps(c.payload["request"]) for c in calls)  # as the model saw it
    from tests.support import servers

    servers.wait_until(lambda: any(p == "/hook" for p, *_ in Receiver.seen), 15, "the webhook")
    hook = next(body for path, _, body in Receiver.seen if path == "/hook")
    assert json.loads(hook)["id"] == run.public_id and CALLER_SECRET.encode() not in hook
    assert_nowhere(CALLER_SECRET, logs)


def test_a_workflow_reads_secrets_through_env_and_stores_them_masked(alice_api, worker, logs, receiver):  # noqa: F811
    set_environment(alice_api)
    definition = workflow(
        step(
            "call",
            "http_request",
            url=f"{receiver}/api",
            method="POST",
            headers={"Authorization": "Bearer {{ env.API_TOKEN }}", "X-Region": "{{ env.REGION }}"},
            json={"echo": "{{ env.API_TOKEN }}"},
        ),
    )
    assert push(alice_api, "stored", "caller", workflow=definition).status_code == 201
    body = alice_api.post("/api/v1/run-sync/stored/caller", {}, format="json").json()
    assert body["status"] == "succeeded", body["error"]
    _, headers, _sent = next(r for r in Receiver.seen if r[0] == "/api")
    assert headers["Authorization"] == f"Bearer {COLLECTION_SECRET}" and headers["X-Region"] == "eu-west"
    (call,) = StepRun.objects.filter(workflow__run__public_id=body["run_id"])
    assert call.inputs["headers"]["Authorization"] == "Bearer [secret:API_TOKEN]"
    assert call.inputs["json"] == {"echo": "[secret:API_TOKEN]"}
    assert_nowhere(COLLECTION_SECRET, logs)
