"""A small, fast OpenAI-compatible upstream for tests and benchmarks.

Runs as its own process (``python -m tests.support.fake_openai --port N``) so it never shares a GIL with the
code under test. It speaks just enough HTTP/1.1 (keep-alive, Content-Length requests, chunked SSE responses)
for litellm, the ``openai`` client and LiteLLM's proxy.

The model name picks the behaviour, so a test can ask for a fault without any side channel:
``*-429`` rate limited (with ``Retry-After``), ``*-500`` upstream error, ``*-400`` bad request, ``*-401``
bad provider key, ``*-slow`` sleeps 30 s, ``*-chunksN`` streams N content chunks (default 20).
``GET /_requests`` returns every request body seen, for tests that check what reached the upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

SEEN: list[dict] = []


def _error(status: int, message: str, type_: str, code: str | None = None) -> tuple[int, dict, dict]:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    headers = {"retry-after": "7"} if status == 429 else {}
    return status, body, headers


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _completion(body: dict) -> dict:
    model = body.get("model", "fake")
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    n = int(body.get("n") or 1)
    choices = []
    for index in range(n):
        if tools and body.get("tool_choice") != "none" and messages[-1].get("role") != "tool":
            tool = tools[0]["function"]
            choice = body.get("tool_choice")
            if isinstance(choice, dict):
                tool = {"name": choice["function"]["name"]}
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{index}",
                        "type": "function",
                        "function": {"name": tool["name"], "arguments": json.dumps({"q": _last_user_text(messages)})},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            text = f"echo: {_last_user_text(messages)}"
            if (body.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
                text = json.dumps({"echo": _last_user_text(messages)})
            message = {"role": "assistant", "content": text}
            finish = "stop"
        choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def _stream_events(body: dict) -> list[bytes]:
    model = body.get("model", "fake")
    match = re.search(r"-chunks(\d+)", model)
    count = int(match.group(1)) if match else 20
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    events = []
    first = dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    events.append(first)
    if body.get("tools") and body.get("tool_choice") != "none":
        name = body["tools"][0]["function"]["name"]
        call = {"index": 0, "id": "call_0", "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]))
        args = {"index": 0, "function": {"arguments": '{"q": "x"}'}}
        events.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [args]}, "finish_reason": None}]))
        finish = "tool_calls"
    else:
        for i in range(count):
            delta = {"content": f"tok{i} "}
            events.append(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}]))
        finish = "stop"
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 11, "completion_tokens": count, "total_tokens": 11 + count}
        events.append(dict(base, choices=[], usage=usage))
    out = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    out.append(b"data: [DONE]\n\n")
    return out


def _route(method: str, path: str, body: dict) -> tuple[int, dict, dict]:
    if method == "GET" and path.startswith("/_requests"):
        return 200, {"requests": SEEN}, {}
    if method == "GET" and path.endswith("/models"):
        return (
            200,
            {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "fake"}]},
            {},
        )
    if method != "POST" or not path.endswith("/chat/completions"):
        return _error(404, f"no route {method} {path}", "invalid_request_error")
    SEEN.append(body)
    del SEEN[:-200]
    model = str(body.get("model", ""))
    if model.endswith("-429"):
        return _error(429, "Rate limit reached for fake", "requests", "rate_limit_exceeded")
    if model.endswith("-500"):
        return _error(500, "The server had an error", "server_error")
    if model.endswith("-400"):
        return _error(
            400, "This model's maximum context length is 10 tokens", "invalid_request_error", "context_length_exceeded"
        )
    if model.endswith("-401"):
        return _error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
    return 200, _completion(body), {}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            raw = await reader.readexactly(int(headers.get("content-length", "0")))
            body = json.loads(raw) if raw else {}
            if str(body.get("model", "")).endswith("-slow"):
                await asyncio.sleep(30)
            if method == "POST" and body.get("stream") and not str(body.get("model", "")).rsplit("-", 1)[-1].isdigit():
                SEEN.append(body)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in _stream_events(body):
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                writer.write(b"0\r\n\r\n")
            else:
                status, payload, extra = _route(method, path, body)
                data = json.dumps(payload).encode()
                head_out = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
                head_out += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(head_out.encode() + b"\r\n" + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port, backlog=1024)
    print(f"fake-openai listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
