"""The offline `scripted` provider, called through litellm like any other provider."""

from __future__ import annotations

import json

import litellm
import pytest

from runs.gateway import scripted

TOOL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
            "required": ["command", "timeout"],
        },
    },
}


@pytest.fixture(autouse=True)
def registered():
    scripted.register()


def ask(**kwargs):
    return litellm.completion(model="scripted/default", **kwargs)


def test_it_is_registered_through_litellms_custom_provider_map():
    assert any(item["provider"] == "scripted" for item in litellm.custom_provider_map)
    assert litellm.get_llm_provider("scripted/anything")[1] == "scripted"


def test_it_echoes_deterministically():
    first = ask(messages=[{"role": "user", "content": "same input"}])
    second = ask(messages=[{"role": "user", "content": "same input"}])
    assert first.choices[0].message.content == second.choices[0].message.content == "echo: same input"
    assert first.usage.prompt_tokens == 2 and first.usage.completion_tokens == 3


def test_it_calls_the_offered_tool_with_schema_filled_arguments():
    response = ask(messages=[{"role": "user", "content": "ls -la"}], tools=[TOOL])
    call = response.choices[0].message.tool_calls[0]
    assert call.function.name == "run_shell"
    assert json.loads(call.function.arguments) == {"command": "ls -la", "timeout": 1}
    assert response.choices[0].finish_reason == "tool_calls"


def test_it_answers_with_text_after_a_tool_result():
    call = ask(messages=[{"role": "user", "content": "ls"}], tools=[TOOL]).choices[0].message.tool_calls[0]
    messages = [
        {"role": "user", "content": "ls"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "README.md"},
    ]
    reply = ask(messages=messages, tools=[TOOL]).choices[0].message
    assert reply.tool_calls is None and reply.content == "The tool returned: README.md"


def test_tool_choice_none_gives_text():
    reply = ask(messages=[{"role": "user", "content": "x"}], tools=[TOOL], tool_choice="none")
    assert reply.choices[0].message.content == "echo: x"


def test_it_fills_a_json_schema_response_format():
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}},
        "required": ["name", "ok"],
    }
    reply = ask(
        messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert json.loads(reply.choices[0].message.content) == {"name": "echo: x", "ok": True}


def test_it_streams_the_same_text_it_would_return():
    chunks = list(ask(messages=[{"role": "user", "content": "one two three"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_alt_answers_differently_from_default():
    reply = litellm.completion(model="scripted/alt", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "alt says: x"


RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Count things.

## Step 1
```bash
echo one > /app/results/one.txt
```

## Step 2
```bash
wc -c /app/results/one.txt
```
"""
SHELL = {
    "type": "function",
    "function": {
        "name": "shell",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
}


def test_the_runbook_policy_runs_each_bash_block_then_writes_the_summary():
    messages = [{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}]
    commands = []
    for _ in range(5):
        reply = ask(messages=messages, tools=[SHELL]).choices[0].message
        if not reply.tool_calls:
            break
        call = reply.tool_calls[0]
        commands.append(json.loads(call.function.arguments)["command"])
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "ok"},
        ]
    assert commands[:2] == ["echo one > /app/results/one.txt", "wc -c /app/results/one.txt"]
    assert "summary.md" in commands[2] and len(commands) == 3
    assert reply.content.startswith("Runbook complete: ran 2 step(s)")


def test_the_runbook_policy_speaks_to_array_shaped_shell_tools():
    codex_like = {
        "type": "function",
        "function": {
            "name": "shell",
            "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}},
        },
    }
    reply = (
        ask(messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}], tools=[codex_like])
        .choices[0]
        .message
    )
    assert json.loads(reply.tool_calls[0].function.arguments)["command"] == [
        "bash",
        "-lc",
        "echo one > /app/results/one.txt",
    ]
