"""The three real agent CLIs (Claude Code, Codex, Gemini CLI) doing runs end to end against the scripted model,
in both sandbox backends, through the recording model gateway; plus a generic CLI and CLIs that go wrong."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from runs.agents import agent_for
from trajectories.models import Run

from .test_agent_runs import RUNBOOK, assert_clean_trajectory, final_run, start_async

WIRES = {"claude-code": "anthropic", "codex": "responses", "gemini-cli": "gemini"}
TOOLS = {"claude-code": "Bash", "codex": "exec_command", "gemini-cli": "run_shell_command"}


def describe(run_id: str) -> str:
    """A failed run's error and trajectory, for the assertion message."""
    run = Run.objects.get(public_id=run_id)
    lines = [f"{run.status}: {run.error}"]
    lines += [f"{e.seq} {e.kind} {json.dumps(e.payload)[:400]}" for e in run.events.order_by("seq")]
    return "\n".join(lines)


def run_cli(client, agent: str, network: str, runbook: str = RUNBOOK, **jetty):
    raw = client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": runbook}, {"role": "user", "content": "Do the runbook."}],
        extra_body={
            "jetty": {
                "runbook": True,
                "task": "greet",
                "agent": agent,
                "network": network,
                "template_variables": {"name": "ada"},
                **jetty,
            }
        },
        timeout=240,
    )
    return raw.parse(), json.loads(raw.http_response.text)["jetty"]


@pytest.mark.parametrize("agent", sorted(WIRES))
def test_each_cli_does_the_runbook_in_each_backend(agent, alice_client, each_backend_worker):
    network = "off" if each_backend_worker.backend == "bubblewrap" else "on"
    completion, summary = run_cli(alice_client, agent, network)
    run_id = summary["run_id"]
    assert summary["status"] == "succeeded", describe(run_id)
    assert summary["agent"] == agent and summary["agent_version"] == agent_for(agent, "").version
    files = {f["path"] for f in summary["results_files"]}
    assert {"greeting.txt", "count.txt", "summary.md", "validation_report.json"} <= files, describe(run_id)
    assert summary["validation"]["overall_passed"] is True
    assert completion.choices[0].message.content

    run = Run.objects.get(public_id=summary["run_id"])
    assert run.artifacts.get(path="count.txt").file.read() == b"4\n"
    assert run.artifacts.get(path="greeting.txt").file.read() == b"hello ada from jetty\n"
    assert run.metadata["agent_version"] == agent_for(agent, "").version != ""
    assert_clean_trajectory(run)
    events = list(run.events.order_by("seq"))

    # Every model call as the gateway saw it, in the CLI's own wire format, with tokens.
    calls = [e for e in events if e.kind == "model.call"]
    assert len(calls) >= 5  # three blocks, the summary, the final answer
    assert {c.payload["wire"] for c in calls} == {WIRES[agent]}
    assert all(c.payload["status_code"] == 200 and c.prompt_tokens > 0 for c in calls)
    assert all(c.model == "scripted/default" and c.provider == "scripted" for c in calls)
    assert sum(c.prompt_tokens for c in calls) == run.prompt_tokens
    assert run.metadata["usage_agrees"] is True, run.metadata

    # The CLI's own events, parsed from its stream: tool calls, commands with output, results.
    tool_calls = [e for e in events if e.kind == "tool.call"]
    assert [e.payload["name"] for e in tool_calls] == [TOOLS[agent]] * 4
    commands = [e for e in events if e.kind == "command"]
    assert len(commands) == 4
    assert 'echo "hello ada from jetty"' in commands[0].payload["command"]
    assert "4" in str(commands[1].payload["output"]) and commands[1].payload["ok"] is True
    assert sum(e.kind == "tool.result" for e in events) == 4
    changed = {e.payload["path"] for e in events if e.kind == "file.change"}
    assert {"/app/results/greeting.txt", "/app/results/count.txt", "/app/results/summary.md"} <= changed
    # Interleaved as they happened: each tool call comes after the model call that asked for it.
    first_call = events.index(calls[0])
    assert all(events.index(e) > first_call for e in tool_calls)
    order = [e.kind for e in events if e.kind in ("model.call", "tool.call")]
    assert order[:4] == ["model.call", "tool.call", "model.call", "tool.call"]


def test_a_cli_run_streams_its_events_as_they_happen(alice_client, worker):
    stream = alice_client.chat.completions.create(
        model="scripted/default",
        messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
        extra_body={
            "jetty": {"runbook": True, "agent": "codex", "network": "off", "template_variables": {"name": "bo"}}
        },
        stream=True,
        timeout=240,
    )
    chunks = list(stream)
    kinds = [c.model_extra["jetty"]["event"] for c in chunks]
    assert {"model.call", "tool.call", "command", "tool.result"} <= set(kinds) and kinds[-1] == "summary"
    assert kinds.index("model.call") < kinds.index("tool.call") < kinds.index("command")
    assert chunks[-1].model_extra["jetty"]["status"] == "succeeded"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_real_cli_killed_mid_run_fails_with_a_user_error(alice_client, worker):
    runbook = "# Crash\n```bash\nkill -9 $PPID\n```\n"
    _completion, summary = run_cli(alice_client, "claude-code", "off", runbook=runbook, template_variables={})
    assert summary["status"] == "failed"
    run = Run.objects.get(public_id=summary["run_id"])
    assert run.error_kind == "user" and "exited with code" in run.error, run.error
    assert_clean_trajectory(run)


@pytest.mark.parametrize(
    ("agent", "timeout_s", "status", "error"),
    [
        ("crash-cli", 60, "failed", "the agent exited with code 139"),
        ("silent-cli", 60, "failed", "silent-cli exited without a `result` line"),
        ("hang-cli", 3, "timed_out", "wall time limit of 3 s exceeded"),
    ],
)
def test_a_cli_that_crashes_hangs_or_never_reports_ends_with_a_clear_error(
    agent, timeout_s, status, error, alice_client, jetty, worker
):
    run = final_run(
        start_async(alice_client, runbook=RUNBOOK, agent=agent, timeout_s=timeout_s, template_variables={"name": "x"}),
        60,
    )
    assert run.status == status and run.error_kind == "user"
    assert error in run.error
    assert_clean_trajectory(run)
    if agent == "crash-cli":
        assert "fatal: the CLI fell over" in run.error
        logs = [e.payload for e in run.events.filter(kind="log")]
        assert {"stream": "stdout", "line": "working"} in logs
        assert any("fatal: the CLI fell over" in p.get("tail", "") for p in logs)


def test_a_generic_cli_runs_through_the_generic_adapter(alice_client, jetty, worker):
    # echo-cli answers and writes its own files, not the runbook's: its contract is broken, reported (not enforced).
    run_id = start_async(
        alice_client, runbook=RUNBOOK, agent="echo-cli", template_variables={"name": "x"}, contract="report"
    )
    run = final_run(run_id, 60)
    assert run.status == "succeeded", run.error
    assert run.contract["passed"] is False and "count.txt is missing" in run.contract["checks"][0]["message"]
    assert run.metadata["agent_version"] == "1.0"
    assert run.artifacts.get(path="answer.txt").file.read() == b"echo: hi\n"
    assert run.artifacts.get(path="prompt_has_runbook.txt").file.read() == b"True"
    kinds = list(run.events.order_by("seq").values_list("kind", flat=True))
    assert kinds.index("model.call") < kinds.index("agent.message")
    assert run.job.final_answer == "wrote answer.txt"


WIRE_CALLS = {
    "anthropic": (
        "/v1/messages",
        "x-api-key",
        {"model": "x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "responses": ("/v1/responses", "authorization", {"model": "x", "input": "hi"}),
    "gemini": ("/v1beta/models/x:generateContent", "x-goog-api-key", {"contents": [{"parts": [{"text": "hi"}]}]}),
}


def test_the_gateway_refuses_missing_unknown_and_dead_run_tokens_in_every_wire(alice_client, jetty, worker):
    leak = "```bash\necho -n $JETTY_RUN_TOKEN > /app/results/token.txt\n```\n"
    run = final_run(start_async(alice_client, runbook=leak, template_variables={}))
    dead = run.artifacts.get(path="token.txt").file.read().decode()
    assert dead.startswith("jrt_")
    for wire, (path, header, body) in WIRE_CALLS.items():
        for token in (None, "jrt_" + "0" * 40, dead):
            headers = {"content-type": "application/json"}
            if token is not None:
                headers[header] = f"Bearer {token}" if header == "authorization" else token
            request = urllib.request.Request(f"{jetty.url}{path}", json.dumps(body).encode(), headers)
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request)
            assert caught.value.code == 401, (wire, token)
            error = json.loads(caught.value.read())
            assert {"anthropic": "type", "responses": "error", "gemini": "error"}[wire] in error
            if wire == "anthropic":
                assert error["error"]["type"] == "authentication_error"
            if wire == "gemini":
                assert error["error"]["status"] == "UNAUTHENTICATED"
