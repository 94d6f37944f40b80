"""The wire translators: Anthropic Messages, OpenAI Responses and Gemini requests, responses and streams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orgs.api_errors import ApiError
from runs.gateway.wires import WIRES, Wire

anthropic, responses, gemini = WIRES["anthropic"], WIRES["responses"], WIRES["gemini"]

Event = tuple[str | None, dict[str, Any]]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def sse(raw: bytes) -> list[Event]:
    """Server-sent events as (event name or None, data) pairs."""
    events: list[Event] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
        assert data is not None, block
        events.append((name, data))
    return events


def chunk(finish_reason: str | None = None, **delta: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up", "choices": [choice]}


def piece(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk(tool_calls=[call])


def usage_chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [],
        "usage": USAGE,
    }


TEXT = [
    chunk(role="assistant", content=""),
    chunk(content="Hel"),
    chunk(content="lo, wor"),
    chunk(content="ld"),
    chunk("stop"),
    usage_chunk(),
]
TOOL = [
    chunk(role="assistant"),
    piece(0, "", "call_a", "Bash"),
    piece(0, '{"comm'),
    piece(0, 'and": "l'),
    piece(0, 's -la"}'),
    chunk("tool_calls"),
    usage_chunk(),
]
TEXT_THEN_TOOL = [
    chunk(content="Let me "),
    chunk(content="look."),
    piece(0, '{"command": "pwd"}', "call_b", "Bash"),
    chunk("tool_calls"),
    usage_chunk(),
]
TWO_TOOLS = [
    piece(0, "", "call_1", "Read"),
    piece(0, '{"path": '),
    piece(0, '"a.txt"}'),
    piece(1, "", "call_2", "Read"),
    piece(1, '{"path": "b.txt"}'),
    chunk("tool_calls"),
    usage_chunk(),
]


def stream(wire: Wire, chunks: list[dict[str, Any]]) -> tuple[list[Event], list[Event]]:
    """The events each chunk gave, and those finish() gave."""
    encoder = wire.encoder("gw-model")
    fed = [event for c in chunks for event in sse(encoder.feed(c))]
    return fed, sse(encoder.finish())


def names(events: list[Event]) -> list[str | None]:
    return [name for name, _ in events]


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion(
    content: str | None = None, tool_calls: list[dict[str, Any]] | None = None, finish_reason: str = "stop"
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": USAGE,
    }


def rejects(wire: Wire, body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        wire.to_chat(body, "gw-model")
    assert caught.value.status == 400
    assert caught.value.param == param
    assert caught.value.message


# Anthropic Messages ------------------------------------------------------------------------------------------------


def test_anthropic_request_text_system_and_parameters():
    body = {
        "model": "claude-opus-4-8",
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "x"},
                    {"type": "text", "text": "Hello"},
                ],
            },
            {"role": "user", "content": [{"type": "text", "text": "TOOLTEST"}]},
            {"role": "system", "content": "Reminder: stay on task."},
        ],
        "max_tokens": 64000,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []},
        "output_config": {"effort": "high"},
    }
    assert anthropic.to_chat(body, "gw-model") == {
        "model": "gw-model",
        "messages": [
            {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "TOOLTEST"},
            {"role": "system", "content": "Reminder: stay on task."},
        ],
        "max_tokens": 64000,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "stream": True,
    }


def test_anthropic_request_images_become_data_urls():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                ],
            }
        ]
    }
    assert anthropic.to_chat(body, "m")["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


def test_anthropic_request_tool_use_and_results():
    body = {
        "messages": [
            {"role": "user", "content": "TOOLTEST write the file"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Running it."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {"path": "a.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and now?"},
                    {"tool_use_id": "toolu_1", "type": "tool_result", "content": "hello-from-tool", "is_error": False},
                    {
                        "tool_use_id": "toolu_2",
                        "type": "tool_result",
                        "content": [
                            {"type": "text", "text": "an image"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                        ],
                    },
                ],
            },
        ]
    }
    assert anthropic.to_chat(body, "m")["messages"] == [
        {"role": "user", "content": "TOOLTEST write the file"},
        {
            "role": "assistant",
            "content": "Running it.",
            "tool_calls": [
                tool_call("toolu_1", "Bash", '{"command": "ls"}'),
                tool_call("toolu_2", "Read", '{"path": "a.png"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "hello-from-tool"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "an image"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]


def test_anthropic_request_tool_results_alone_give_only_tool_messages():
    body = {
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "denied", "is_error": True}],
            },
        ]
    }
    assert anthropic.to_chat(body, "m")["messages"] == [
        {"role": "assistant", "content": None, "tool_calls": [tool_call("toolu_1", "Bash", "{}")]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "denied"},
    ]


ANTHROPIC_TOOLS = [
    {
        "name": "Bash",
        "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    {"type": "custom", "name": "Noop", "input_schema": {"type": "object"}},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
    ],
)
def test_anthropic_request_tools_and_tool_choice(choice, expected):
    chat = anthropic.to_chat(
        {"messages": [{"role": "user", "content": "x"}], "tools": ANTHROPIC_TOOLS, "tool_choice": choice}, "m"
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Bash",
                "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
                "description": "Run a command",
            },
        },
        {"type": "function", "function": {"name": "Noop", "parameters": {"type": "object"}}},
    ]
    assert chat["tool_choice"] == expected
    assert "parallel_tool_calls" not in chat


def test_anthropic_request_parallel_tool_use_and_no_tools():
    chat = anthropic.to_chat(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": ANTHROPIC_TOOLS,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
        "m",
    )
    assert chat["parallel_tool_calls"] is False
    only_server = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": ANTHROPIC_TOOLS[1:2],
        "tool_choice": {"type": "any"},
    }
    chat = anthropic.to_chat(only_server, "m")
    assert "tools" not in chat and "tool_choice" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}]},
            "messages[0].content[0].name",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"input_schema": {}}]}, "tools[0].name"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": ANTHROPIC_TOOLS, "tool_choice": {"type": "some"}},
            "tool_choice.type",
        ),
    ],
)
def test_anthropic_request_malformed(body, param):
    rejects(anthropic, body, param)


def test_anthropic_response_text():
    answer = anthropic.from_chat(completion("DONE"), "claude-opus-4-8")
    assert answer["id"].startswith("msg_")
    assert {k: v for k, v in answer.items() if k != "id"} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-8",
        "content": [{"type": "text", "text": "DONE"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 11,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def test_anthropic_response_tool_calls():
    calls = [tool_call("call_x", "Bash", '{"command": "ls"}'), tool_call("toolu_y", "Read", "")]
    answer = anthropic.from_chat(completion("Looking.", calls, "tool_calls"), "m")
    assert answer["content"] == [
        {"type": "text", "text": "Looking."},
        {"type": "tool_use", "id": "toolu_call_x", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "toolu_y", "name": "Read", "input": {}},
    ]
    assert answer["stop_reason"] == "tool_use"


def test_anthropic_response_length_and_missing_usage():
    answer = anthropic.from_chat(
        {**completion("cut sho"), "usage": None}
        | {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut sho"}, "finish_reason": "length"}]
        },
        "m",
    )
    assert answer["stop_reason"] == "max_tokens"
    assert answer["usage"]["input_tokens"] == 0 and answer["usage"]["output_tokens"] == 0


ANTHROPIC_END = ["message_delta", "message_stop"]


def test_anthropic_stream_text():
    fed, end = stream(anthropic, TEXT)
    assert names(fed) == ["message_start", "content_block_start"] + ["content_block_delta"] * 3
    assert names(end) == ["content_block_stop", *ANTHROPIC_END]
    start = fed[0][1]["message"]
    assert start["content"] == [] and start["model"] == "gw-model" and start["role"] == "assistant"
    assert fed[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert "".join(data["delta"]["text"] for _, data in fed[2:]) == "Hello, world"
    assert all(data["delta"]["type"] == "text_delta" and data["index"] == 0 for _, data in fed[2:])
    assert end[1][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }
    assert end[2][1] == {"type": "message_stop"}
    assert all(name == data["type"] for name, data in fed + end)


def test_anthropic_stream_tool_call_in_pieces():
    fed, end = stream(anthropic, TOOL)
    assert names(fed) == ["message_start", "content_block_start"] + ["content_block_delta"] * 3
    assert fed[1][1]["content_block"] == {"type": "tool_use", "id": "toolu_call_a", "name": "Bash", "input": {}}
    assert "".join(data["delta"]["partial_json"] for _, data in fed[2:]) == '{"command": "ls -la"}'
    assert names(end) == ["content_block_stop", *ANTHROPIC_END]
    assert end[1][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_stream_text_then_tool():
    fed, end = stream(anthropic, TEXT_THEN_TOOL)
    assert names(fed) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
    ]
    assert [data.get("index") for _, data in fed[1:]] == [0, 0, 0, 0, 1, 1]
    assert fed[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"command": "pwd"}'}
    assert names(end) == ["content_block_stop", *ANTHROPIC_END]
    assert end[0][1]["index"] == 1


def test_anthropic_stream_two_tool_calls_are_two_blocks():
    fed, end = stream(anthropic, TWO_TOOLS)
    starts = [data for name, data in fed if name == "content_block_start"]
    assert [(s["index"], s["content_block"]["id"]) for s in starts] == [(0, "toolu_call_1"), (1, "toolu_call_2")]
    json_by_block: dict[int, str] = {}
    for name, data in fed:
        if name == "content_block_delta":
            json_by_block[data["index"]] = json_by_block.get(data["index"], "") + data["delta"]["partial_json"]
    assert json_by_block == {0: '{"path": "a.txt"}', 1: '{"path": "b.txt"}'}
    assert [data["index"] for name, data in fed if name == "content_block_stop"] == [0]
    assert names(end) == ["content_block_stop", *ANTHROPIC_END]


def test_anthropic_stream_calls_told_apart_by_id_only():
    chunks = [piece(0, "{}", "call_1", "Read"), piece(0, "{}", "call_2", "Read"), chunk("tool_calls")]
    fed, _ = stream(anthropic, chunks)
    assert [data["content_block"]["id"] for name, data in fed if name == "content_block_start"] == [
        "toolu_call_1",
        "toolu_call_2",
    ]


def test_anthropic_stream_reasoning_is_a_thinking_block():
    fed, end = stream(
        anthropic,
        [chunk(reasoning_content="Think"), chunk(reasoning_content="ing"), chunk(content="Done"), chunk("stop")],
    )
    assert fed[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [data["delta"] for name, data in fed if name == "content_block_delta"] == [
        {"type": "thinking_delta", "thinking": "Think"},
        {"type": "thinking_delta", "thinking": "ing"},
        {"type": "text_delta", "text": "Done"},
    ]
    assert names(end) == ["content_block_stop", *ANTHROPIC_END]


def test_anthropic_stream_with_nothing_fed_is_still_a_whole_message():
    assert names(sse(anthropic.encoder("m").finish())) == ["message_start", *ANTHROPIC_END]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
    ],
)
def test_anthropic_error_body(status, kind):
    assert anthropic.error_body(ApiError(status, "nope")) == {
        "type": "error",
        "error": {"type": kind, "message": "nope"},
    }


# OpenAI Responses --------------------------------------------------------------------------------------------------


def test_responses_request_string_input_and_parameters():
    body = {
        "model": "gpt-5.5",
        "instructions": "You are Codex.",
        "input": "say hi",
        "max_output_tokens": 500,
        "temperature": 0.5,
        "top_p": 1,
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "prompt_cache_key": "k",
        "client_metadata": {"a": "b"},
        "metadata": {},
    }
    assert responses.to_chat(body, "gw-model") == {
        "model": "gw-model",
        "messages": [{"role": "system", "content": "You are Codex."}, {"role": "user", "content": "say hi"}],
        "max_tokens": 500,
        "temperature": 0.5,
        "top_p": 1,
        "stream": True,
    }


def test_responses_request_items():
    body = {
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Sandbox rules."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "TOOLTEST look at this"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "On it."}]},
            {"type": "function_call", "call_id": "call_1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
            {"type": "function_call", "call_id": "call_2", "name": "exec_command", "arguments": '{"cmd": "pwd"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\n"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "/app"}]},
            {"type": "custom_tool_call", "call_id": "call_3", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_3", "output": "Done!"},
            {"type": "local_shell_call", "call_id": "call_4", "action": {"command": ["ls"]}},
            {"type": "message", "role": "system", "content": "Be careful."},
            {"role": "user", "content": "go on"},
        ]
    }
    assert responses.to_chat(body, "m")["messages"] == [
        {"role": "system", "content": "Sandbox rules."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "TOOLTEST look at this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "On it.",
            "tool_calls": [
                tool_call("call_1", "exec_command", '{"cmd": "ls"}'),
                tool_call("call_2", "exec_command", '{"cmd": "pwd"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\n"},
        {"role": "tool", "tool_call_id": "call_2", "content": "/app"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_3", "apply_patch", '{"input": "*** Begin Patch"}')],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "Done!"},
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "go on"},
    ]


def test_responses_request_image_in_a_tool_output_follows_the_tool_messages():
    body = {
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_image", "image_url": "data:image/png;base64,B"}],
            },
        ]
    }
    assert responses.to_chat(body, "m")["messages"][1:] == [
        {"role": "tool", "tool_call_id": "c1", "content": ""},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,B"}}]},
    ]


RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run",
        "parameters": {"type": "object"},
        "strict": False,
    },
    {"type": "function", "name": "strict_one", "parameters": {"type": "object"}, "strict": True},
    {"type": "web_search"},
    {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
    {"type": "local_shell"},
]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "exec_command"}, {"type": "function", "function": {"name": "exec_command"}}),
        ({"type": "web_search"}, None),
    ],
)
def test_responses_request_tools_and_tool_choice(choice, expected):
    body = {"input": "x", "tools": RESPONSES_TOOLS, "tool_choice": choice, "parallel_tool_calls": False}
    chat = responses.to_chat(body, "m")
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "exec_command", "parameters": {"type": "object"}, "description": "Run"},
        },
        {"type": "function", "function": {"name": "strict_one", "parameters": {"type": "object"}, "strict": True}},
    ]
    assert chat.get("tool_choice") == expected
    assert chat["parallel_tool_calls"] is False


def test_responses_request_without_function_tools_offers_none():
    chat = responses.to_chat(
        {"input": "x", "tools": RESPONSES_TOOLS[2:], "tool_choice": "required", "parallel_tool_calls": True}, "m"
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(chat)


def test_responses_request_text_formats():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = responses.to_chat(
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}}},
        "m",
    )
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    chat = responses.to_chat({"input": "x", "text": {"format": {"type": "json_object"}}}, "m")
    assert chat["response_format"] == {"type": "json_object"}
    assert "response_format" not in responses.to_chat(
        {"input": "x", "text": {"format": {"type": "text"}, "verbosity": "low"}}, "m"
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 5}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": [{"content": "no type, no role"}]}, "input[0]"),
        ({"input": [{"type": "message", "role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0]"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "x", "instructions": ["a"]}, "instructions"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    ],
)
def test_responses_request_malformed(body, param):
    rejects(responses, body, param)


def test_responses_response_text():
    answer = responses.from_chat(completion("DONE"), "gpt-5.5")
    assert answer["id"].startswith("resp_")
    assert answer["object"] == "response" and answer["status"] == "completed" and answer["model"] == "gpt-5.5"
    assert answer["created_at"] == 1700000000
    [item] = answer["output"]
    assert item["id"].startswith("msg_")
    assert item == {
        "type": "message",
        "id": item["id"],
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "DONE", "annotations": []}],
    }
    assert answer["usage"] == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 18,
    }
    assert answer["error"] is None and answer["incomplete_details"] is None and answer["instructions"] is None
    assert answer["tools"] == [] and answer["text"] == {"format": {"type": "text"}} and answer["metadata"] == {}
    assert "parallel_tool_calls" in answer and "tool_choice" in answer


def test_responses_response_tool_calls():
    calls = [tool_call("call_1", "exec_command", '{"cmd": "ls"}'), tool_call("call_2", "exec_command", "{}")]
    answer = responses.from_chat(completion(None, calls, "tool_calls"), "m")
    assert [(i["type"], i["call_id"], i["name"], i["arguments"], i["status"]) for i in answer["output"]] == [
        ("function_call", "call_1", "exec_command", '{"cmd": "ls"}', "completed"),
        ("function_call", "call_2", "exec_command", "{}", "completed"),
    ]
    assert all(i["id"].startswith("fc_") for i in answer["output"])
    assert answer["status"] == "completed"


def test_responses_response_length_is_incomplete():
    answer = responses.from_chat(completion("cut sho", finish_reason="length"), "m")
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}


RESPONSES_START = ["response.created", "response.in_progress"]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_CLOSE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
CALL_CLOSE = ["response.function_call_arguments.done", "response.output_item.done"]


def check_responses_stream(fed: list[Event], end: list[Event]) -> dict[str, Any]:
    """Checks what every Responses stream must hold, and gives the completed response."""
    events = fed + end
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    assert "response.completed" not in names(fed)
    assert names(end)[-1] == "response.completed"
    created = fed[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["model"] == "gw-model"
    done_items = [data["item"] for name, data in events if name == "response.output_item.done"]
    completed = end[-1][1]["response"]
    assert completed["output"] == done_items
    assert completed["id"] == created["id"]
    assert completed["usage"]["input_tokens"] == 11 and completed["usage"]["output_tokens"] == 7
    return completed


def test_responses_stream_text():
    fed, end = stream(responses, TEXT)
    assert names(fed) == RESPONSES_START + MESSAGE_OPEN + ["response.output_text.delta"] * 3
    assert names(end) == [*MESSAGE_CLOSE, "response.completed"]
    item = fed[2][1]["item"]
    assert item["type"] == "message" and item["status"] == "in_progress" and item["content"] == []
    deltas = [data for name, data in fed if name == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "Hello, world"
    assert all((d["item_id"], d["output_index"], d["content_index"]) == (item["id"], 0, 0) for d in deltas)
    assert end[0][1]["text"] == "Hello, world"
    completed = check_responses_stream(fed, end)
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"] == [{"type": "output_text", "text": "Hello, world", "annotations": []}]


def test_responses_stream_tool_call_in_pieces():
    fed, end = stream(responses, TOOL)
    assert (
        names(fed) == RESPONSES_START + ["response.output_item.added"] + ["response.function_call_arguments.delta"] * 3
    )
    item = fed[2][1]["item"]
    assert {k: item[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_a",
        "name": "Bash",
        "arguments": "",
        "status": "in_progress",
    }
    assert "".join(data["delta"] for _, data in fed[3:]) == '{"command": "ls -la"}'
    assert names(end) == [*CALL_CLOSE, "response.completed"]
    assert end[0][1]["arguments"] == '{"command": "ls -la"}'
    completed = check_responses_stream(fed, end)
    assert completed["output"] == [{**item, "arguments": '{"command": "ls -la"}', "status": "completed"}]


def test_responses_stream_text_then_tool():
    fed, end = stream(responses, TEXT_THEN_TOOL)
    assert names(fed) == (
        RESPONSES_START
        + MESSAGE_OPEN
        + ["response.output_text.delta"] * 2
        + MESSAGE_CLOSE
        + ["response.output_item.added", "response.function_call_arguments.delta"]
    )
    assert names(end) == [*CALL_CLOSE, "response.completed"]
    completed = check_responses_stream(fed, end)
    assert [i["type"] for i in completed["output"]] == ["message", "function_call"]
    assert completed["output"][0]["content"][0]["text"] == "Let me look."
    assert completed["output"][1]["arguments"] == '{"command": "pwd"}'
    assert [data["output_index"] for name, data in fed if name == "response.output_item.added"] == [0, 1]


def test_responses_stream_two_tool_calls():
    fed, end = stream(responses, TWO_TOOLS)
    assert names(fed) == (
        RESPONSES_START
        + ["response.output_item.added"]
        + ["response.function_call_arguments.delta"] * 2
        + CALL_CLOSE
        + ["response.output_item.added", "response.function_call_arguments.delta"]
    )
    completed = check_responses_stream(fed, end)
    assert [(i["call_id"], i["arguments"]) for i in completed["output"]] == [
        ("call_1", '{"path": "a.txt"}'),
        ("call_2", '{"path": "b.txt"}'),
    ]


def test_responses_stream_length_completes_as_incomplete():
    fed, end = stream(responses, [chunk(content="cut"), chunk("length"), usage_chunk()])
    completed = check_responses_stream(fed, end)
    assert completed["status"] == "incomplete"
    assert completed["incomplete_details"] == {"reason": "max_output_tokens"}


def test_responses_stream_reasoning_item():
    fed, end = stream(
        responses,
        [
            chunk(reasoning_content="Hm"),
            chunk(reasoning_content="m."),
            chunk(content="OK"),
            chunk("stop"),
            usage_chunk(),
        ],
    )
    completed = check_responses_stream(fed, end)
    assert completed["output"][0]["type"] == "reasoning"
    assert completed["output"][0]["content"] == [{"type": "reasoning_text", "text": "Hmm."}]
    assert [i["type"] for i in completed["output"]] == ["reasoning", "message"]


def test_responses_error_body_is_openai_shaped():
    error = ApiError(400, "bad", param="input", code="invalid_value")
    assert responses.error_body(error) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "input", "code": "invalid_value"}
    }


# Gemini ------------------------------------------------------------------------------------------------------------


def test_gemini_request_text_system_images_and_config():
    body = {
        "systemInstruction": {"role": "user", "parts": [{"text": "You are Gemini CLI."}, {"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is in these?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
                ],
            },
            {"role": "model", "parts": [{"text": "A cat", "thoughtSignature": "sig"}, {"text": " and a PDF."}]},
            {"role": "model", "parts": [{"text": "secret plan", "thought": True}, {"thoughtSignature": "sig"}]},
            {"parts": [{"text": "thanks"}]},
        ],
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "maxOutputTokens": 256,
            "stopSequences": ["\n\n"],
            "candidateCount": 1,
            "thinkingConfig": {"includeThoughts": True},
        },
    }
    assert gemini.to_chat(body, "gemini-2.5-pro") == {
        "model": "gemini-2.5-pro",
        "messages": [
            {"role": "system", "content": "You are Gemini CLI.\n\nBe brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                ],
            },
            {"role": "assistant", "content": "A cat and a PDF."},
            {"role": "user", "content": "thanks"},
        ],
        "temperature": 0.3,
        "top_p": 0.8,
        "max_tokens": 256,
        "stop": ["\n\n"],
        "n": 1,
    }


def test_gemini_request_string_system_instruction():
    chat = gemini.to_chat(
        {"systemInstruction": "Be nice.", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "m"
    )
    assert chat["messages"][0] == {"role": "system", "content": "Be nice."}


def test_gemini_request_function_calls_and_responses_pair_by_name_in_order():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "TOOLTEST write the file"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}},
                    {"functionCall": {"name": "run_shell_command", "args": {"command": "pwd"}}},
                    {"functionCall": {"name": "read_file", "args": {"path": "a"}, "id": "given-id"}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "read_file", "id": "given-id", "response": {"output": "A"}}},
                    {"functionResponse": {"name": "run_shell_command", "response": {"output": "a.txt"}}},
                    {"functionResponse": {"name": "run_shell_command", "response": {"error": "denied"}}},
                    {"text": "continue"},
                ],
            },
        ]
    }
    assert gemini.to_chat(body, "m")["messages"] == [
        {"role": "user", "content": "TOOLTEST write the file"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                tool_call("call_0_run_shell_command", "run_shell_command", '{"command": "ls"}'),
                tool_call("call_1_run_shell_command", "run_shell_command", '{"command": "pwd"}'),
                tool_call("given-id", "read_file", '{"path": "a"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "given-id", "content": "A"},
        {"role": "tool", "tool_call_id": "call_0_run_shell_command", "content": "a.txt"},
        {"role": "tool", "tool_call_id": "call_1_run_shell_command", "content": '{"error": "denied"}'},
        {"role": "user", "content": "continue"},
    ]


def test_gemini_request_ids_round_trip_through_a_response():
    answer = gemini.from_chat(
        completion(None, [tool_call("call_zz", "run_shell_command", '{"command": "ls"}')], "tool_calls"), "m"
    )
    call_part = answer["candidates"][0]["content"]["parts"][0]
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [call_part]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "run_shell_command", "id": "call_zz", "response": {"output": "x"}}}
                ],
            },
        ]
    }
    messages = gemini.to_chat(body, "m")["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_zz"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_zz", "content": "x"}


def test_gemini_request_tools_lower_case_schemas_and_tool_config():
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "run_shell_command",
                        "description": "Run",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {
                                "command": {"type": "STRING"},
                                "type": {"type": "STRING", "enum": ["A", "B"]},
                                "list": {"type": "ARRAY", "items": {"type": "INTEGER"}},
                                "maybe": {"type": ["STRING", "NULL"]},
                            },
                            "required": ["command", "type"],
                        },
                    },
                    {
                        "name": "read_file",
                        "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                    },
                    {"name": "no_args"},
                ]
            },
            {"googleSearch": {}},
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read_file"]}},
    }
    chat = gemini.to_chat(body, "m")
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "run_shell_command",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "string"},
                        "type": {"type": "string", "enum": ["A", "B"]},
                        "list": {"type": "array", "items": {"type": "integer"}},
                        "maybe": {"type": ["string", "null"]},
                    },
                    "required": ["command", "type"],
                },
                "description": "Run",
            },
        },
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        },
        {"type": "function", "function": {"name": "no_args", "parameters": {"type": "object", "properties": {}}}},
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "read_file"}}


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"mode": "AUTO"}, None), ({"mode": "ANY"}, "required"), ({"mode": "NONE"}, "none"), ({}, None)],
)
def test_gemini_request_tool_config_modes(config, expected):
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}],
        "toolConfig": {"functionCallingConfig": config},
    }
    assert gemini.to_chat(body, "m").get("tool_choice") == expected


def test_gemini_request_json_output():
    contents = [{"role": "user", "parts": [{"text": "classify"}]}]
    schema = {"type": "OBJECT", "properties": {"complexity_score": {"type": "INTEGER"}}}
    config = {"responseMimeType": "application/json", "responseJsonSchema": schema}
    chat = gemini.to_chat({"contents": contents, "generationConfig": config}, "m")
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"complexity_score": {"type": "integer"}}},
        },
    }
    config = {"responseMimeType": "application/json", "responseSchema": schema}
    assert (
        gemini.to_chat({"contents": contents, "generationConfig": config}, "m")["response_format"]["json_schema"][
            "schema"
        ]["type"]
        == "object"
    )
    chat = gemini.to_chat({"contents": contents, "generationConfig": {"responseMimeType": "application/json"}}, "m")
    assert chat["response_format"] == {"type": "json_object"}
    assert "stream" not in chat  # the URL says whether it streams


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": ["hi"]}, "contents[0]"),
        ({"contents": [{"role": "user"}]}, "contents[0].parts"),
        ({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"role": "user", "parts": [{"executableCode": {}}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"role": "user", "parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
            "contents[0].parts[0]",
        ),
        ({"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]}, "contents[0].parts[0]"),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
            "contents[0].parts[0].functionCall.name",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
    ],
)
def test_gemini_request_malformed(body, param):
    rejects(gemini, body, param)


def test_gemini_response_text():
    assert gemini.from_chat(completion("DONE"), "gemini-2.5-pro") == {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "DONE"}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18},
        "modelVersion": "gemini-2.5-pro",
        "responseId": "chatcmpl-9",
    }


def test_gemini_response_tool_call_and_length():
    calls = [tool_call("call_1", "run_shell_command", '{"command": "ls", "description": "list"}')]
    [candidate] = gemini.from_chat(completion("Running.", calls, "tool_calls"), "m")["candidates"]
    assert candidate["content"]["parts"] == [
        {"text": "Running."},
        {
            "functionCall": {
                "name": "run_shell_command",
                "args": {"command": "ls", "description": "list"},
                "id": "call_1",
            }
        },
    ]
    assert candidate["finishReason"] == "STOP"
    assert (
        gemini.from_chat(completion("cut", finish_reason="length"), "m")["candidates"][0]["finishReason"]
        == "MAX_TOKENS"
    )


def gemini_parts(events: list[Event]) -> list[dict[str, Any]]:
    return [part for _, data in events for part in data["candidates"][0]["content"]["parts"]]


def check_gemini_stream(fed: list[Event], end: list[Event]) -> dict[str, Any]:
    """Checks what every Gemini stream must hold, and gives its last event."""
    assert all(name is None for name, _ in fed + end)
    assert not any("finishReason" in data["candidates"][0] or "usageMetadata" in data for _, data in fed)
    [(_, last)] = end
    assert last["usageMetadata"] == {"promptTokenCount": 11, "candidatesTokenCount": 7, "totalTokenCount": 18}
    assert all(
        data["modelVersion"] == "gw-model" and data["candidates"][0]["content"]["role"] == "model"
        for _, data in fed + end
    )
    assert len({data["responseId"] for _, data in fed + end}) == 1
    return last


def test_gemini_stream_text():
    fed, end = stream(gemini, TEXT)
    assert gemini_parts(fed) == [{"text": "Hel"}, {"text": "lo, wor"}, {"text": "ld"}]
    last = check_gemini_stream(fed, end)
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert gemini_parts(end) == []


def test_gemini_stream_tool_call_arrives_whole_at_the_end():
    fed, end = stream(gemini, TOOL)
    assert fed == []
    last = check_gemini_stream(fed, end)
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert gemini_parts(end) == [{"functionCall": {"name": "Bash", "args": {"command": "ls -la"}, "id": "call_a"}}]


def test_gemini_stream_text_then_tool():
    fed, end = stream(gemini, TEXT_THEN_TOOL)
    assert gemini_parts(fed) == [{"text": "Let me "}, {"text": "look."}]
    check_gemini_stream(fed, end)
    assert gemini_parts(end) == [{"functionCall": {"name": "Bash", "args": {"command": "pwd"}, "id": "call_b"}}]


def test_gemini_stream_two_tool_calls_first_sent_when_the_second_starts():
    fed, end = stream(gemini, TWO_TOOLS)
    assert gemini_parts(fed) == [{"functionCall": {"name": "Read", "args": {"path": "a.txt"}, "id": "call_1"}}]
    check_gemini_stream(fed, end)
    assert gemini_parts(end) == [{"functionCall": {"name": "Read", "args": {"path": "b.txt"}, "id": "call_2"}}]


def test_gemini_stream_length_and_thoughts():
    fed, end = stream(gemini, [chunk(reasoning_content="Hmm"), chunk(content="cut"), chunk("length"), usage_chunk()])
    assert gemini_parts(fed) == [{"text": "Hmm", "thought": True}, {"text": "cut"}]
    assert check_gemini_stream(fed, end)["candidates"][0]["finishReason"] == "MAX_TOKENS"


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (413, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ],
)
def test_gemini_error_body(status, name):
    assert gemini.error_body(ApiError(status, "nope")) == {"error": {"code": status, "message": "nope", "status": name}}


def test_wires_by_name():
    assert {name: wire.name for name, wire in WIRES.items()} == {
        "anthropic": "anthropic",
        "responses": "responses",
        "gemini": "gemini",
    }
