"""Workflows end to end: definitions checked on push, then run by a Celery worker process: a branch, a capped
loop, a 20-way fan-out with its fan-in, and an agent run as a step."""

from __future__ import annotations

import time

import pytest

from runs.models import StepRun
from tests.support.servers import RECEIVER_HOST
from trajectories.models import FINAL_STATUSES, Run

from .test_agent_runs import RUNBOOK


def push(api, collection: str, name: str, **content):
    api.post("/api/v1/collections", {"name": collection}, format="json")
    return api.post(f"/api/v1/collections/{collection}/tasks", {"name": name, **content}, format="json")


def finished(public_id: str, timeout: float = 60) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(public_id=public_id)
        if run.status in FINAL_STATUSES:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {public_id} still {Run.objects.get(public_id=public_id).status} after {timeout}s")


def step(name: str, kind: str, **params):
    return name, {"type": kind, "params": params}


def workflow(*steps, **extra):
    return {"steps": [n for n, _ in steps], "step_configs": dict(steps), **extra}


BAD_DEFINITIONS = [
    (workflow(step("a", "no_such_step")), "step 'a': unknown step type 'no_such_step'"),
    (
        workflow(step("a", "text_echo", text_path="b.outputs.text"), step("b", "text_echo", text="x")),
        "step 'a': text_path: bad path 'b.outputs.text': step 'b' does not run before this one (forward reference)",
    ),
    (workflow(step("a", "text_echo", text="x", colour="red")), "step 'a': unknown param 'colour' for text_echo"),
    (workflow(step("a", "text_echo", text_path="init_params..x")), "step 'a': text_path: bad path"),
    (
        workflow(step("a", "text_echo", text="{{ ghost.outputs.text }}")),
        "step 'a': text: bad path 'ghost.outputs.text'",
    ),
    (workflow(step("a", "text_echo")), "step 'a': text_echo needs param 'text'"),
    (workflow(step("a", "loop_counter", max=2, loop_to="b"), step("b", "text_echo", text="x")), "step 'a': loop_to"),
    (workflow(step("a", "conditional_branch", condition=True, true_step="nowhere")), "true_step names no step"),
    (workflow(step("a", "loop_counter", max=0, loop_to="a")), "step 'a': max: 0 is less than the minimum of 1"),
    ({"steps": ["a"], "step_configs": {}}, "step 'a' has no entry in `step_configs`"),
    ({"steps": [], "step_configs": {}}, "`steps` must be a non-empty list"),
]


@pytest.mark.parametrize(("definition", "message"), BAD_DEFINITIONS)
def test_a_bad_workflow_is_refused_with_the_step_and_field_named(alice_api, definition, message):
    response = push(alice_api, "flows", "bad", workflow=definition)
    assert response.status_code == 422, response.json()
    error = response.json()["error"]
    assert message in error["message"] and error["code"] == "invalid_workflow"
    assert not alice_api.get("/api/v1/collections/flows/tasks").json()["data"]  # nothing stored


BRANCH_AND_LOOP = workflow(
    step("greet", "text_template", template="hello {{ init_params.who }}"),
    step("check", "conditional_branch", left_path="init_params.who", operator="eq", right="ada", false_step="other"),
    step("body", "text_concatenate", texts=["{{ greet.outputs.text }}", "pass"], separator=" / "),
    step("again", "loop_counter", max=3, loop_to="body"),
    step("save", "save_text_file", path="out.txt", text_path="body.outputs.text"),
    step("other", "text_echo", text="{{ greet.outputs.text }} (other path)"),
)


def test_a_workflow_branches_and_loops_with_a_cap(alice_api, worker):
    assert push(alice_api, "flows", "loop", workflow=BRANCH_AND_LOOP).status_code == 201
    response = alice_api.post("/api/v1/run-sync/flows/loop", {"init_params": {"who": "ada"}}, format="json")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "succeeded", body["error"]
    steps = alice_api.get(f"/api/v1/runs/{body['run_id']}/steps").json()["data"]
    order = [(s["name"], s["visit"]) for s in steps]
    assert order == [
        ("greet", 1), ("check", 1),
        ("body", 1), ("again", 1), ("body", 2), ("again", 2), ("body", 3), ("again", 3),
        ("save", 1), ("other", 1),
    ]  # fmt: skip
    assert [s["outputs"]["looping"] for s in steps if s["name"] == "again"] == [True, True, False]
    assert steps[-1]["outputs"]["text"] == "hello ada (other path)"
    run = Run.objects.get(public_id=body["run_id"])
    assert run.artifacts.get(path="out.txt").file.read() == b"hello ada / pass"
    assert body["outputs"] == {"text": "hello ada (other path)"}
    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(1 for e in events if e.kind == "step.end") == 10

    skipped = alice_api.post("/api/v1/run-sync/flows/loop", {"init_params": {"who": "bo"}}, format="json").json()
    names = [s["name"] for s in alice_api.get(f"/api/v1/runs/{skipped['run_id']}/steps").json()["data"]]
    assert names == ["greet", "check", "other"]


def test_a_failing_step_fails_the_workflow_after_its_retries(alice_api, worker):
    definition = workflow(
        {"a": None} and ("a", {"type": "json_schema_validate", "retries": 2, "retry_backoff_s": 0.05, "params": {
            "data": {"n": "x"}, "schema": {"properties": {"n": {"type": "integer"}}}, "fail_on_invalid": True}}),
        step("never", "text_echo", text="x"),
    )  # fmt: skip
    push(alice_api, "flows", "fails", workflow=definition)
    body = alice_api.post("/api/v1/run-sync/flows/fails", {}, format="json").json()
    assert body["status"] == "failed" and "step 'a' failed: 1 schema error(s)" in body["error"]
    (only,) = StepRun.objects.filter(workflow__run__public_id=body["run_id"])
    assert only.attempts == 3 and only.status == "failed"


def test_a_workflow_fans_out_twenty_ways_and_fans_in(alice_api, worker):
    child = workflow(step("shout", "text_template", template="{{ init_params.item }}!"))
    assert push(alice_api, "flows", "shout", workflow=child).status_code == 201
    parent = workflow(
        step("split", "text_split", text_path="init_params.words"),
        step("each", "list_emit_await", items_path="split.outputs.items[*].text", task="shout"),
        step("gather", "extract_from_trajectories", runs_path="each.outputs.runs", field="outputs.text"),
        step("join", "text_concatenate", texts_path="gather.outputs.items", separator=" "),
    )
    assert push(alice_api, "flows", "fan", workflow=parent).status_code == 201
    words = [f"w{i}" for i in range(20)]
    started = alice_api.post("/api/v1/run/flows/fan", {"init_params": {"words": "\n".join(words)}}, format="json")
    assert started.status_code == 202
    run = finished(started.json()["run_id"], timeout=120)
    assert run.status == "succeeded", run.error
    assert run.metadata["outputs"]["text"] == " ".join(f"{w}!" for w in words)
    children = list(run.children.order_by("created"))
    assert len(children) == 20 and all(c.status == "succeeded" and c.task == "shout" for c in children)
    steps = {s.name: s for s in StepRun.objects.filter(workflow__run=run)}
    assert steps["each"].outputs["count"] == 20 and steps["each"].outputs["succeeded"] == 20
    assert sorted(steps["each"].state["run_ids"]) == sorted(c.public_id for c in children)


def test_an_agent_run_is_a_step(alice_api, worker):
    definition = workflow(
        step(
            "agent",
            "runbook",
            runbook=RUNBOOK,
            agent="jetty-agent",
            model="scripted/default",
            template_variables={"name": "{{ init_params.name }}"},
        ),
        step("count", "read_text_file", run_id_path="agent.outputs.run_id", path="count.txt"),
        step("say", "text_template", template="{{ init_params.name }} has {{ count.outputs.text }} words"),
    )
    assert push(alice_api, "flows", "agentic", workflow=definition).status_code == 201
    body = alice_api.post("/api/v1/run-sync/flows/agentic", {"init_params": {"name": "ada"}}, format="json").json()
    assert body["status"] == "succeeded", body
    assert body["outputs"]["text"] == "ada has 4\n words"
    (child,) = Run.objects.get(public_id=body["run_id"]).children.all()
    assert child.kind == "agent" and child.agent == "jetty-agent" and child.status == "succeeded"
    assert child.artifacts.get(path="greeting.txt").file.read() == b"hello ada from jetty\n"


def test_a_step_over_its_time_limit_fails_the_workflow(alice_api, worker):
    import http.server
    import threading

    from .test_workflow_resume import Receiver

    server = http.server.ThreadingHTTPServer((RECEIVER_HOST, 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.seen, Receiver.release = [], threading.Event()
    try:
        slow = f"http://{RECEIVER_HOST}:{server.server_port}/slow"
        config = {"type": "http_request", "timeout_s": 1, "params": {"url": slow, "method": "POST"}}
        definition = workflow(("wait", config))
        push(alice_api, "flows", "slow", workflow=definition)
        started = time.monotonic()
        body = alice_api.post("/api/v1/run-sync/flows/slow", {}, format="json").json()
        assert body["status"] == "failed" and "step 'wait' failed: timed out after 1 s" in body["error"]
        assert time.monotonic() - started < 15
    finally:
        Receiver.release.set()
        server.shutdown()


def test_cancelling_a_workflow_cancels_its_child_runs(alice_api, worker):
    from .test_workflow_resume import SLOW_RUNBOOK

    definition = workflow(
        step("agent", "runbook", runbook=SLOW_RUNBOOK, agent="jetty-agent", model="scripted/default"),
        step("after", "text_echo", text="never"),
    )
    push(alice_api, "flows", "cancelled", workflow=definition)
    run_id = alice_api.post("/api/v1/run/flows/cancelled", {}, format="json").json()["run_id"]
    parent = Run.objects.get(public_id=run_id)
    deadline = time.monotonic() + 30
    while not parent.children.filter(status="running").exists():
        assert time.monotonic() < deadline, "the agent run did not start"
        time.sleep(0.1)
    assert alice_api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    assert finished(run_id).status == "cancelled"
    (child,) = parent.children.all()
    assert finished(child.public_id).status == "cancelled"
    assert not StepRun.objects.filter(workflow__run=parent, name="after").exists()
