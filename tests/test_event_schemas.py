"""Every event kind has a typed payload (``trajectories.schemas``): what the real writers produce fits it, malformed
payloads are refused, and the rule for a misfit holds for each source (a platform writer raises under the tests'
strict mode and is kept as a ``log`` otherwise, an agent's output and an import become a ``log``, an ingest is a
400). ``model.call`` has one shape whichever way the gateway went (chat, translated, same-wire), and its readers
see the same conversation in every wire."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from evals.judges import compact_line
from orgs.models import public_code
from runs.agents import JettyAgent
from runs.agents.clis import ClaudeCode, Codex, GeminiCli, GenericCli
from runs.llm import complete
from runs.timeline import Timeline
from tests.test_gateway_wires import CALL, PROMPT, TURNS, fake_providers, providers, recorded_calls  # noqa: F401
from tests.test_trajectory_io import ATIF, inspect_log  # noqa: F401
from trajectories import present
from trajectories.actions import EventRecord, RunRecord, admitted, append_events, move_run, record_finished_runs
from trajectories.imports import parse_import
from trajectories.models import EventKind, Run
from trajectories.schemas import (
    SCHEMAS,
    InvalidEvent,
    ModelCall,
    model_call,
    problem,
    read_model_call,
    upgrade,
)

FIXTURES = Path(__file__).parent / "fixtures"
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def fits(events) -> None:
    """Every event fits its kind's schema as produced, none needed to be kept as a log."""
    for event in events:
        assert problem(event.kind, event.payload) is None, (event.kind, event.payload)
        assert event.payload.get("code") != "invalid_event", event.payload


def test_every_event_kind_has_a_schema():
    assert set(SCHEMAS) == set(EventKind.values)
    assert "contract.check" in EventKind.values


# What the writers produce fits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "sample"),
    [
        (ClaudeCode, "claude_tool_allowed.jsonl"),
        (ClaudeCode, "claude_partial.jsonl"),
        (Codex, "codex_tool_bypass.jsonl"),
        (Codex, "codex_text.jsonl"),
        (GeminiCli, "gemini_tool.jsonl"),
        (GeminiCli, "gemini_text.jsonl"),
    ],
)
def test_the_cli_adapters_events_fit_their_schemas(agent, sample):
    adapter = agent()
    events = [
        e for line in (FIXTURES / "cli-streams" / sample).read_text().splitlines() for e in adapter.events(line, 0)
    ]
    assert {e.kind for e in events} & {"agent.message", "command", "tool.call"}
    fits(events)


def test_jetty_agent_s_lines_fit_their_schemas_with_ok_from_the_exit_code():
    agent = JettyAgent()
    lines = [
        {"type": "message", "turn": 1, "content": "listing", "final": False},
        {"type": "tool_call", "id": "c1", "name": "shell", "arguments": {"command": "exit 3"}, "turn": 1},
        {"type": "command", "command": "exit 3", "exit_code": 3, "output": "", "duration_ms": 4},
        {"type": "tool_result", "id": "c1", "name": "shell", "output": "", "exit_code": 3},
        {"type": "file", "path": "/app/results/a.txt", "action": "write", "size": 3},
        {"type": "error", "message": "stopped after 40 turns without a final answer"},
    ]
    events = [e for line in lines for e in agent.events(json.dumps(line), 0)]
    assert [e.kind for e in events] == ["agent.message", "tool.call", "command", "tool.result", "file.change", "error"]
    fits(events)
    assert events[2].payload["ok"] is False and events[2].payload["exit_code"] == 3
    assert events[3].payload["ok"] is False


@pytest.mark.parametrize(
    ("format", "sample"),
    [("claude-code", "claude-code-session.jsonl"), ("codex", "codex-rollout.jsonl")],
)
def test_imported_session_logs_fit_their_schemas(format, sample):
    runs, _report = parse_import(format, (FIXTURES / "sessions" / sample).read_bytes())
    events = runs[0].record.events
    fits(events)
    calls = [read_model_call(e.payload) for e in events if e.kind == "model.call"]
    assert calls and {c.wire for c in calls} == {"anthropic" if format == "claude-code" else "responses"}
    assert all(c.usage is not None and c.usage.total_tokens > 0 for c in calls)


def test_an_imported_atif_trajectory_fits_and_reads_like_any_call():
    runs, _report = parse_import("atif", json.dumps(ATIF).encode())
    events = runs[0].record.events
    fits(events)
    first = read_model_call(next(e.payload for e in events if e.kind == "model.call"))
    assert first.wire == "atif" and first.request is None
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.completion_tokens) == (1000, 120)
    answer = first.answer()
    assert answer.text == "I will list the directory." and answer.thinking == "ls piped to wc counts entries."
    assert [(c.name, c.arguments) for c in answer.tool_calls] == [("bash", {"keystrokes": "ls /data | wc -l"})]


def test_an_imported_inspect_log_fits_and_its_calls_read_as_messages(inspect_log):  # noqa: F811
    runs, _report = parse_import("inspect", inspect_log.read_bytes(), filename=inspect_log.name)
    events = [e for run in runs for e in run.record.events]
    fits(events)
    calls = [read_model_call(e.payload) for e in events if e.kind == "model.call"]
    assert calls and all(c.wire == "inspect" for c in calls)
    assert any(c.answer().tool_calls and c.answer().tool_calls[0].name == "add" for c in calls)
    assert all(c.messages() and c.messages()[0].text for c in calls)
    assert {c.finish_reason for c in calls} <= {"stop", "tool_calls", "length", None}


def test_a_workflow_model_call_fits(alice):
    answer = complete(alice.org, "scripted/default", [{"role": "user", "content": "hello there"}])
    payload = answer.model_call()
    assert problem("model.call", payload) is None
    call = ModelCall.model_validate(payload)
    assert call.wire == "chat" and call.status_code == 200 and call.stream is False
    assert call.answer().text == "echo: hello there" and call.messages()[0].text == "hello there"
    assert call.usage is not None and call.usage.total_tokens == answer.prompt_tokens + answer.completion_tokens


def test_the_platform_s_own_events_fit(alice):
    run = Run.objects.create(org=alice.org, task="t", kind="agent", status="queued")
    move_run(run.pk, "running", attempt=1, worker="w1")
    move_run(run.pk, "failed", error_kind="user", error="it broke")
    contract = {
        "passed": False,
        "mode": "enforce",
        "checks": [
            {"name": "required_files", "passed": False, "message": "results/report.md is missing"},
            {"name": "checklist", "passed": True, "message": "exit 0", "output": "PASS all\n"},
        ],
    }
    append_events(run.pk, [EventRecord(kind="contract.check", ts=time.time(), payload=contract)])
    stored = list(run.events.order_by("seq"))
    assert [e.kind for e in stored] == ["run.state", "run.state", "contract.check"]
    fits(stored)


# The gateway's three ways give one shape -----------------------------------------------------------------------------

# (client wire, model): chat as it is; translated to chat and back (the provider speaks another wire); forwarded as
# sent (the provider speaks the client's wire).
GATEWAY_WAYS = [
    pytest.param("chat", "openai/fake", False, id="chat"),
    pytest.param("anthropic", "openai/fake", False, id="anthropic-translated"),
    pytest.param("anthropic", "anthropic/claude-fake", True, id="anthropic-same-wire-streamed"),
    pytest.param("responses", "anthropic/claude-fake", False, id="responses-translated"),
    pytest.param("responses", "openai/fake", False, id="responses-same-wire"),
    pytest.param("gemini", "openai/fake", True, id="gemini-translated-streamed"),
    pytest.param("gemini", "gemini/gemini-fake", False, id="gemini-same-wire"),
]
SAME_WIRE = {("anthropic", "anthropic"), ("responses", "openai"), ("gemini", "gemini")}


def conversation(call: ModelCall) -> list[tuple[str, str, list]]:
    """What the call was given, without the ids each wire makes up."""
    return [(m.role, m.text, [(c.name, c.arguments) for c in m.tool_calls]) for m in call.messages()]


@pytest.mark.parametrize(("wire", "model", "stream"), GATEWAY_WAYS)
def test_each_way_through_the_gateway_records_the_same_model_call_shape(
    jetty,
    alice,
    providers,  # noqa: F811
    wire,
    model,
    stream,
):
    TURNS[wire](jetty.url, alice.token, model, stream)
    events = recorded_calls(alice.org, 2)
    same_wire = (wire, model.split("/")[0]) in SAME_WIRE
    calls = []
    for event in events:
        assert problem("model.call", event.payload) is None
        required = {"wire", "request", "response", "usage", "finish_reason", "status_code", "stream"}
        assert required <= set(event.payload)
        call = ModelCall.model_validate(event.payload)
        assert (call.wire, call.status_code, call.stream) == (wire, 200, stream)
        assert call.usage is not None and call.usage.model_dump() == USAGE
        # A replay answers from a chat completion: every call has one, but a provider's own answer.
        assert (call.completion() is None) is same_wire
        assert ("chat_response" in event.payload) is (wire != "chat" and not same_wire)
        calls.append(call)

    asked, answered = calls
    assert [(c.name, c.arguments) for c in asked.answer().tool_calls] == [CALL]
    assert (asked.finish_reason, answered.finish_reason) == ("tool_calls", "stop")
    assert answered.answer().text == f"DONE: {PROMPT}" and not answered.answer().tool_calls
    assert conversation(asked) == [("user", PROMPT, [])]
    assert conversation(answered) == [("user", PROMPT, []), ("assistant", "", [CALL]), ("tool", "hi", [])]

    # The readers say the same in every wire: the run page and the judge's transcript.
    assert present.title(events[0]).endswith("asks for shell")
    sections = dict(present.detail(events[1]).sections)
    assert sections["request · user"] == PROMPT and sections["response"] == f"DONE: {PROMPT}"
    assert compact_line(events[0]).endswith('asked for tool shell: {"command": "echo hi"}')
    assert compact_line(events[1]).endswith(f"said: DONE: {PROMPT}")


# Malformed payloads are refused --------------------------------------------------------------------------------------

GOOD_COMMAND = {"command": "exit 3", "output": "", "exit_code": 3, "ok": False}
GOOD_CALL = model_call("chat", {"messages": []}, None, status_code=500, stream=False, error="boom")
REFUSED = [
    ("command", {**GOOD_COMMAND, "exit_code": "3"}, "exit_code"),
    ("command", {**GOOD_COMMAND, "exit_code": True}, "exit_code"),
    ("command", {k: v for k, v in GOOD_COMMAND.items() if k != "ok"}, "ok"),
    ("command", {**GOOD_COMMAND, "blocked": ["no"]}, "blocked"),
    ("command", {**GOOD_COMMAND, "command": ["ls", "-l"]}, "command"),
    ("model.call", {**GOOD_CALL, "wire": "soap"}, "wire"),
    ("model.call", {k: v for k, v in GOOD_CALL.items() if k != "wire"}, "wire"),
    ("model.call", {**GOOD_CALL, "usage": {"input_tokens": 3, "output_tokens": 1}}, "usage"),
    ("model.call", {**GOOD_CALL, "usage": {**USAGE, "prompt_tokens": -1}}, "usage.prompt_tokens"),
    ("model.call", {**GOOD_CALL, "request": "hi"}, "request"),
    ("model.call", {**GOOD_CALL, "status_code": "200"}, "status_code"),
    ("agent.message", {"content": 5}, "content"),
    ("agent.message", {}, "content"),
    ("tool.call", {"id": "c1", "arguments": {}}, "name"),
    ("tool.result", {"id": "c1", "output": "x", "ok": "yes"}, "ok"),
    ("file.change", {"path": "/app/a", "action": "created", "sha256": "not-a-digest"}, "sha256"),
    ("file.change", {"path": "/app/a", "action": "created", "size": -1}, "size"),
    ("run.state", {"status": "done"}, "status"),
    ("step.start", {"type": "litellm_chat"}, "step"),
    ("judge.verdict", {"passed": "yes"}, "passed"),
    ("contract.check", {"passed": True, "mode": "maybe", "checks": []}, "mode"),
    ("contract.check", {"passed": True, "mode": "report", "checks": [{"name": "x", "message": ""}]}, "checks.0.passed"),
    ("contract.check", {"mode": "report", "checks": []}, "passed"),
]


@pytest.mark.parametrize(("kind", "payload", "field"), REFUSED)
def test_a_malformed_payload_is_refused_naming_the_field(kind, payload, field):
    found = problem(kind, payload)
    assert found is not None and found.startswith(field), found


def test_unknown_kinds_and_payloads_that_are_not_objects_are_refused():
    assert problem("mystery", {}) == "unknown event kind 'mystery'"
    assert problem("log", ["a"]) == "the payload is not an object"


def test_extra_fields_are_kept_and_the_documented_shapes_pass():
    assert problem("command", {**GOOD_COMMAND, "blocked": "command substitution", "ok": False, "pid": 7}) is None
    assert problem("model.call", GOOD_CALL) is None
    assert problem("log", {}) is None and problem("error", {"message": None}) is None


# What happens to a misfit, by source ---------------------------------------------------------------------------------


def test_a_platform_writer_s_misfit_raises_under_strict_mode_and_writes_nothing(alice):
    run = Run.objects.create(org=alice.org, task="t", kind="agent", status="running")
    with pytest.raises(InvalidEvent, match="exit_code"):
        append_events(run.pk, [EventRecord(kind="command", ts=1.0, payload={**GOOD_COMMAND, "exit_code": "3"})])
    with pytest.raises(InvalidEvent, match="unknown event kind"):
        append_events(run.pk, [EventRecord(kind="mystery", ts=1.0, payload={})])
    legacy = EventRecord(kind="model.call", ts=1.0, payload={"response": {}})
    record = RunRecord(public_id=public_code("run"), org_id=alice.org.pk, task="t", kind="chat", status="succeeded",
                       created=1.0, events=[legacy])  # fmt: skip
    with pytest.raises(InvalidEvent, match="wire"):
        record_finished_runs([record])
    assert not run.events.exists() and not Run.objects.filter(public_id=record.public_id).exists()


def test_otherwise_a_platform_writer_s_misfit_is_kept_as_a_log_naming_it(alice, settings, caplog):
    settings.JETTY_STRICT_EVENTS = False
    run = Run.objects.create(org=alice.org, task="t", kind="agent", status="running")
    append_events(run.pk, [EventRecord(kind="command", ts=1.0, payload={**GOOD_COMMAND, "exit_code": "3"})])
    (event,) = run.events.all()
    assert event.kind == "log" and event.payload["code"] == "invalid_event"
    assert event.payload["kind"] == "command" and event.payload["payload"]["exit_code"] == "3"
    assert "exit_code" in event.payload["message"]
    assert "does not fit its schema" in caplog.text


def test_an_agent_s_output_that_does_not_fit_is_kept_as_a_log_and_never_stops_the_run(alice, tmp_path):
    run = Run.objects.create(org=alice.org, task="t", kind="agent", status="running")
    agent = GenericCli("odd-cli", {"command": ["odd"], "output": "jsonl", "kinds": {"call": "tool.call"}})
    lines = [
        json.dumps({"type": "call", "tool": "shell", "input": {"command": "ls"}}),  # its own names: upgraded
        json.dumps({"type": "call", "arguments": {"command": "ls"}}),  # no tool name at all
        json.dumps({"type": "command", "command": "ls", "exit_code": "zero"}),  # jetty-agent's kind, a bad code
    ]
    Timeline(run.pk, agent, tmp_path).follow(iter(lines[:2]))
    stored = list(run.events.order_by("seq"))
    assert [e.kind for e in stored] == ["tool.call", "log"]
    assert stored[0].payload["name"] == "shell" and stored[0].payload["arguments"] == {"command": "ls"}
    assert stored[1].payload["code"] == "invalid_event" and stored[1].payload["kind"] == "tool.call"
    assert stored[1].payload["message"].startswith("a tool.call event did not fit its schema (name: Field required")
    (kept,) = admitted(JettyAgent().events(lines[2], 0))
    assert kept.kind == "log" and kept.payload["kind"] == "command"


def test_an_import_that_does_not_fit_keeps_the_event_as_a_log_and_reports_it():
    lines = [
        {"type": "session_meta", "payload": {"id": "s1", "model_provider": "openai"}},
        {"type": "response_item", "payload": {"type": "function_call", "name": "shell", "call_id": "c1",
                                              "arguments": '{"command": ["ls"]}'}},
        {"type": "event_msg", "payload": {"type": "item_completed", "item": {
            "type": "CommandExecution", "id": "c1", "command": "ls", "exit_code": "1", "aggregated_output": "x"}}},
        {"type": "response_item", "payload": {"type": "function_call_output", "call_id": "c1", "output": "x"}},
    ]  # fmt: skip
    data = "\n".join(json.dumps(line) for line in lines).encode()
    runs, report = parse_import("codex", data)
    events = runs[0].record.events
    kept = next(e for e in events if e.payload.get("code") == "invalid_event")
    assert kept.kind == "log" and kept.payload["kind"] == "command" and kept.payload["payload"]["exit_code"] == "1"
    assert any(line["what"].startswith("exit_code") and line["where"] == "a command event" for line in report.unmapped)
    assert "tool.result" in [e.kind for e in events]


def ingest_body(events: list[dict]) -> dict:
    header = {"id": public_code("run"), "task": "t", "kind": "agent", "status": "succeeded", "created": 1.0}
    return {"format": "jetty.trajectory", "version": 1, "run": header, "events": events}


def test_an_ingested_event_that_does_not_fit_is_a_400_naming_it(alice_api):
    event = {"seq": 1, "kind": "command", "ts": 1.0, "payload": {**GOOD_COMMAND, "exit_code": "3"}}
    response = alice_api.post("/api/v1/runs/ingest", ingest_body([event]), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "events[0].payload" and "exit_code" in error["message"]
    assert not Run.objects.exists()


def test_an_export_from_before_the_schemas_ingests_in_today_s_shape(alice_api):
    old_call = {"request": {"messages": [{"role": "user", "content": "hi"}]}, "usage": {"prompt_tokens": 3,
                "completion_tokens": 2, "total_tokens": 5, "prompt_tokens_details": {"cached_tokens": 0}},
                "response": {"choices": [{"message": {"content": "hello"}}]}, "finish_reason": "stop"}  # fmt: skip
    events = [
        {"seq": 1, "kind": "model.call", "ts": 1.0, "payload": old_call},
        {"seq": 2, "kind": "command", "ts": 2.0, "payload": {"command": "ls", "exit_code": 0, "output": ""}},
        {"seq": 3, "kind": "agent.message", "ts": 3.0, "payload": {"text": "done"}},
    ]
    response = alice_api.post("/api/v1/runs/ingest", ingest_body(events), format="json")
    assert response.status_code == 201, response.content
    run = Run.objects.get(public_id=response.json()["run"]["id"])
    call, command, message = (e.payload for e in run.events.order_by("seq"))
    assert call["wire"] == "chat" and call["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert command["ok"] is True and message["content"] == "done"


# Readers of stored rows ----------------------------------------------------------------------------------------------


def test_a_model_call_stored_before_the_schemas_reads_as_today_s():
    old = {
        "request": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        "response": {"choices": [{"message": {"content": "hello", "tool_calls": [
            {"id": "t1", "function": {"name": "shell", "arguments": '{"command": "ls"}'}}]}}]},
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "completion_tokens_details": {}},
        "status_code": "200",
    }  # fmt: skip
    call = read_model_call(old)
    assert call.wire == "chat" and call.status_code is None  # what does not fit reads as absent
    assert call.usage is not None and call.usage.total_tokens == 5
    assert [(m.role, m.text) for m in call.messages()] == [("user", "hi")]
    answer = call.answer()
    assert answer.text == "hello" and [(c.name, c.arguments, c.id) for c in answer.tool_calls] == [
        ("shell", {"command": "ls"}, "t1")
    ]
    assert call.completion() == old["response"]
    assert read_model_call("not a payload").answer().empty


def test_agents_own_field_names_read_as_ours():
    assert upgrade("agent.message", {"text": "hi"}) == {"content": "hi"}
    assert upgrade("tool.call", {"tool": "Edit", "input": {"a": 1}}) == {"name": "Edit", "arguments": {"a": 1}}
    assert upgrade("tool.result", {"content": "out", "exit_code": 1}) == {"output": "out", "exit_code": 1, "ok": False}
    assert upgrade("command", {"command": "ls"}) == {"command": "ls", "output": None, "exit_code": None}
