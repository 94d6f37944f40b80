"""Every client wire against every provider family, through live Jetty to a real loopback upstream.

The clients are the official SDKs (``openai`` chat completions and responses, ``anthropic``, ``google-genai``); the
upstream is ``tests/support/fake_providers.py``, which speaks OpenAI, Anthropic and Gemini in their own formats.
``openai/*`` is forwarded directly, the other families through litellm. Each conversation is a tool call (offered a
``shell`` tool, the upstream calls it with ``{"command": "echo hi"}``) and, once the result is sent back, a text
answer (``DONE: <prompt>``, streamed in pieces), both recorded as runs.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types

from orgs.models import ProviderKey
from tests.support import servers
from trajectories.models import Run

PROMPT = "list the files"
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
DESCRIPTION = "Run a shell command"
CALL = ("shell", {"command": "echo hi"})
GEMINI = "/v1beta/models/gemini-fake"
UPSTREAM_PATHS = {  # model: where its calls reach the upstream, (whole, streamed)
    "openai/fake": ("/v1/chat/completions",) * 2,
    "hosted_vllm/fake": ("/v1/chat/completions",) * 2,
    "anthropic/claude-fake": ("/v1/messages",) * 2,
    "gemini/gemini-fake": (f"{GEMINI}:generateContent", f"{GEMINI}:streamGenerateContent?alt=sse"),
}


@pytest.fixture(scope="session")
def fake_providers(logs):
    host = servers.RECEIVER_HOST
    port = servers.free_port(host)
    log = logs / "fake-providers.log"
    args = [sys.executable, "-m", "tests.support.fake_providers", "--host", host, "--port", str(port)]
    server = servers.Process(servers.spawn(args, dict(os.environ), log), log, f"http://{host}:{port}")
    ready = lambda: urllib.request.urlopen(f"{server.url}/_requests", timeout=1).status == 200  # noqa: E731
    servers.wait_until(ready, 20, "fake providers", server.proc, log)
    yield server
    server.stop()


@pytest.fixture
def providers(alice, fake_providers):
    """Alice's org with a key for each provider family, all served by the fake upstream."""
    url = fake_providers.url
    bases = {"openai": f"{url}/v1", "hosted_vllm": f"{url}/v1", "anthropic": url, "gemini": f"{url}/v1beta"}
    for provider, api_base in bases.items():
        key = ProviderKey(org=alice.org, provider=provider, api_base=api_base)
        key.set_key(f"upstream-{provider}-key-0123456789")
        key.save()


@dataclass
class Answer:
    calls: list[tuple[str, dict]]
    text: str
    pieces: int  # text deltas seen
    usage: tuple[int, int]  # (input, output) tokens


# One function per client wire: the tool-call turn, then the text turn after sending the tool's result back.


def chat_turns(url: str, token: str, model: str, stream: bool) -> list[Answer]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
    tool = {"type": "function", "function": {"name": "shell", "description": DESCRIPTION, "parameters": SCHEMA}}
    messages: list = [{"role": "user", "content": PROMPT}]
    answers = []
    for _ in range(2):
        request = {"model": model, "messages": messages, "tools": [tool]}
        if stream:
            with client.chat.completions.stream(**request, stream_options={"include_usage": True}) as events:
                pieces = sum(event.type == "content.delta" for event in events)
                completion = events.get_final_completion()
        else:
            completion, pieces = client.chat.completions.create(**request), 1
        message = completion.choices[0].message
        calls = message.tool_calls or []
        usage = (completion.usage.prompt_tokens, completion.usage.completion_tokens)
        answers.append(
            Answer([(c.function.name, json.loads(c.function.arguments)) for c in calls], message.content, pieces, usage)
        )
        messages += [message.model_dump(exclude_none=True, include={"role", "content", "tool_calls"})]
        messages += [{"role": "tool", "tool_call_id": c.id, "content": "hi"} for c in calls]
    return answers


def responses_turns(url: str, token: str, model: str, stream: bool) -> list[Answer]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
    tool = {"type": "function", "name": "shell", "description": DESCRIPTION, "parameters": SCHEMA}
    items: list = [{"role": "user", "content": PROMPT}]
    answers = []
    for _ in range(2):
        request = {"model": model, "input": items, "tools": [tool], "metadata": METADATA}
        if stream:
            events = list(client.responses.create(**request, stream=True))
            deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
            response = next(e.response for e in events if e.type == "response.completed")
            assert "".join(deltas) == response.output_text
        else:
            response = client.responses.create(**request)
            deltas = [response.output_text]
        calls = [item for item in response.output if item.type == "function_call"]
        usage = (response.usage.input_tokens, response.usage.output_tokens)
        answers.append(Answer([(c.name, json.loads(c.arguments)) for c in calls], "".join(deltas), len(deltas), usage))
        items += [item.model_dump(exclude_none=True) for item in response.output]
        items += [{"type": "function_call_output", "call_id": c.call_id, "output": "hi"} for c in calls]
    return answers


METADATA = {"user_id": "jetty-test"}  # survives only same-wire forwarding
NATIVE = {("anthropic", "anthropic"), ("gemini", "gemini"), ("responses", "openai")}
SAFETY = types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE")


def anthropic_turns(url: str, token: str, model: str, stream: bool) -> list[Answer]:
    client = anthropic.Anthropic(base_url=url, api_key=token, max_retries=0)
    tool = {"name": "shell", "description": DESCRIPTION, "input_schema": SCHEMA}
    messages: list = [{"role": "user", "content": PROMPT}]
    answers = []
    for _ in range(2):
        request = {"model": model, "max_tokens": 256, "messages": messages, "tools": [tool], "metadata": METADATA}
        if stream:
            with client.messages.stream(**request) as events:
                deltas = list(events.text_stream)
                message = events.get_final_message()
        else:
            message = client.messages.create(**request)
            deltas = [b.text for b in message.content if b.type == "text"]
        calls = [block for block in message.content if block.type == "tool_use"]
        usage = (message.usage.input_tokens, message.usage.output_tokens)
        answers.append(Answer([(c.name, c.input) for c in calls], "".join(deltas), len(deltas), usage))
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": "hi"} for c in calls]}
        )
    return answers


def gemini_client(url: str, token: str, api_version: str = "v1beta") -> genai.Client:
    # Gemini CLI calls /v1beta; this SDK defaults to /v1. The gateway serves both.
    return genai.Client(api_key=token, http_options=types.HttpOptions(base_url=url, api_version=api_version))


def gemini_turns(url: str, token: str, model: str, stream: bool) -> list[Answer]:
    client = gemini_client(url, token)
    declaration = types.FunctionDeclaration(name="shell", description=DESCRIPTION, parameters_json_schema=SCHEMA)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[declaration])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        safety_settings=[SAFETY],
    )
    contents = [types.Content(role="user", parts=[types.Part(text=PROMPT)])]
    answers = []
    for _ in range(2):
        request = {"model": model, "contents": contents, "config": config}
        if stream:
            chunks = list(client.models.generate_content_stream(**request))
        else:
            chunks = [client.models.generate_content(**request)]
        parts = [p for chunk in chunks for p in chunk.candidates[0].content.parts or []]
        deltas = [p.text for p in parts if p.text]
        calls = [p.function_call for p in parts if p.function_call]
        usage = chunks[-1].usage_metadata
        answers.append(
            Answer(
                [(c.name, c.args) for c in calls],
                "".join(deltas),
                len(deltas),
                (usage.prompt_token_count, usage.candidates_token_count),
            )
        )
        contents.append(types.Content(role="model", parts=parts))
        responses = [types.FunctionResponse(id=c.id, name=c.name, response={"output": "hi"}) for c in calls]
        contents.append(types.Content(role="user", parts=[types.Part(function_response=r) for r in responses]))
    return answers


TURNS = {"chat": chat_turns, "responses": responses_turns, "anthropic": anthropic_turns, "gemini": gemini_turns}


def upstream_requests(fake: servers.Process) -> list[dict]:
    with urllib.request.urlopen(f"{fake.url}/_requests") as answer:
        return json.loads(answer.read())["requests"]


def recorded_calls(org, count: int) -> list:
    """The model.call events of the org's passthrough runs, once ``count`` of them are stored."""
    runs = Run.objects.filter(org=org, task="_chat").order_by("created")
    servers.wait_until(lambda: runs.count() >= count, 10, f"{count} recorded runs")
    return [run.events.get(kind="model.call") for run in runs]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", UPSTREAM_PATHS)
@pytest.mark.parametrize("wire", TURNS)
def test_a_tool_call_and_its_answer_translate_both_ways(jetty, alice, providers, fake_providers, wire, model, stream):
    called, answered = TURNS[wire](jetty.url, alice.token, model, stream)
    seen = upstream_requests(fake_providers)[-2:]
    # A provider that speaks the client's own wire gets the request as sent: fields no translation keeps arrive.
    native = (wire, model.split("/")[0]) in NATIVE
    path = "/v1/responses" if native and wire == "responses" else UPSTREAM_PATHS[model][stream]
    assert [r["path"] for r in seen] == [path] * 2
    if wire == "responses":
        assert (seen[0]["body"].get("metadata") == METADATA) is native
    if wire == "anthropic":
        assert (seen[0]["body"].get("metadata") == METADATA) is native
    if wire == "gemini":
        assert ("safetySettings" in seen[0]["body"]) is native
    assert '"hi"' not in json.dumps(seen[0]["body"]) and '"hi"' in json.dumps(seen[1]["body"])  # the tool's result

    assert called.calls == [CALL]
    assert called.usage == (11, 7)
    assert answered.calls == []
    assert answered.text == f"DONE: {PROMPT}"
    assert answered.pieces >= (3 if stream else 1)
    assert answered.usage == (11, 7)

    events = recorded_calls(alice.org, 2)
    assert len(events) == 2
    for event in events:
        assert event.payload["wire"] == wire
        assert event.payload["stream"] is stream and event.payload["status_code"] == 200
        assert (event.model, event.prompt_tokens, event.completion_tokens) == (model, 11, 7)
    assert events[0].payload["finish_reason"] == "tool_calls"
    assert events[1].payload["finish_reason"] == "stop"


def test_count_tokens_anthropic(jetty, alice, providers):
    client = anthropic.Anthropic(base_url=jetty.url, api_key=alice.token, max_retries=0)
    counted = client.messages.count_tokens(
        model="anthropic/claude-fake",
        messages=[{"role": "user", "content": PROMPT}],
        tools=[{"name": "shell", "description": DESCRIPTION, "input_schema": SCHEMA}],
    )
    assert counted.input_tokens > 0


def test_model_lists_come_in_each_client_s_shape(jetty, alice):
    claude = anthropic.Anthropic(base_url=jetty.url, api_key=alice.token, max_retries=0)
    assert "scripted/default" in [m.id for m in claude.models.list()]
    gemini = gemini_client(jetty.url, alice.token)
    assert "models/scripted/default" in [m.name for m in gemini.models.list()]


def test_the_gemini_sdk_s_default_api_version_is_served_too(jetty, alice):
    client = gemini_client(jetty.url, alice.token, api_version="v1")
    answer = client.models.generate_content(model="scripted/default", contents="hello there")
    assert answer.text == "echo: hello there"


def test_count_tokens_gemini(jetty, alice, providers):
    client = gemini_client(jetty.url, alice.token)
    counted = client.models.count_tokens(model="gemini/gemini-fake", contents=PROMPT)
    assert counted.total_tokens > 0


ERRORS = {
    # wire: (path, headers for a token, body); Gemini's token goes in the query here, as its SDK's does in a header
    "anthropic": (
        "/v1/messages",
        lambda token: {"x-api-key": token},
        {"max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "responses": ("/v1/responses", lambda token: {"authorization": f"Bearer {token}"}, {"input": PROMPT}),
    "gemini": (
        "/v1beta/models/{model}:generateContent?key={token}",
        lambda token: {},
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    ),
}


def error_shape(wire: str, status: int, body: dict) -> str:
    """What identifies the error in the wire's own shape."""
    if wire == "anthropic":
        assert set(body) == {"type", "error"} and body["type"] == "error" and body["error"]["message"]
        return body["error"]["type"]
    error = body["error"]
    assert error["message"]
    if wire == "responses":
        assert {"message", "type", "param", "code"} <= set(error)
    if wire == "gemini":
        assert set(error) == {"code", "message", "status"} and error["code"] == status
        return error["status"]
    return error["code"]


@pytest.mark.parametrize(
    "wire, problem, status, kind",
    [
        ("anthropic", "model", 404, "not_found_error"),
        ("anthropic", "token", 401, "authentication_error"),
        ("responses", "model", 404, "model_not_found"),
        ("responses", "token", 401, "invalid_api_key"),
        ("gemini", "model", 404, "NOT_FOUND"),
        ("gemini", "token", 401, "UNAUTHENTICATED"),
    ],
)
def test_errors_come_in_the_wire_s_own_shape(jetty, alice, providers, wire, problem, status, kind):
    path, auth, body = ERRORS[wire]
    model = "no-such-model-anywhere" if problem == "model" else "anthropic/claude-fake"
    token = alice.token if problem == "model" else "sk-wrong-token"
    if wire != "gemini":  # Gemini names the model in the path
        body = {**body, "model": model}
    url = jetty.url + path.format(model=model, token=token)
    answer = httpx.post(url, headers=auth(token), json=body, timeout=30)
    assert answer.status_code == status
    assert error_shape(wire, status, answer.json()) == kind
