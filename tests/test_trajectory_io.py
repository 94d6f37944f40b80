"""Runs in and out: JSONL and trajectory JSON export, ingest (round trip, idempotence, isolation), OpenTelemetry
GenAI spans over OTLP/HTTP to a local receiver, and imports of ATIF, real Inspect AI eval logs and real Claude Code /
Codex session logs, each checked for what it maps and what it reports it could not."""

from __future__ import annotations

import copy
import gzip
import io
import json
import shlex
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from orgs.models import ApiToken, Collection
from runs.agents.clis import ClaudeCode, Codex
from tests.conftest import api_for, wait_for_run
from tests.support.servers import RECEIVER_HOST
from tests.test_agent_runs import agent_call
from tests.test_workflows import BRANCH_AND_LOOP, push
from trajectories.actions import record_label
from trajectories.exports import nanoseconds
from trajectories.models import Label, LabelChange, Run

SESSIONS = Path(__file__).parent / "fixtures" / "sessions"
ROOT = Path(__file__).resolve().parents[1]


def export(api, run_id: str, kind: str = "trajectory"):
    return api.get(f"/api/v1/runs/{run_id}/export?format={kind}")


def trajectory_of(api, run_id: str) -> dict[str, Any]:
    response = export(api, run_id)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def import_file(api, kind: str, data: bytes, name: str = "log", **params: str):
    query = "&".join(f"{k}={v}" for k, v in {"format": kind, **params}.items())
    upload = SimpleUploadedFile(name, data)
    return api.post(f"/api/v1/runs/import?{query}", {"file": upload}, format="multipart")


def assert_openai_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.fixture
def chat_run(alice, alice_client, upstream) -> Run:
    """A real passthrough call recorded by the gateway, with a judge's label on the run and a reviewer's on its
    model call (changed once, so it has history)."""
    raw = alice_client.chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "export me"}], temperature=0.2, seed=7
    )
    run = wait_for_run(raw.headers["x-jetty-run-id"])
    call = run.events.get(kind="model.call")
    record_label(run, "eval.pass", True, source="judge", author="judge:scripted/alt", judge_model="scripted/alt",
                 raw_output="PASS", explanation="it answered")  # fmt: skip
    record_label(run, "quality", 2, source="human", author="ada", event=call)
    record_label(run, "quality", 4, source="human", author="ada", event=call, explanation="on second look")
    return run


def test_a_recorded_run_exports_as_jsonl_and_trajectory_json_with_every_event_and_label(alice_api, chat_run):
    events = list(chat_run.events.order_by("seq"))
    response = export(alice_api, chat_run.public_id, "jsonl")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert f'filename="{chat_run.public_id}.jsonl"' in response["Content-Disposition"]
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [line["type"] for line in lines] == ["run"] + ["event"] * len(events) + ["label"] * 2
    header = lines[0]
    assert (header["id"], header["format"], header["status"]) == (chat_run.public_id, "jetty.jsonl", "succeeded")
    assert (header["model"], header["provider"], header["prompt_tokens"]) == ("openai/gpt-4o-mini", "openai", 11)
    assert [(e["seq"], e["kind"]) for e in lines[1:-2]] == [(e.seq, e.kind) for e in events]
    call = next(e for e in lines if e.get("kind") == "model.call")
    assert call["payload"]["request"]["messages"][0]["content"] == "export me"
    assert call["prompt_tokens"] == 11 and call["cost_usd"] > 0 and call["latency_ms"] is not None
    labels = {(line["key"], line["author"]): line for line in lines if line["type"] == "label"}
    assert labels[("eval.pass", "judge:scripted/alt")]["event_seq"] is None
    assert labels[("eval.pass", "judge:scripted/alt")]["raw_output"] == "PASS"
    quality = labels[("quality", "ada")]
    assert quality["event_seq"] == call["seq"] and quality["value"] == 4
    assert [(h["previous"], h["value"]) for h in quality["history"]] == [(None, 2), (2, 4)]

    doc = trajectory_of(alice_api, chat_run.public_id)
    assert (doc["format"], doc["version"], doc["run"]["id"]) == ("jetty.trajectory", 1, chat_run.public_id)
    assert doc["events"] == [{k: v for k, v in line.items() if k != "type"} for line in lines[1:-2]]
    assert doc["labels"] == [{k: v for k, v in line.items() if k != "type"} for line in lines[-2:]]
    assert doc["steps"] == {} and doc["artifacts"] == []


def test_a_trajectory_ingested_into_another_org_round_trips_and_ingesting_again_changes_nothing(
    alice_api, bob, bob_api, chat_run
):
    doc = trajectory_of(alice_api, chat_run.public_id)
    first = bob_api.post("/api/v1/runs/ingest", doc, format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    copy_id = body["run"]["id"]
    assert body["created"] is True and copy_id != chat_run.public_id and body["run"]["org"] == bob.org.public_id
    assert body["report"]["unmapped"] == []

    again = bob_api.post("/api/v1/runs/ingest", doc, format="json")
    assert again.status_code == 200 and again.json()["run"]["id"] == copy_id and again.json()["created"] is False
    assert Run.objects.filter(org=bob.org).count() == 1

    # What bob exports is what alice exported, apart from the run's identity and where it came from.
    back = trajectory_of(bob_api, copy_id)
    assert back["events"] == doc["events"]
    assert back["labels"] == doc["labels"]
    assert back["steps"] == doc["steps"]
    identity = {"id", "org", "metadata", "token_prefix"}
    assert {k: v for k, v in back["run"].items() if k not in identity} == {
        k: v for k, v in doc["run"].items() if k not in identity
    }
    assert back["run"]["metadata"] == {**doc["run"]["metadata"], "ingest": {
        "format": "trajectory", "source_id": chat_run.public_id, "source_org": chat_run.org.public_id,
    }}  # fmt: skip
    # Ingesting a run into the org it came from finds the run itself.
    home = alice_api.post("/api/v1/runs/ingest", doc, format="json")
    assert home.status_code == 200 and home.json()["run"]["id"] == chat_run.public_id


def test_nul_characters_from_elsewhere_are_stored_as_replacement_characters(alice_api, bob_api, chat_run):
    doc = trajectory_of(alice_api, chat_run.public_id)
    doc["events"][1]["payload"]["response"]["note"] = "bin\x00ary"
    doc["labels"][0]["explanation"] = "a\x00b"
    copy_id = bob_api.post("/api/v1/runs/ingest", doc, format="json").json()["run"]["id"]
    run = Run.objects.get(public_id=copy_id)
    assert run.events.get(seq=2).payload["response"]["note"] == "bin\ufffdary"
    assert run.labels.get(key=doc["labels"][0]["key"]).explanation == "a\ufffdb"


def test_exports_are_404_for_other_orgs(bob_api, chat_run):
    for kind in ("jsonl", "trajectory"):
        assert_openai_error(export(bob_api, chat_run.public_id, kind), 404)
    response = bob_api.post(
        f"/api/v1/runs/{chat_run.public_id}/export/otlp", {"endpoint": "http://127.0.0.1:9/v1/traces"}, format="json"
    )
    assert_openai_error(response, 404)
    assert_openai_error(export(bob_api, "run_doesnotexist"), 404)


def test_bad_ingests_are_400_in_openai_shape_and_write_nothing(alice_api, bob, bob_api, chat_run):
    doc = trajectory_of(alice_api, chat_run.public_id)

    def broken(change) -> dict[str, Any]:
        bad = copy.deepcopy(doc)
        change(bad)
        return bad

    cases = {
        "run.status": broken(lambda d: d["run"].update(status="running")),
        "events[1].kind": broken(lambda d: d["events"][1].update(kind="telepathy")),
        "events[0].ts": broken(lambda d: d["events"][0].update(ts="yesterday")),
        "events[1].prompt_tokens": broken(lambda d: d["events"][1].update(prompt_tokens=-3)),
        "events[2].seq": broken(lambda d: d["events"][2].update(seq=1)),
        "labels[0].event_seq": broken(lambda d: d["labels"][0].update(event_seq=99)),
        "labels[1].source": broken(lambda d: d["labels"][1].update(source="oracle")),
        "run.id": broken(lambda d: d["run"].pop("id")),
        "format": broken(lambda d: d.update(format="langsmith")),
        "events": broken(lambda d: d.update(events={"not": "a list"})),
        "artifacts[0].path": broken(
            lambda d: d.update(artifacts=[{"path": "../../etc/cron.d/x", "content_base64": "aGk="}])
        ),
        "artifacts[0].sha256": broken(
            lambda d: d.update(artifacts=[{"path": "a.txt", "content_base64": "aGk=", "sha256": "0" * 64}])
        ),
        "artifacts[0].content_base64": broken(lambda d: d.update(artifacts=[{"path": "a.txt", "content_base64": "*"}])),
    }
    for param, bad in cases.items():
        error = assert_openai_error(bob_api.post("/api/v1/runs/ingest", bad, format="json"), 400)
        assert error["param"] == param, (param, error)
    not_json = bob_api.generic("POST", "/api/v1/runs/ingest", b"{nope", content_type="application/json")
    assert assert_openai_error(not_json, 400)["code"] == "invalid_json"
    assert assert_openai_error(bob_api.post("/api/v1/runs/ingest", [1, 2], format="json"), 400)
    assert not Run.objects.filter(org=bob.org).exists()
    assert not Label.objects.filter(run__org=bob.org).exists() and not LabelChange.objects.filter(run__org=bob.org)
    assert_openai_error(export(alice_api, chat_run.public_id, "yaml"), 400)


def test_an_agent_run_and_its_files_round_trip_into_another_org(alice_api, alice_client, bob, bob_api, worker):
    raw = agent_call(alice_client, agent="jetty-agent")
    run = Run.objects.get(public_id=json.loads(raw.http_response.text)["jetty"]["run_id"])
    assert run.status == "succeeded"
    response = alice_api.get(f"/api/v1/runs/{run.public_id}/export?format=trajectory&artifacts=inline")
    doc = json.loads(response.content)
    kinds = {e["kind"] for e in doc["events"]}
    assert {"run.state", "model.call", "tool.call", "tool.result", "command", "file.change"} <= kinds
    assert {a["path"] for a in doc["artifacts"]} == {
        "greeting.txt",
        "count.txt",
        "summary.md",
        "validation_report.json",
    }
    assert {(label["key"], label["source"]) for label in doc["labels"]} == {
        ("validation.overall_passed", "system"), ("validation.stage.count", "system"),
        ("contract.passed", "system"), ("contract.required_files", "system"), ("contract.validation_report", "system"),
    }  # fmt: skip
    assert doc["run"]["contract"]["passed"] is True and "contract.check" in kinds

    created = bob_api.post("/api/v1/runs/ingest", doc, format="json")
    unmapped = created.json()["report"]["unmapped"]
    # The workspace snapshots' digests are alice's org's content: another org's copy drops them, and says so.
    assert created.status_code == 201 and unmapped and all(u["kept"].startswith("dropped") for u in unmapped)
    copy_id = created.json()["run"]["id"]
    back = json.loads(bob_api.get(f"/api/v1/runs/{copy_id}/export?format=trajectory&artifacts=inline").content)

    def without_blobs(events):
        blobs = ("sha256", "previous_sha256")
        return [
            {**e, "payload": {k: v for k, v in e["payload"].items() if k not in blobs}}
            if e["kind"] == "file.change" else e
            for e in events
        ]  # fmt: skip

    assert back["events"] == without_blobs(doc["events"]) and back["labels"] == doc["labels"]
    assert back["run"]["contract"] == {**doc["run"]["contract"], "imported": True} and back["run"]["error_code"] == ""

    def files(d):
        return [{k: v for k, v in a.items() if k != "url"} for a in d["artifacts"]]

    assert files(back) == files(doc)
    assert all(a["url"].endswith(f"/api/v1/runs/{copy_id}/artifacts/{a['path']}") for a in back["artifacts"])
    assert bob_api.get(f"/api/v1/runs/{copy_id}/artifacts/count.txt").getvalue() == b"4\n"
    # As ATIF: a step per model call with its tool calls and results; what ATIF cannot hold is counted.
    atif = json.loads(export(alice_api, run.public_id, "atif").content)
    assert atif["schema_version"] == "ATIF-v1.6" and atif["agent"]["name"] == "jetty-agent"
    assert atif["extra"]["jetty"]["contract"] == doc["run"]["contract"]
    calls = [e for e in doc["events"] if e["kind"] == "tool.call"]
    agent_steps = [step for step in atif["steps"] if step["source"] == "agent"]
    assert len(agent_steps) == sum(1 for e in doc["events"] if e["kind"] == "model.call")
    assert [c["tool_call_id"] for step in agent_steps for c in step.get("tool_calls", [])] == [
        c["payload"]["id"] for c in calls
    ]
    assert [r["source_call_id"] for step in agent_steps for r in step.get("observation", {}).get("results", [])] == [
        c["payload"]["id"] for c in calls
    ]
    assert [step["step_id"] for step in atif["steps"]] == list(range(1, len(atif["steps"]) + 1))
    skipped = atif["extra"]["jetty"]["not_in_atif"]
    assert skipped["command"] == 4 and skipped["run.state"] >= 3 and skipped["file.change"] >= 4
    assert import_file(bob_api, "atif", json.dumps(atif).encode()).status_code == 201
    # Without the content, the files are listed in the run's metadata and the report says so.
    listed = trajectory_of(alice_api, run.public_id)
    listed["run"]["id"] = "elsewhere-1"
    report = bob_api.post("/api/v1/runs/ingest", listed, format="json").json()
    assert [u["where"] for u in report["report"]["unmapped"] if not u["kept"].startswith("dropped")] == ["artifacts"]
    assert len(Run.objects.get(public_id=report["run"]["id"]).metadata["ingest"]["artifacts"]) == 4


def test_a_workflow_exports_its_steps_keyed_by_name_and_as_a_span_per_step(alice_api, worker, otlp):
    assert push(alice_api, "flows", "loop", workflow=BRANCH_AND_LOOP).status_code == 201
    body = alice_api.post("/api/v1/run-sync/flows/loop", {"init_params": {"who": "ada"}}, format="json").json()
    doc = trajectory_of(alice_api, body["run_id"])
    steps = doc["steps"]
    assert list(steps) == ["greet", "check", "body", "again", "save", "other"]
    assert (steps["body"]["visits"], steps["again"]["visits"], steps["greet"]["visits"]) == (3, 3, 1)
    assert all(step["status"] == "succeeded" for step in steps.values())
    by_seq = {e["seq"]: e for e in doc["events"]}
    for name, step in steps.items():
        assert step["event_seqs"] == [e["seq"] for e in doc["events"] if e["span"] == name]
        assert by_seq[step["first_seq"]]["kind"] == "step.start" and by_seq[step["last_seq"]]["kind"] == "step.end"
        assert step["counts"]["step.start"] == step["counts"]["step.end"] == step["visits"]

    response = alice_api.post(f"/api/v1/runs/{body['run_id']}/export/otlp", {"endpoint": otlp.url}, format="json")
    assert response.status_code == 200, response.content
    spans = otlp.spans()
    root = next(s for s in spans if s["parent"] == "")
    assert root["name"] == "invoke_workflow loop"
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_workflow"
    assert root["attributes"]["gen_ai.workflow.name"] == "loop"
    visits = [s["name"] for s in spans if s["parent"] == root["id"]]
    assert sorted(visits) == sorted(
        ["greet", "check", "body", "again", "body", "again", "body", "again", "save", "other"]
    )
    for span in spans:
        assert root["start"] <= span["start"] <= span["end"] <= root["end"]


# OpenTelemetry ------------------------------------------------------------------------------------------------------


class OtlpReceiver:
    """A tiny OTLP/HTTP traces endpoint: decodes each ``ExportTraceServiceRequest`` it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.headers.append(dict(self.headers))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((RECEIVER_HOST, 0), Handler)
        self.url = f"http://{RECEIVER_HOST}:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict[str, Any]]:
        out = []
        for request in self.requests:
            for resource in request.resource_spans:
                service = {a.key: _value(a.value) for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        out.append(
                            {
                                "name": span.name,
                                "id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "trace": span.trace_id.hex(),
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "status": span.status.code,
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                                "events": [e.name for e in span.events],
                                "resource": service,
                            }
                        )
        return out


def _value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which)


@pytest.fixture
def otlp():
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


def test_a_chat_run_goes_out_as_one_genai_chat_span(alice_api, chat_run, otlp):
    url = f"/api/v1/runs/{chat_run.public_id}/export/otlp"
    response = alice_api.post(url, {"endpoint": otlp.url, "headers": {"x-tenant": "acme"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["spans"] == 1 and otlp.headers[0]["x-tenant"] == "acme"
    [span] = otlp.spans()
    assert span["name"] == "chat openai/gpt-4o-mini" and span["parent"] == ""
    attributes = span["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == chat_run.upstream_model
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (11, 7)
    assert attributes["gen_ai.request.temperature"] == 0.2 and attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["jetty.run.id"] == chat_run.public_id and "gen_ai.input.messages" not in attributes
    assert span["resource"]["service.name"] == "jetty"
    assert span["trace"] == response.json()["trace_id"]
    call = chat_run.events.get(kind="model.call")
    assert span["start"] == nanoseconds(chat_run.started_at)
    assert span["end"] == nanoseconds(chat_run.finished_at)
    assert abs(span["end"] - nanoseconds(call.ts) - call.latency_ms * 1_000_000) < 1_000_000
    assert span["events"] == ["run.state", "run.state"]


def test_an_agent_run_goes_out_as_a_span_tree_with_its_times(alice, alice_api, otlp, settings):
    imported = import_file(alice_api, "claude-code", (SESSIONS / "claude-code-session.jsonl").read_bytes())
    run = Run.objects.get(public_id=imported.json()["created"][0])
    settings.JETTY_OTLP_ENDPOINT, settings.JETTY_OTLP_HEADERS = otlp.url, {"authorization": "Bearer collector"}
    response = alice_api.post(f"/api/v1/runs/{run.public_id}/export/otlp", {"include_content": True}, format="json")
    assert response.status_code == 200, response.content
    assert otlp.headers[0]["authorization"] == "Bearer collector"  # the configured endpoint gets its headers
    spans = otlp.spans()
    root = next(s for s in spans if s["parent"] == "")
    assert root["name"] == "invoke_agent claude-code"
    assert root["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert root["attributes"]["gen_ai.agent.name"] == "claude-code"
    assert {s["trace"] for s in spans} == {root["trace"]}
    children = [s for s in spans if s["parent"] == root["id"]]
    assert len(children) == len(spans) - 1
    events = list(run.events.order_by("seq"))
    chats = [s for s in children if s["attributes"]["gen_ai.operation.name"] == "chat"]
    tools = [s for s in children if s["attributes"]["gen_ai.operation.name"] == "execute_tool"]
    calls = [e for e in events if e.kind == "model.call"]
    assert len(chats) == len(calls) == 5 and len(tools) == 4
    assert all(s["name"] == "chat scripted/default" for s in chats)
    assert [s["attributes"]["gen_ai.usage.input_tokens"] for s in chats] == [e.prompt_tokens for e in calls]
    assert [s["start"] for s in chats] == [nanoseconds(e.ts) for e in calls]
    assert all(s["attributes"]["gen_ai.provider.name"] == "anthropic" for s in chats)
    results = {e.payload["id"]: e for e in events if e.kind == "tool.result"}
    for span in tools:
        assert span["name"] == "execute_tool Bash"
        result = results[span["attributes"]["gen_ai.tool.call.id"]]
        assert span["end"] == nanoseconds(result.ts)
        assert span["attributes"]["gen_ai.tool.call.result"] == result.payload["output"]
        assert json.loads(span["attributes"]["gen_ai.tool.call.arguments"])["command"]
    failed = [s for s in tools if s["status"] == 2]  # STATUS_CODE_ERROR
    assert len(failed) == 1 and "missing-input" in failed[0]["attributes"]["gen_ai.tool.call.arguments"]
    assert "command" in root["events"] and "agent.message" in root["events"]
    # The same run again: the same trace and span ids, so a backend keeps one copy.
    alice_api.post(f"/api/v1/runs/{run.public_id}/export/otlp", {}, format="json")
    assert sorted(s["id"] for s in otlp.spans()[len(spans) :]) == sorted(s["id"] for s in spans)


def test_otlp_export_needs_an_endpoint_and_one_that_answers(alice_api, chat_run, settings):
    url = f"/api/v1/runs/{chat_run.public_id}/export/otlp"
    settings.JETTY_OTLP_ENDPOINT, settings.JETTY_OTLP_TIMEOUT_S = "", 1.0
    assert assert_openai_error(alice_api.post(url, {}, format="json"), 400)["param"] == "endpoint"
    assert_openai_error(alice_api.post(url, {"endpoint": "ftp://127.0.0.1/x"}, format="json"), 400)
    refused = alice_api.post(url, {"endpoint": f"http://{RECEIVER_HOST}:9/v1/traces"}, format="json")
    assert assert_openai_error(refused, 502)["code"] == "otlp_export_failed"


# ATIF ----------------------------------------------------------------------------------------------------------------

ATIF = {
    "schema_version": "ATIF-v1.4",
    "session_id": "0b5f8a6e-2d1c-4c4e-9a51-7f3b2c1d9e10",
    "agent": {"name": "terminus-2", "version": "2.0.1", "model_name": "openai/gpt-5-mini", "extra": {"temp": 0.7}},
    "notes": "one bash call, then the answer",
    "final_metrics": {"total_prompt_tokens": 2200, "total_completion_tokens": 180, "total_steps": 4},
    "steps": [
        {"step_id": 1, "timestamp": "2025-10-16T14:30:00Z", "source": "system", "message": "You are a shell agent."},
        {"step_id": 2, "timestamp": "2025-10-16T14:30:01Z", "source": "user", "message": "Count the files in /data."},
        {
            "step_id": 3,
            "timestamp": "2025-10-16T14:30:03.250Z",
            "source": "agent",
            "model_name": "openai/gpt-5-mini",
            "reasoning_effort": "medium",
            "message": "I will list the directory.",
            "reasoning_content": "ls piped to wc counts entries.",
            "tool_calls": [
                {"tool_call_id": "call_1", "function_name": "bash", "arguments": {"keystrokes": "ls /data | wc -l"}}
            ],
            "observation": {"results": [{"source_call_id": "call_1", "content": "42\n"}]},
            "metrics": {
                "prompt_tokens": 1000,
                "completion_tokens": 120,
                "cached_tokens": 200,
                "cost_usd": 0.0021,
                "logprobs": [-0.1, -0.2],
                "extra": {"reasoning_tokens": 64},
            },
            "confidence": 0.9,
        },
        {
            "step_id": 4,
            "timestamp": "2025-10-16T14:30:05Z",
            "source": "agent",
            "message": "There are 42 files in /data.",
            "metrics": {"prompt_tokens": 1200, "completion_tokens": 60, "cost_usd": 0.0012},
        },
    ],
    "rl_experience": {"reward": 1.0},
}


def test_an_atif_trajectory_imports_as_a_run_and_reports_the_fields_it_does_not_know(alice, alice_api, bob_api):
    response = import_file(alice_api, "atif", json.dumps(ATIF).encode(), "trajectory.json", task="count-files")
    assert response.status_code == 201, response.content
    body = response.json()
    [run_id] = body["created"]
    run = Run.objects.get(public_id=run_id, org=alice.org)
    assert (run.task, run.kind, run.agent, run.model, run.status) == (
        "count-files", "agent", "terminus-2", "openai/gpt-5-mini", "succeeded",
    )  # fmt: skip
    assert (run.prompt_tokens, run.completion_tokens) == (2200, 180) and float(run.cost_usd) == pytest.approx(0.0033)
    events = list(run.events.order_by("seq"))
    assert [(e.kind, e.span) for e in events] == [
        ("agent.message", "step 1"),
        ("agent.message", "step 2"),
        ("model.call", "step 3"),
        ("agent.message", "step 3"),
        ("agent.message", "step 3"),
        ("tool.call", "step 3"),
        ("tool.result", "step 3"),
        ("model.call", "step 4"),
        ("agent.message", "step 4"),
    ]
    assert events[0].payload["role"] == "system" and events[1].payload["content"] == "Count the files in /data."
    call = events[2]
    assert (call.prompt_tokens, call.completion_tokens, float(call.cost_usd)) == (1000, 120, 0.0021)
    assert call.payload["metrics"] == {
        "cached_tokens": 200,
        "logprobs": [-0.1, -0.2],
        "extra": {"reasoning_tokens": 64},
    }
    assert call.payload["reasoning_effort"] == "medium" and call.payload["unmapped"] == {"confidence": 0.9}
    assert events[3].payload == {"content": "ls piped to wc counts entries.", "thinking": True}
    assert events[5].payload == {"id": "call_1", "name": "bash", "arguments": {"keystrokes": "ls /data | wc -l"}}
    assert events[6].payload == {"id": "call_1", "name": "bash", "output": "42\n", "ok": True}
    assert events[2].ts.isoformat() == "2025-10-16T14:30:03.250000+00:00"
    assert run.metadata["import"]["final_metrics"] == ATIF["final_metrics"]
    assert run.metadata["import"]["agent"]["extra"] == {"temp": 0.7}
    assert run.metadata["import"]["unmapped"] == {"rl_experience": {"reward": 1.0}}
    report = body["report"]
    assert {(u["where"], u["what"]) for u in report["unmapped"]} == {
        (".rl_experience", "unknown field"),
        ("steps[2].confidence", "unknown field"),
    }
    assert any("ok = true" in note for note in report["notes"])

    again = import_file(alice_api, "atif", json.dumps(ATIF).encode())
    assert again.status_code == 200 and again.json()["existing"] == [run_id]
    assert Run.objects.filter(org=alice.org).count() == 1
    # Exported as ATIF again, it is the document it came from, the fields the import did not know included.
    back = export(alice_api, run_id, "atif")
    assert back.status_code == 200 and json.loads(back.content) == ATIF
    # And so it is after travelling to another org as Jetty's trajectory JSON.
    moved = bob_api.post("/api/v1/runs/ingest", trajectory_of(alice_api, run_id), format="json").json()["run"]["id"]
    assert json.loads(export(bob_api, moved, "atif").content) == ATIF


def test_bad_imports_are_refused_and_write_nothing(alice, alice_api, settings):
    cases = [
        ("atif", b"not json"),
        ("atif", json.dumps({**ATIF, "schema_version": "2.0"}).encode()),
        ("atif", json.dumps({**ATIF, "steps": [{"step_id": 1, "source": "robot", "message": ""}]}).encode()),
        ("inspect", b"PK\x03\x04 not really a zip"),
        ("claude-code", b'{"type": "summary"}\n'),
        ("codex", b"\xff\xfe"),
        ("langsmith", b"{}"),
    ]
    for kind, data in cases:
        assert_openai_error(import_file(alice_api, kind, data), 400)
    assert_openai_error(alice_api.post("/api/v1/runs/import?format=atif", {}, format="multipart"), 400)
    settings.JETTY_MAX_UPLOAD_BYTES = 100_000
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("header.json", b"0" * 200_000)
    assert len(bomb.getvalue()) < 1000
    assert assert_openai_error(import_file(alice_api, "inspect", bomb.getvalue(), "x.eval"), 413)["param"] == "file"
    assert not Run.objects.filter(org=alice.org).exists()


def test_imports_go_to_the_collection_of_a_scoped_token_and_stay_out_of_sight_of_others(alice, alice_api):
    alpha = Collection.objects.create(org=alice.org, name="alpha")
    Collection.objects.create(org=alice.org, name="beta")
    scoped = {name: api_for(ApiToken.generate(alice.org, name=name, collection=Collection.objects.get(name=name))[1])
              for name in ("alpha", "beta")}  # fmt: skip
    data = json.dumps(ATIF).encode()
    first = import_file(scoped["alpha"], "atif", data, collection="beta")
    assert first.status_code == 201 and first.json()["data"][0]["collection"] == "alpha"
    assert any("'alpha', the token's" in note for note in first.json()["report"]["notes"])
    run = Run.objects.get(public_id=first.json()["created"][0])
    assert run.collection == alpha
    assert assert_openai_error(import_file(scoped["beta"], "atif", data), 409)["code"] == "conflict"
    assert_openai_error(export(scoped["beta"], run.public_id), 404)
    everything = import_file(alice_api, "atif", data)
    assert everything.status_code == 200 and everything.json()["existing"] == [run.public_id]
    assert_openai_error(import_file(alice_api, "atif", data, collection="gamma"), 404)
    assert Run.objects.filter(org=alice.org).count() == 1


# Inspect AI ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inspect_log(tmp_path_factory) -> Path:
    """A real eval log written by inspect-ai (in its own process: it sets up logging and event loops of its own)."""
    log_dir = tmp_path_factory.mktemp("inspect-logs")
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.inspect_eval", str(log_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def test_an_inspect_eval_log_imports_one_run_per_sample_with_scores_as_labels(alice, alice_api, inspect_log):
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(inspect_log))
    response = import_file(alice_api, "inspect", inspect_log.read_bytes(), inspect_log.name)
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["created"]) == len(log.samples) == 2
    for sample, run_id in zip(log.samples, body["created"], strict=True):
        run = Run.objects.get(public_id=run_id)
        assert (run.task, run.model, run.status) == ("addition", "mockllm/model", "succeeded")
        assert (
            run.metadata["import"]["sample_id"] == sample.id and run.metadata["import"]["eval_id"] == log.eval.eval_id
        )
        events = list(run.events.order_by("seq"))
        kinds = [e.kind for e in events]
        assert kinds.count("model.call") == 3  # two by the solver, one by the grader
        assert kinds.count("tool.call") == kinds.count("tool.result") == 1
        assert kinds.count("judge.verdict") == 2 and kinds.count("step.start") == kinds.count("step.end")
        assert events[kinds.index("agent.message")].payload == {"role": "user", "content": sample.input}
        tool_call = events[kinds.index("tool.call")]
        model_events = [e for e in sample.events if e.event == "model"]
        [tool_event] = [e for e in sample.events if e.event == "tool"]
        assert tool_call.payload["name"] == "add" and tool_call.payload["arguments"] == tool_event.arguments
        assert events[kinds.index("tool.result")].payload["output"] == tool_event.result
        assert events[kinds.index("model.call")].ts < tool_call.ts  # the call asked for the tool
        calls = [e for e in events if e.kind == "model.call"]
        assert [(c.model, c.prompt_tokens, c.completion_tokens) for c in calls] == [
            (m.model, m.output.usage.input_tokens, m.output.usage.output_tokens) for m in model_events
        ]
        assert run.prompt_tokens == sum(c.prompt_tokens for c in calls)
        assert calls[0].payload["request"]["tools"][0]["name"] == "add" and calls[0].span == "generate"
        labels = {label.key: label for label in run.labels.all()}
        assert set(labels) == {"score.includes", "score.model_graded_qa"}
        for scorer, score in sample.scores.items():
            assert labels[f"score.{scorer}"].value == score.value
            assert labels[f"score.{scorer}"].explanation == score.explanation
        assert (labels["score.includes"].source, labels["score.includes"].author) == ("system", "system")
        judged = labels["score.model_graded_qa"]
        assert (judged.source, judged.author, judged.judge_model) == ("judge", "judge:mockllm/grader", "mockllm/grader")
        assert "GRADE: " in judged.raw_output and judged.history.count() == 1
    values = [Run.objects.get(public_id=i).labels.get(key="score.includes").value for i in body["created"]]
    assert values == ["C", "I"]
    report = body["report"]
    assert report["unmapped"] and all(u["what"] == "state event" for u in report["unmapped"])
    assert all(u["kept"].startswith("log event ") for u in report["unmapped"])

    again = import_file(alice_api, "inspect", inspect_log.read_bytes(), inspect_log.name)
    assert again.status_code == 200 and sorted(again.json()["existing"]) == sorted(body["created"])


# Claude Code and Codex session logs ---------------------------------------------------------------------------------


def adapter_events(agent, stream: Path) -> list[tuple[str, dict[str, Any]]]:
    """What the live adapter makes of the stream the CLI printed in the same session."""
    out = []
    for line in stream.read_text().splitlines():
        out += [(e.kind, e.payload) for e in agent.events(line, 0.0)]
    return out


def tool_events(events) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, payload) for kind, payload in events if kind in ("tool.call", "command", "tool.result")]


def test_a_claude_code_session_log_imports_as_the_tool_calls_and_commands_the_adapter_saw(alice, alice_api):
    data = (SESSIONS / "claude-code-session.jsonl").read_bytes()
    response = alice_api.generic("POST", "/api/v1/runs/import?format=claude-code", data, "application/x-ndjson")
    assert response.status_code == 201, response.content
    run = Run.objects.get(public_id=response.json()["created"][0])
    assert (run.agent, run.model, run.status, run.kind) == ("claude-code", "scripted/default", "succeeded", "agent")
    events = [(e.kind, e.payload) for e in run.events.order_by("seq")]
    live = adapter_events(ClaudeCode(), SESSIONS / "claude-code-stream.jsonl")
    imported, seen = tool_events(events), tool_events(live)
    assert [k for k, _ in imported] == [k for k, _ in seen] == ["tool.call", "command", "tool.result"] * 4
    for (kind, mine), (_, theirs) in zip(imported, seen, strict=True):
        if kind == "command":  # the session log keeps the real exit code; the stream only says it failed
            assert (mine["command"], mine["output"], mine["ok"]) == (theirs["command"], theirs["output"], theirs["ok"])
        else:
            assert mine == theirs
    commands = [p for k, p in imported if k == "command"]
    assert [c["exit_code"] for c in commands] == [0, 2, 0, 0]
    assert commands[1]["command"] == "ls /app/missing-input.txt" and commands[1]["ok"] is False
    messages = [p for k, p in events if k == "agent.message"]
    assert messages[0]["role"] == "user" and "<runbook>" in messages[0]["content"]
    assert messages[-1] == {"content": "Runbook complete: ran 3 step(s) and wrote /app/results/summary.md."}
    calls = run.events.filter(kind="model.call").order_by("seq")
    assert calls.count() == 5 and run.prompt_tokens == sum(c.prompt_tokens for c in calls) > 0
    kinds = [k for k, _ in events]
    for i, kind in enumerate(kinds):
        if kind == "tool.call":
            assert "model.call" in kinds[max(0, i - 2) : i]  # each call follows the model turn that asked for it
    report = response.json()["report"]
    assert [u["what"] for u in report["unmapped"]] == [
        "attachment agent_listing_delta line",
        "attachment skill_listing line",
    ]
    for item in report["unmapped"]:
        kept = run.events.get(seq=int(item["kept"].split()[-1]))
        assert kept.kind == "log" and kept.payload["raw"]["attachment"]["type"] in item["what"]
    assert any("queue-operation" in note for note in report["notes"])


def test_a_codex_session_rollout_imports_as_the_commands_the_adapter_saw(alice, alice_api):
    response = import_file(alice_api, "codex", (SESSIONS / "codex-rollout.jsonl").read_bytes(), "rollout.jsonl")
    assert response.status_code == 201, response.content
    run = Run.objects.get(public_id=response.json()["created"][0])
    assert (run.agent, run.model, run.status) == ("codex", "scripted/default", "succeeded")
    events = [(e.kind, e.payload) for e in run.events.order_by("seq")]
    live = adapter_events(Codex(), SESSIONS / "codex-stream.jsonl")
    mine = [p for k, p in events if k == "command"]
    theirs = [p for k, p in live if k == "command"]
    assert len(mine) == len(theirs) == 4
    for a, b in zip(mine, theirs, strict=True):
        assert shlex.split(a["command"]) == shlex.split(b["command"])
        assert (a["output"], a["exit_code"], a["ok"]) == (b["output"], b["exit_code"], b["ok"])
    calls = [p for k, p in events if k == "tool.call"]
    results = [p for k, p in events if k == "tool.result"]
    assert [c["name"] for c in calls] == ["exec_command"] * 4 and [c["id"] for c in calls] == [r["id"] for r in results]
    assert calls[1]["arguments"] == {"cmd": "ls /app/missing-input.txt"} and results[1]["ok"] is False
    assert "Process exited with code 2" in results[1]["output"]
    kinds = [k for k, _ in events]
    assert kinds.count("model.call") == 5
    for i, kind in enumerate(kinds):
        if kind == "tool.call":
            assert kinds[i - 1] == "model.call"
    assert (run.prompt_tokens, run.completion_tokens) == (16299, 40)  # as the CLI's own turn.completed says
    final = [p for k, p in events if k == "agent.message"][-1]
    assert (
        final["content"]
        == run.metadata["final_answer"]
        == "Runbook complete: ran 3 step(s) and wrote /app/results/summary.md."
    )
    assert next(p for k, p in events if k == "agent.message")["role"] == "system"
    report = response.json()["report"]
    assert report["unmapped"] == [] and any("token_count" in note for note in report["notes"])


def test_credentials_are_redacted_from_every_stored_event_and_error(db):
    from orgs.models import Org
    from trajectories.actions import EventRecord, append_events, move_run
    from trajectories.models import Run

    org = Org.objects.create(name="redact")
    run = Run.objects.create(org=org, task="t", kind="agent", status="queued")
    api, sandbox = "jty_" + "A" * 43, "jrt_" + "b-_" * 15
    append_events(
        run.pk,
        [
            EventRecord(
                kind="command",
                ts=1.0,
                payload={
                    "command": "env",
                    "output": f"TOKEN={sandbox}\n",
                    "exit_code": 0,
                    "ok": True,
                    "argv": [api, "jty_short"],
                },
            )
        ],
    )
    move_run(run.pk, "running")
    move_run(run.pk, "failed", error_kind="user", error=f"bad {api}")
    stored = list(run.events.order_by("seq").values_list("payload", flat=True))
    assert stored[0]["output"] == "TOKEN=[secret:run-token]\n"
    assert stored[0]["argv"] == ["[secret:api-token]", "jty_short"]
    assert stored[-1]["error"] == "bad [secret:api-token]"
    run.refresh_from_db()
    assert run.error == "bad [secret:api-token]"


def test_a_codex_rollout_without_exit_events_takes_the_code_from_codex_s_header_only(alice, alice_api):
    """With the exit events gone, the code comes from the shell tool's own header; a command's output that imitates
    another CLI's wording ("Exit code 0") changes nothing (the outside check's finding)."""
    lines = []
    for line in (SESSIONS / "codex-rollout.jsonl").read_text().splitlines():
        data = json.loads(line)
        if (data.get("payload") or {}).get("type") == "item_completed":
            continue
        if "Process exited with code 2" in line:
            output = data["payload"]["output"]
            data["payload"]["output"] = output + "\nExit code 0 (the tool printed this)"
        lines.append(json.dumps(data))
    response = import_file(alice_api, "codex", "\n".join(lines).encode(), "rollout.jsonl")
    assert response.status_code == 201, response.content
    run = Run.objects.get(public_id=response.json()["created"][0])
    commands = [e.payload for e in run.events.filter(kind="command").order_by("seq")]
    assert [(c["exit_code"], c["ok"]) for c in commands][1] == (2, False)
