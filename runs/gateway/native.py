"""Same-wire forwarding: a client that speaks its provider's own wire format gets the provider unchanged.

Claude Code calling an Anthropic model, Codex an OpenAI model or Gemini CLI a Gemini model would lose, in a round
trip through chat completions, what only that format carries (prompt caching marks, thinking blocks and their
signatures, betas, reasoning items). So when the client's wire is the provider's, the request goes to the provider
as the client sent it (only the model is the route's, and the key the org's) and the answer comes back byte for
byte. The gateway still reads it for the record: the whole response (assembled from the stream), its usage and
finish reason. The stream's last event is held until the call is stored, as for every sandbox call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from django.conf import settings

from orgs import outbound
from orgs.api_errors import ApiError
from trajectories.schemas import finish_reason

from .calls import Call
from .exchange import WireExchange
from .upstream import Outcome, _session, refused, upstream_error

Json = dict[str, Any]


@dataclass(frozen=True)
class Native:
    provider: str
    default_base: str
    key_env: tuple[str, ...]
    url: Callable[[str, str, bool, str], str]  # (api base, upstream model, stream, client query) -> URL
    headers: Callable[[str, dict[str, str]], dict[str, str]]  # (key, client headers) -> upstream headers
    body: Callable[[Json, str], Json]  # (client body, upstream model) -> upstream body
    usage: Callable[[Json], Any]  # whole response -> its usage, in the wire's own shape (``schemas.usage_of`` reads it)
    finish: Callable[[Json], str | None]  # in chat completions' terms
    assemble: Callable[[list[Json]], Json]  # the stream's events -> the whole response


def _gemini_finish(response: Json) -> str | None:
    """In chat completions' terms, like every other recorded call."""
    candidate = (response.get("candidates") or [{}])[0]
    if any("functionCall" in part for part in (candidate.get("content") or {}).get("parts") or []):
        return "tool_calls"
    return finish_reason(candidate.get("finishReason"))


def _anthropic_assemble(events: list[Json]) -> Json:
    message: Json = {"content": [], "usage": {}}
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = {**event.get("message", {}), "content": []}
        elif kind == "content_block_start":
            message["content"].append(dict(event.get("content_block") or {}))
        elif kind == "content_block_delta" and message["content"]:
            block, delta = message["content"][-1], event.get("delta") or {}
            for key, field in (("text", "text"), ("partial_json", "partial_json"), ("thinking", "thinking")):
                if key in delta:
                    block[field] = block.get(field, "") + delta[key]
        elif kind == "message_delta":
            message.update(event.get("delta") or {})
            message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
    for block in message["content"]:
        if "partial_json" in block:
            partial = block.pop("partial_json")
            try:
                block["input"] = json.loads(partial) if partial else block.get("input", {})
            except ValueError:
                block["input"] = partial
    return message


def _gemini_assemble(events: list[Json]) -> Json:
    parts: list[Json] = []
    last: Json = {}
    for event in events:
        last = event
        for candidate in (event.get("candidates") or [])[:1]:
            parts += (candidate.get("content") or {}).get("parts") or []
    candidate = ((last.get("candidates") or [{}])[0]) if last else {}
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": candidate.get("finishReason")}],
        "usageMetadata": last.get("usageMetadata") or {},
        "modelVersion": last.get("modelVersion"),
    }


ANTHROPIC = Native(
    provider="anthropic",
    default_base="https://api.anthropic.com",
    key_env=("ANTHROPIC_API_KEY",),
    url=lambda base, _model, _stream, query: f"{base.rstrip('/')}/v1/messages" + (f"?{query}" if query else ""),
    headers=lambda key, client: {
        "x-api-key": key,
        "anthropic-version": client.get("anthropic-version", "2023-06-01"),
        **({"anthropic-beta": client["anthropic-beta"]} if "anthropic-beta" in client else {}),
    },
    body=lambda body, model: {**body, "model": model},
    usage=lambda response: response.get("usage"),
    finish=lambda response: finish_reason(response.get("stop_reason")),
    assemble=_anthropic_assemble,
)
GEMINI = Native(
    provider="gemini",
    default_base="https://generativelanguage.googleapis.com/v1beta",
    key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    url=lambda base, model, stream, _query: (
        f"{base.rstrip('/')}/models/{model}:" + ("streamGenerateContent?alt=sse" if stream else "generateContent")
    ),
    headers=lambda key, _client: {"x-goog-api-key": key},
    body=lambda body, _model: body,
    usage=lambda response: response.get("usageMetadata"),
    finish=_gemini_finish,
    assemble=_gemini_assemble,
)


def _responses_assemble(events: list[Json]) -> Json:
    """The ``response.completed`` event carries the whole response."""
    done = [e for e in events if e.get("type") in ("response.completed", "response.incomplete", "response.failed")]
    return done[-1].get("response") or {} if done else {}


def _responses_finish(response: Json) -> str | None:
    if any(item.get("type") == "function_call" for item in response.get("output") or []):
        return "tool_calls"
    if response.get("status") == "incomplete":
        return "length"
    return "stop" if response.get("status") == "completed" else response.get("status")


RESPONSES = Native(
    provider="openai",
    default_base="https://api.openai.com/v1",
    key_env=("OPENAI_API_KEY",),
    url=lambda base, _model, _stream, _query: f"{base.rstrip('/')}/responses",
    headers=lambda key, _client: {"authorization": f"Bearer {key}"},
    body=lambda body, model: {**body, "model": model},
    usage=lambda response: response.get("usage"),
    finish=_responses_finish,
    assemble=_responses_assemble,
)
NATIVE = {"anthropic": ANTHROPIC, "gemini": GEMINI, "responses": RESPONSES}  # by the client's wire


def native_for(wire: str, provider: str) -> Native | None:
    native = NATIVE.get(wire)
    return native if native is not None and native.provider == provider and settings.JETTY_GATEWAY_DIRECT else None


async def forward_native(exchange: WireExchange, call: Call, run_headers: dict[str, str]) -> Outcome:
    native, route = call.native, call.route
    assert native is not None and call.wire_body is not None
    key = route.api_key or next((os.environ[k] for k in native.key_env if os.environ.get(k)), None)
    if not key:
        missing = f"No API key for provider `{route.provider}` is configured for this organisation"
        return Outcome(None, 400, ApiError(400, missing, code="provider_not_configured", param="model"))
    stream = call.request.stream
    url = native.url(route.api_base or native.default_base, route.upstream_model, stream, exchange.query_string)
    headers = {**native.headers(key, exchange.headers), "content-type": "application/json"}
    try:
        async with _session(route.guarded).post(
            url, data=json.dumps(native.body(call.wire_body, route.upstream_model)), headers=headers
        ) as upstream:
            if upstream.status != 200:
                raw = await upstream.read()
                lowered = {k.lower(): v for k, v in upstream.headers.items()}
                return Outcome(None, upstream.status, upstream_error(upstream.status, raw, route.provider, lowered))
            if not stream:
                raw = await upstream.read()
                call.first_byte = time.time()
                await exchange.respond(200, raw, run_headers)
                return Outcome(json.loads(raw), 200)
            await exchange.start_stream(run_headers)
            events: list[Json] = []
            buffer = b""
            async for piece in upstream.content.iter_any():
                call.first_byte = call.first_byte or time.time()
                buffer += piece.replace(b"\r\n", b"\n")
                *complete, buffer = buffer.split(b"\n\n")
                for raw_event in complete:
                    data = raw_event.partition(b"data:")[2].strip()
                    if data:
                        try:
                            events.append(json.loads(data))
                        except ValueError:
                            pass
                    await exchange.relay(raw_event + b"\n\n")
            if buffer.strip():
                await exchange.relay(buffer + b"\n\n")
            await exchange.end_stream()
            return Outcome(native.assemble(events), 200)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        message = f"The provider `{route.provider}` did not answer within {settings.JETTY_GATEWAY_TIMEOUT_S:g} s"
        return Outcome(None, 504, ApiError(504, message, code="upstream_timeout"))
    except outbound.OutboundForbidden as exc:
        return refused(exc, route.provider)
    except aiohttp.ClientError as exc:
        message = f"Could not reach the provider `{route.provider}`: {exc}"
        return Outcome(None, 502, ApiError(502, message, code="upstream_unreachable"))
