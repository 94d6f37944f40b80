"""The bare baseline for the agent benchmark: the scripted model served in each CLI's wire format, and nothing else.

No tokens, no routing, no recording, no ordering: a request is translated to chat completions, answered by the
same ``scripted`` litellm provider the gateway uses, and translated back. What the gateway adds on top of this is
what the benchmark measures.

    .venv/bin/python bench/bare_model_server.py --port N
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")

import django  # noqa: E402

django.setup()

import litellm  # noqa: E402
from aiohttp import web  # noqa: E402

from runs.gateway import scripted  # noqa: E402
from runs.gateway.wires import WIRES, Wire  # noqa: E402

MODEL = "scripted/default"


def wire_of(path: str) -> tuple[Wire, bool | None]:
    if path.startswith("/v1/messages"):
        return WIRES["anthropic"], None
    if path.startswith("/v1/responses"):
        return WIRES["responses"], None
    return WIRES["gemini"], path.endswith(":streamGenerateContent")


async def answer(request: web.Request) -> web.StreamResponse:
    if request.method == "HEAD":
        return web.Response()
    wire, stream = wire_of(request.path)
    body = await request.json()
    if request.path.endswith("count_tokens") or request.path.endswith(":countTokens"):
        return web.json_response({"input_tokens": 1, "totalTokens": 1})
    chat = wire.to_chat(body, MODEL)
    if stream is not None:
        chat["stream"] = stream
    params = {k: v for k, v in chat.items() if k not in ("model", "messages", "stream", "stream_options")}
    if not chat.get("stream"):
        completion = await litellm.acompletion(model=MODEL, messages=chat["messages"], **params)
        return web.json_response(wire.from_chat(completion.model_dump(), MODEL))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    encoder = wire.encoder(MODEL)
    chunks = await litellm.acompletion(
        model=MODEL, messages=chat["messages"], stream=True, stream_options={"include_usage": True}, **params
    )
    async for chunk in chunks:
        await response.write(encoder.feed(chunk.model_dump(exclude_none=True)))
    await response.write(encoder.finish())
    await response.write_eof()
    return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    scripted.register()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
