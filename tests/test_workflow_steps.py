"""Every step type, run in-process on a real workflow run row (the ones that start runs are exercised with a
worker in test_workflows.py). Each test checks real outputs, and the catalogue serves every type."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orgs.auth import Principal
from orgs.models import Collection
from runs.models import Workflow
from runs.stored import start_workflow
from runs.uploads import store_uploads
from runs.workflows.registry import Jump, StepContext, StepFailed, step_types
from tests.support.servers import RECEIVER_HOST

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workflow_run(alice, django_capture_on_commit_callbacks):
    collection = Collection.objects.create(org=alice.org, name="steps")
    principal = Principal(org=alice.org, token=None, collection=collection)
    definition = {"steps": ["a"], "step_configs": {"a": {"type": "text_echo", "params": {"text": "x"}}}}
    with django_capture_on_commit_callbacks(execute=False):
        return start_workflow(principal, definition, {}, task="steps", collection_id=collection.pk, secrets={}, env={})


def run_step(run, kind: str, params: dict, values: dict | None = None, visit: int = 1, state: dict | None = None):
    cls = step_types()[kind]
    cls.check_params(params)
    ctx = StepContext(
        run=run,
        step_name="s",
        visit=visit,
        values=values or {"init_params": {}, "env": {}},
        state=state or {},
        secrets={},
        env={},
    )
    return cls().run(ctx, params)


def test_the_catalogue_lists_every_type_with_schemas(alice_api):
    body = alice_api.get("/api/v1/step-templates").json()
    types = {t["type"]: t for t in body["data"]}
    expected = {
        "runbook", "litellm_chat", "litellm_vision", "simple_judge", "conditional_branch", "loop_counter",
        "list_emit_await", "extract_from_trajectories", "text_echo", "text_template", "text_concatenate",
        "text_split", "json_transform", "json_schema_validate", "read_uploaded_file", "read_text_file",
        "save_text_file", "http_request", "webhook_notify", "document_extraction",
    }  # fmt: skip
    assert expected <= set(types)
    for entry in types.values():
        assert entry["params"]["type"] == "object" and entry["outputs"]["type"] == "object" and entry["description"]


def test_text_steps(workflow_run):
    assert run_step(workflow_run, "text_echo", {"text": "hi"}) == {"text": "hi"}
    values = {"init_params": {"who": "ada"}, "env": {}}
    out = run_step(
        workflow_run,
        "text_template",
        {"template": "{{ who }} / {{ init_params.who }}", "variables": {"who": "bo"}},
        values,
    )
    assert out == {"text": "bo / ada"}
    assert run_step(workflow_run, "text_concatenate", {"texts": ["a", 1, {"k": 2}], "separator": "|"}) == {
        "text": 'a|1|{"k": 2}'
    }
    split = run_step(workflow_run, "text_split", {"text": " x \n\n y\nz", "max_items": 2})
    assert split == {"items": [{"text": "x", "index": 0}, {"text": "y", "index": 1}], "count": 2}


def test_data_steps(workflow_run):
    data = '{"people": [{"name": "ada", "age": 36}, {"name": "bo", "age": 7}]}'
    out = run_step(workflow_run, "json_transform", {"input": data, "mapping": {"names": "input.people[*].name"}})
    assert out == {"result": {"names": ["ada", "bo"]}}
    with pytest.raises(StepFailed, match="mapping"):
        run_step(workflow_run, "json_transform", {"input": data, "mapping": {"x": "input.nope"}})
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}, "required": ["age"]}
    good = run_step(workflow_run, "json_schema_validate", {"data": {"age": 3}, "schema": schema})
    assert good["valid"] and good["errors"] == []
    bad = run_step(workflow_run, "json_schema_validate", {"data": {"age": -1}, "schema": schema})
    assert not bad["valid"] and bad["errors"][0]["path"] == "/age" and bad["error_count"] == 1
    with pytest.raises(StepFailed, match="schema error"):
        run_step(workflow_run, "json_schema_validate", {"data": {}, "schema": schema, "fail_on_invalid": True})


def test_control_steps(workflow_run):
    branch = run_step(workflow_run, "conditional_branch", {"left": 3, "operator": "gt", "right": 2, "true_step": "t"})
    assert branch == Jump({"result": True, "next": "t"}, "t")
    branch = run_step(workflow_run, "conditional_branch", {"condition": "false", "true_step": "t"})
    assert branch == Jump({"result": False, "next": None}, None)
    loop = run_step(workflow_run, "loop_counter", {"max": 3, "loop_to": "a"}, visit=2)
    assert loop == Jump({"count": 2, "looping": True, "capped": False}, "a")
    assert run_step(workflow_run, "loop_counter", {"max": 3, "loop_to": "a"}, visit=3).to is None
    until = run_step(workflow_run, "loop_counter", {"max": 9, "loop_to": "a", "until": True})
    assert until.to is None and until.outputs["capped"] is False


def test_file_steps(workflow_run, alice):
    (upload,) = store_uploads(alice.org, [SimpleUploadedFile("notes/n.txt", b"line one\nline two\n")])
    read = run_step(workflow_run, "read_uploaded_file", {"file_path": upload.key})
    assert read["text"] == "line one\nline two\n" and read["size"] == 18 and read["truncated"] is False
    with pytest.raises(StepFailed, match="no uploaded file"):
        run_step(workflow_run, "read_uploaded_file", {"file_path": "uploads/nope/x"})
    saved = run_step(workflow_run, "save_text_file", {"path": "report/out.md", "text": "# Done\n"})
    assert saved["sha256"] == hashlib.sha256(b"# Done\n").hexdigest()
    assert workflow_run.artifacts.get(path="report/out.md").file.read() == b"# Done\n"
    again = run_step(workflow_run, "read_text_file", {"run_id": workflow_run.public_id, "path": "report/out.md"})
    assert again["text"] == "# Done\n"
    with pytest.raises(StepFailed, match="not a relative path"):
        run_step(workflow_run, "save_text_file", {"path": "../escape", "text": "x"})


def test_model_steps_call_the_scripted_model_and_record_each_call(workflow_run):
    chat = run_step(workflow_run, "litellm_chat", {"model": "scripted/default", "prompt": "hello there"})
    assert chat["text"] == "echo: hello there" and chat["usage"]["prompt_tokens"] > 0
    (call,) = workflow_run.events.filter(kind="model.call")
    assert call.payload["request"]["messages"][-1]["content"] == "hello there" and call.provider == "scripted"
    vision = run_step(
        workflow_run,
        "litellm_vision",
        {"model": "scripted/default", "prompt": "what is this", "images": ["https://example.test/cat.png"]},
    )
    assert vision["text"].startswith("echo: what is this")
    judge = run_step(
        workflow_run,
        "simple_judge",
        {"model": "scripted/default", "content": "2+2=4", "criteria": "Is it right?", "categories": ["right", "wrong"]},
    )
    # the scripted model answers the first enum value: a real verdict parsed from a real JSON answer
    assert judge["verdict"] == "right" and judge["passed"] is True and judge["score"] is None
    scale = run_step(
        workflow_run,
        "simple_judge",
        {
            "model": "scripted/default",
            "content": "x",
            "criteria": "c",
            "scale_min": 1,
            "scale_max": 5,
            "pass_threshold": 3,
        },
    )
    assert scale["score"] == 1.0 and scale["passed"] is False
    workflow_run.refresh_from_db()
    assert workflow_run.events.filter(kind="model.call").count() == 4 and workflow_run.total_tokens > 0
    with pytest.raises(StepFailed, match="does not exist"):
        run_step(workflow_run, "litellm_chat", {"model": "no-such-provider/x", "prompt": "x"})


def test_document_extraction_validates_and_fixes_up_to_its_cap(workflow_run):
    schema = {
        "type": "object",
        "properties": {"invoice": {"type": "string"}, "total": {"type": "number"}},
        "required": ["invoice", "total"],
    }
    out = run_step(
        workflow_run,
        "document_extraction",
        {"model": "scripted/default", "document": "Invoice 7, total 12", "schema": schema},
    )
    assert out["valid"] and out["attempts"] == 1 and set(out["data"]) == {"invoice", "total"}
    # A schema the scripted model cannot meet (it answers 1.0 for numbers): three fixes, then an honest report.
    strict = {**schema, "properties": {**schema["properties"], "total": {"type": "number", "minimum": 100}}}
    out = run_step(
        workflow_run,
        "document_extraction",
        {"model": "scripted/default", "document": "x", "schema": strict, "max_fixes": 3},
    )
    assert out["valid"] is False and out["attempts"] == 4 and out["errors"][0]["path"] == "/total"
    assert [h["attempt"] for h in out["history"]] == [1, 2, 3, 4]


class Receiver(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"] or 0))
        Receiver.seen.append((self.path, dict(self.headers), body))
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"got": len(body)}).encode())

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.seen = []
    server = http.server.ThreadingHTTPServer((RECEIVER_HOST, 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{RECEIVER_HOST}:{server.server_port}"
    server.shutdown()


def test_web_steps(workflow_run, receiver):
    out = run_step(workflow_run, "http_request", {"url": f"{receiver}/x", "method": "POST", "json": {"a": 1}})
    assert out["status"] == 200 and json.loads(Receiver.seen[0][2]) == {"a": 1}
    assert out["json"] == {"got": len(Receiver.seen[0][2])}
    headers = Receiver.seen[0][1]
    assert headers["Idempotency-Key"] == f"{workflow_run.public_id}:s:1"
    with pytest.raises(StepFailed, match="answered 500"):
        run_step(workflow_run, "http_request", {"url": f"{receiver}/fail"})
    sent = run_step(
        workflow_run, "webhook_notify", {"url": f"{receiver}/hook", "payload": {"done": True}, "secret": "k3y"}
    )
    assert sent == {"delivered": True, "status": 200, "attempts": 1}
    _, headers, body = Receiver.seen[-1]
    expected = hmac.new(b"k3y", f"{headers['X-Jetty-Timestamp']}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Jetty-Signature"] == expected and json.loads(body) == {"done": True}
    with pytest.raises(StepFailed, match="not delivered after 2 attempts"):
        run_step(workflow_run, "webhook_notify", {"url": f"{receiver}/fail", "payload": {}, "attempts": 2})


def test_params_are_checked_against_the_schema(workflow_run):
    with pytest.raises(StepFailed, match="max"):
        run_step(workflow_run, "loop_counter", {"max": 0, "loop_to": "a"})
    assert Workflow.objects.filter(run=workflow_run).exists()
