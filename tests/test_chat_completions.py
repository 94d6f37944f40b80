"""The official `openai` client against live Jetty, through each path a model can take.

`scripted/default` is litellm's custom provider; `openai/fake` is forwarded directly to a real OpenAI-compatible
server on loopback; `hosted_vllm/fake` goes through litellm.acompletion to that same server.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import wait_for_run

MODELS = ["scripted/default", "openai/fake", "hosted_vllm/fake"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def upstream_requests(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/_requests") as response:
        return json.loads(response.read())["requests"]


@pytest.mark.parametrize("model", MODELS)
def test_it_answers_a_plain_completion(alice_client, upstream, model):
    raw = alice_client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello jetty"}]
    )
    completion = raw.parse()
    assert completion.choices[0].finish_reason == "stop"
    assert "hello jetty" in completion.choices[0].message.content
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-jetty-run-id"].startswith("run_")


@pytest.mark.parametrize("model", MODELS)
def test_it_streams_chunks_and_usage_when_asked(alice_client, upstream, model):
    stream = alice_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len([c for c in chunks if c.choices]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


@pytest.mark.parametrize("model", MODELS)
def test_it_hides_usage_chunk_unless_asked(alice_client, upstream, model):
    chunks = list(
        alice_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "no usage"}], stream=True
        )
    )
    assert chunks and all(c.usage is None for c in chunks)


@pytest.mark.parametrize("model", MODELS)
def test_it_passes_tools_and_tool_choice(alice_client, upstream, model):
    completion = alice_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Paris"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)


@pytest.mark.parametrize("model", MODELS)
def test_it_streams_tool_calls(alice_client, upstream, model):
    chunks = list(
        alice_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Paris"}], tools=[WEATHER], stream=True
        )
    )
    names = [
        tc.function.name
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function and tc.function.name
    ]
    assert names == ["get_weather"]


@pytest.mark.parametrize("model", MODELS)
def test_it_returns_json_for_response_format(alice_client, upstream, model):
    completion = alice_client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "as json"}], response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_scripted_honours_stop_n_and_seed(alice_client):
    completion = alice_client.chat.completions.create(
        model="scripted/default",
        messages=[{"role": "user", "content": "alpha beta gamma"}],
        stop=["gamma"],
        n=3,
        seed=7,
    )
    assert len(completion.choices) == 3
    assert all(c.message.content == "echo: alpha beta " for c in completion.choices)
    again = alice_client.chat.completions.create(
        model="scripted/default",
        messages=[{"role": "user", "content": "alpha beta gamma"}],
        stop=["gamma"],
        n=3,
        seed=7,
    )
    assert [c.message.content for c in again.choices] == [c.message.content for c in completion.choices]


@pytest.mark.parametrize("model", ["openai/fake", "hosted_vllm/fake"])
def test_it_forwards_every_parameter_upstream(alice_client, upstream, model):
    alice_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "params"}],
        stop=["zzz"],
        n=2,
        seed=42,
        temperature=0.3,
        tools=[WEATHER],
        tool_choice="auto",
        response_format={"type": "json_object"},
        max_tokens=50,
    )
    seen = upstream_requests(upstream)[-1]
    assert seen["model"] == "fake"
    assert seen["seed"] == 42 and seen["n"] == 2 and seen["temperature"] == 0.3
    assert seen["stop"] == ["zzz"] and seen["tool_choice"] == "auto"
    assert seen["tools"][0]["function"]["name"] == "get_weather"
    assert seen["response_format"] == {"type": "json_object"}
    assert "jetty" not in seen


def test_the_provider_key_reaches_the_upstream_not_the_jetty_token(alice, alice_client, upstream):
    alice_client.chat.completions.create(
        model="openai/fake", messages=[{"role": "user", "content": "who am i"}], extra_body={"jetty": {"task": "keys"}}
    )
    seen = upstream_requests(upstream)[-1]
    assert seen["messages"][0]["content"] == "who am i"
    assert alice.token not in json.dumps(seen)


def test_jetty_task_names_the_run(alice_client):
    raw = alice_client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "user", "content": "named"}],
        extra_body={"jetty": {"task": "summarise-tickets"}},
    )
    run = wait_for_run(raw.headers["x-jetty-run-id"])
    assert run.task == "summarise-tickets"
