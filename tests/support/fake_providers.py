"""A small upstream speaking three providers' own wire formats, for testing the gateway's translations.

Runs as its own process (``python -m tests.support.fake_providers --port N``), standard library only. Written from
the providers' documented formats, independently of ``runs/gateway/wires.py``: it is the reference the gateway's
translations are checked against.

- Anthropic Messages: ``POST /v1/messages``, JSON or SSE (``message_start``, ``content_block_start``,
  ``content_block_delta`` with ``text_delta`` / ``input_json_delta``, ``content_block_stop``, ``message_delta``,
  ``message_stop``); key in ``x-api-key``.
- Gemini: ``POST .../models/<model>:generateContent`` and ``:streamGenerateContent?alt=sse``
  (``GenerateContentResponse`` chunks, ``functionCall`` parts, ``usageMetadata``); key in ``x-goog-api-key`` or
  ``?key=``.
- OpenAI Chat Completions: ``POST .../chat/completions``, JSON or SSE; bearer key.
- OpenAI Responses: ``POST .../responses``, JSON or SSE (``response.created``, ``response.output_item.added``,
  ``response.function_call_arguments.delta`` / ``response.output_text.delta``, ``response.output_item.done``,
  ``response.completed``); bearer key.

Every family behaves alike: offered tools and no tool result in the conversation yet, it calls the first tool with
``{"command": "echo hi"}`` (its arguments streamed in pieces where the format allows); otherwise it answers
``DONE: <last user text>`` (streamed in several pieces). Usage is always 11 prompt and 7 completion tokens. Like the
providers, it refuses (400, in the provider's error shape) a tool result that answers no tool call of the conversation.
``GET /_requests`` returns every request seen (``path`` and ``body``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import parse_qs, urlsplit

SEEN: list[dict] = []
ARGUMENTS = {"command": "echo hi"}
ARGUMENT_PIECES = ['{"comm', 'and": "ec', 'ho hi"}']
assert json.loads("".join(ARGUMENT_PIECES)) == ARGUMENTS
PROMPT_TOKENS, COMPLETION_TOKENS = 11, 7


class Rejected(Exception):
    """A request the provider would refuse with 400 (here: a tool result answering no tool call)."""


def _check_answers(calls: list[str], answers: list[str], what: str) -> None:
    for answer in answers:
        if answer not in calls:
            raise Rejected(f"{what} {answer!r} answers no tool call of the conversation (calls: {calls})")


def _text_pieces(text: str) -> list[str]:
    head, _, rest = text.partition(" ")
    middle = len(rest) // 2
    return [p for p in (head, " " + rest[:middle], rest[middle:]) if p]


# Anthropic Messages -------------------------------------------------------------------------------------------------


def _anthropic_texts(content) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]


def _anthropic_plan(body: dict) -> tuple[str | None, str]:
    """(the tool to call or None, the text to answer)."""
    messages = body.get("messages") or []
    blocks = [b for m in messages if isinstance(m.get("content"), list) for b in m["content"] if isinstance(b, dict)]
    results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
    _check_answers([b.get("id") for b in blocks if b.get("type") == "tool_use"], results, "tool_result")
    answered = bool(results)
    tools = body.get("tools") or []
    tool_choice = (body.get("tool_choice") or {}).get("type")
    if tools and not answered and tool_choice != "none":
        return tools[0]["name"], ""
    user_texts = [t for m in messages if m.get("role") == "user" for t in _anthropic_texts(m.get("content"))]
    return None, f"DONE: {user_texts[-1] if user_texts else ''}"


def _anthropic_message(model: str, content: list, stop_reason: str | None, output_tokens: int) -> dict:
    return {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": output_tokens},
    }


def anthropic(body: dict, stream: bool) -> dict | list[bytes]:
    tool, text = _anthropic_plan(body)
    model = body.get("model", "")
    if not stream:
        if tool:
            content = [{"type": "tool_use", "id": "toolu_fake01", "name": tool, "input": ARGUMENTS}]
            return _anthropic_message(model, content, "tool_use", COMPLETION_TOKENS)
        return _anthropic_message(model, [{"type": "text", "text": text}], "end_turn", COMPLETION_TOKENS)

    def event(kind: str, **data) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    out = [event("message_start", message=_anthropic_message(model, [], None, 1)), event("ping")]
    if tool:
        block = {"type": "tool_use", "id": "toolu_fake01", "name": tool, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *ARGUMENT_PIECES]]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _text_pieces(text)]
    out.append(event("content_block_start", index=0, content_block=block))
    out += [event("content_block_delta", index=0, delta=d) for d in deltas]
    out.append(event("content_block_stop", index=0))
    delta = {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None}
    out.append(event("message_delta", delta=delta, usage={"output_tokens": COMPLETION_TOKENS}))
    out.append(event("message_stop"))
    return out


# Gemini ------------------------------------------------------------------------------------------------------------


def _field(message: dict, name: str):
    """A field of a Gemini request by its JSON name or its proto name, as the API accepts either
    (``functionDeclarations`` or ``function_declarations``)."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return message.get(name, message.get(snake))


def _gemini_plan(body: dict) -> tuple[str | None, str]:
    contents = body.get("contents") or []
    parts = [(c.get("role") or "user", p) for c in contents for p in c.get("parts") or [] if isinstance(p, dict)]
    names = [(_field(p, "functionCall") or {}).get("name") for _, p in parts if _field(p, "functionCall")]
    results = [_field(p, "functionResponse")["name"] for _, p in parts if _field(p, "functionResponse")]
    _check_answers(names, results, "functionResponse")
    answered = bool(results)
    declarations = [d for t in body.get("tools") or [] for d in _field(t, "functionDeclarations") or []]
    mode = _field(_field(body, "toolConfig") or {}, "functionCallingConfig") or {}
    if declarations and not answered and mode.get("mode") != "NONE":
        return declarations[0]["name"], ""
    user_texts = [p["text"] for role, p in parts if role == "user" and isinstance(p.get("text"), str)]
    return None, f"DONE: {user_texts[-1] if user_texts else ''}"


def _gemini_chunk(model: str, parts: list, finish: str | None, final: bool) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    usage: dict = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
    if final:
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake-response"}


def gemini(body: dict, model: str, stream: bool) -> dict | list[bytes]:
    tool, text = _gemini_plan(body)
    if tool:
        chunks = [_gemini_chunk(model, [{"functionCall": {"name": tool, "args": ARGUMENTS}}], "STOP", True)]
    else:
        pieces = _text_pieces(text)
        chunks = [_gemini_chunk(model, [{"text": p}], None, False) for p in pieces[:-1]]
        chunks.append(_gemini_chunk(model, [{"text": pieces[-1]}], "STOP", True))
    if not stream:
        whole = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        if not tool:
            whole = [{"text": text}]
        return _gemini_chunk(model, whole, "STOP", True)
    return [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks]


# OpenAI Chat Completions -------------------------------------------------------------------------------------------


def _openai_plan(body: dict) -> tuple[str | None, str]:
    messages = body.get("messages") or []
    results = [m.get("tool_call_id") for m in messages if m.get("role") == "tool"]
    _check_answers([c.get("id") for m in messages for c in m.get("tool_calls") or []], results, "tool message")
    answered = bool(results)
    tools = body.get("tools") or []
    if tools and not answered and body.get("tool_choice") != "none":
        return tools[0]["function"]["name"], ""
    texts = []
    for m in messages:
        if m.get("role") == "user":
            content = m.get("content")
            texts += [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
    return None, f"DONE: {texts[-1] if texts else ''}"


def openai(body: dict, stream: bool) -> dict | list[bytes]:
    tool, text = _openai_plan(body)
    model = body.get("model", "")
    base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    finish = "tool_calls" if tool else "stop"
    if not stream:
        message: dict = {"role": "assistant", "content": text or None}
        if tool:
            function = {"name": tool, "arguments": json.dumps(ARGUMENTS)}
            message["tool_calls"] = [{"id": "call_fake01", "type": "function", "function": function}]
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**base, "object": "chat.completion.chunk", "choices": [choice]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if tool:
        call = {"index": 0, "id": "call_fake01", "type": "function", "function": {"name": tool, "arguments": ""}}
        chunks.append(chunk({"tool_calls": [call]}))
        chunks += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in ARGUMENT_PIECES]
    else:
        chunks += [chunk({"content": p}) for p in _text_pieces(text)]
    chunks.append(chunk({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


def _responses_plan(body: dict) -> tuple[str | None, str]:
    items = body.get("input") or []
    items = [{"role": "user", "content": items}] if isinstance(items, str) else items
    calls = [i.get("call_id") for i in items if i.get("type") == "function_call"]
    _check_answers(calls, [i.get("call_id") for i in items if i.get("type") == "function_call_output"], "output")
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools and not calls:
        return tools[0]["name"], ""
    texts = []
    for item in items:
        if item.get("role") == "user":
            content = item.get("content")
            texts += [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
    return None, f"DONE: {texts[-1] if texts else ''}"


def responses(body: dict, stream: bool) -> dict | list[bytes]:
    """OpenAI's Responses API: a function call or a message; streamed as its documented events."""
    tool, text = _responses_plan(body)
    if tool:
        item = {"type": "function_call", "id": "fc_fake01", "call_id": "call_fake01", "name": tool, "arguments": ""}
    else:
        item = {"type": "message", "id": "msg_fake01", "role": "assistant", "content": []}
    usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
    usage["total_tokens"] = PROMPT_TOKENS + COMPLETION_TOKENS
    done = dict(item, status="completed")
    if tool:
        done["arguments"] = json.dumps(ARGUMENTS)
    else:
        done["content"] = [{"type": "output_text", "text": text, "annotations": []}]
    response = {"id": "resp_fake", "object": "response", "status": "completed", "model": body.get("model")}
    whole = {**response, "output": [done], "usage": usage}
    if not stream:
        return whole
    events = [("response.created", {"response": {**response, "status": "in_progress", "output": []}})]
    events.append(("response.output_item.added", {"output_index": 0, "item": dict(item, status="in_progress")}))
    if tool:
        events += [
            ("response.function_call_arguments.delta", {"item_id": "fc_fake01", "delta": p}) for p in ARGUMENT_PIECES
        ]
    else:
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(("response.content_part.added", {"item_id": "msg_fake01", "content_index": 0, "part": part}))
        events += [("response.output_text.delta", {"item_id": "msg_fake01", "delta": p}) for p in _text_pieces(text)]
    events.append(("response.output_item.done", {"output_index": 0, "item": done}))
    events.append(("response.completed", {"response": whole}))
    return [
        f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **data})}\n\n".encode()
        for n, (kind, data) in enumerate(events)
    ]


# HTTP --------------------------------------------------------------------------------------------------------------


def route(method: str, target: str, headers: dict[str, str], body: dict) -> tuple[int, dict | list[bytes]]:
    """(status, a JSON body or the SSE events to stream)."""
    url = urlsplit(target)
    path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
    if method == "GET" and path == "/_requests":
        return 200, {"requests": SEEN}
    if method != "POST":
        return 404, {"error": {"message": f"no route {method} {path}"}}
    SEEN.append({"path": target, "body": body})
    del SEEN[:-200]
    if path.endswith("/v1/messages"):
        if not headers.get("x-api-key"):
            error = {"type": "authentication_error", "message": "x-api-key header is required"}
            return 401, {"type": "error", "error": error}
        try:
            return 200, anthropic(body, bool(body.get("stream")))
        except Rejected as exc:
            return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": str(exc)}}
    if "/models/" in path and ":" in path:
        model, _, method_name = path.rpartition("/models/")[2].partition(":")
        if not (headers.get("x-goog-api-key") or query.get("key")):
            return 401, {"error": {"code": 401, "message": "API key not valid", "status": "UNAUTHENTICATED"}}
        if method_name not in ("generateContent", "streamGenerateContent"):
            return 404, {"error": {"code": 404, "message": f"unknown method {method_name}", "status": "NOT_FOUND"}}
        try:
            return 200, gemini(body, model, method_name == "streamGenerateContent")
        except Rejected as exc:
            return 400, {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}}
    if path.endswith("/responses"):
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing key", "type": "invalid_request_error", "code": None}}
        try:
            return 200, responses(body, bool(body.get("stream")))
        except Rejected as exc:
            return 400, {
                "error": {"message": str(exc), "type": "invalid_request_error", "param": "input", "code": None}
            }
    if path.endswith("/chat/completions"):
        if not headers.get("authorization", "").startswith("Bearer "):
            return 401, {"error": {"message": "missing key", "type": "invalid_request_error", "code": None}}
        try:
            return 200, openai(body, bool(body.get("stream")))
        except Rejected as exc:
            error = {"message": str(exc), "type": "invalid_request_error", "param": "messages", "code": None}
            return 400, {"error": error}
    return 404, {"error": {"message": f"no route {method} {path}"}}


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
            pass
        return b"".join(parts)
    return await reader.readexactly(int(headers.get("content-length", "0")))


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            raw = await _read_body(reader, headers)
            body = json.loads(raw) if raw else {}
            status, answer = route(method, target, headers, body)
            if isinstance(answer, list):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in answer:
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                data = json.dumps(answer).encode()
                out = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                writer.write(out.encode() + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port, backlog=1024)
    print(f"fake-providers listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
