"""Forwarding a call to its provider: straight through for OpenAI-wire providers, via litellm for the rest.

Both paths answer the client in OpenAI's format and return the completion (assembled from chunks when
streaming) for the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import litellm
import openai
from django.conf import settings

from orgs import outbound
from orgs.api_errors import ApiError

from .calls import Call, StreamAccumulator
from .exchange import Exchange

PASSED_HEADERS = (
    "x-request-id",
    "openai-processing-ms",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)


@dataclass
class Outcome:
    response: dict[str, Any] | None
    status_code: int
    error: ApiError | None = None


_sessions: dict[tuple[int, bool], aiohttp.ClientSession] = {}


def _session(guarded: bool = False) -> aiohttp.ClientSession:
    """The loop's client session; a ``guarded`` one (for an org's own api_base) connects only where the outbound
    policy allows, to the address it checked."""
    loop = asyncio.get_running_loop()
    session = _sessions.get((id(loop), guarded))
    if session is None or session.closed:
        timeout = aiohttp.ClientTimeout(total=settings.JETTY_GATEWAY_TIMEOUT_S, sock_connect=10)
        kind = outbound.PinnedConnector if guarded else aiohttp.TCPConnector
        connector = kind(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=True)
        _sessions[(id(loop), guarded)] = session
    return session


def refused(exc: outbound.OutboundForbidden, provider: str) -> Outcome:
    """An endpoint the outbound policy refuses (an org's api_base, a provider's local default): the configuration,
    not the provider, is at fault."""
    message = f"The provider `{provider}` endpoint is refused: {exc.message}"
    return Outcome(None, 400, ApiError(400, message, code=outbound.CODE, param="model"))


def _without_traceback(message: str) -> str:
    """A provider error as the client may see it: litellm folds Python tracebacks (with the server's paths) into
    some of its messages."""
    return message.split("Traceback (most recent call last)", 1)[0].rstrip() or "the provider call failed"


def upstream_error(status: int, raw: bytes | str, provider: str, headers: dict[str, str]) -> ApiError:
    """The client-facing error for a provider's error response."""
    message, code, type_ = str(raw)[:500], None, None
    try:
        detail = json.loads(raw)["error"]
        if isinstance(detail, dict):
            message = str(detail.get("message") or message)
            code, type_ = detail.get("code"), detail.get("type")
        else:
            message = str(detail)
    except (ValueError, KeyError, TypeError):
        pass
    message = _without_traceback(message)
    if status in (401, 403):
        return ApiError(
            502,
            f"The provider `{provider}` rejected this organisation's credentials: {message}",
            code="provider_auth_failed",
        )
    if status == 429:
        retry = {k: v for k, v in headers.items() if k == "retry-after"}
        return ApiError(429, message, code=code or "rate_limit_exceeded", type=type_ or None, headers=retry)
    if status in (400, 404, 409, 413, 422):
        return ApiError(status, message, code=code, type=type_ or None)
    if status in (408, 504):
        return ApiError(504, f"The provider `{provider}` timed out: {message}", code="upstream_timeout")
    return ApiError(502, f"The provider `{provider}` failed ({status}): {message}", code="upstream_error")


def _passed(headers: Any) -> dict[str, str]:
    return {k: headers[k] for k in PASSED_HEADERS if k in headers}


async def forward_direct(exchange: Exchange, call: Call, run_headers: dict[str, str]) -> Outcome:
    route, request = call.route, call.request
    payload = {**request.upstream_params(), "model": route.upstream_model, "messages": request.body["messages"]}
    url = f"{(route.api_base or '').rstrip('/')}/chat/completions"
    headers = {"authorization": f"Bearer {route.api_key}", "content-type": "application/json"}
    try:
        async with _session(route.guarded).post(url, data=json.dumps(payload), headers=headers) as upstream:
            if upstream.status != 200:
                raw = await upstream.read()
                lowered = {k.lower(): v for k, v in upstream.headers.items()}
                return Outcome(None, upstream.status, upstream_error(upstream.status, raw, route.provider, lowered))
            if not request.stream:
                raw = await upstream.read()
                call.first_byte = time.time()
                completion = json.loads(raw)
                await exchange.respond(200, raw, {**_passed(upstream.headers), **run_headers})
                return Outcome(completion, 200)
            await exchange.start_stream({**_passed(upstream.headers), **run_headers})
            accumulator = StreamAccumulator()
            await _relay_sse(exchange, call, upstream.content.iter_any(), accumulator)
            return Outcome(accumulator.completion(), 200)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return Outcome(
            None,
            504,
            ApiError(
                504,
                f"The provider `{route.provider}` did not answer within {settings.JETTY_GATEWAY_TIMEOUT_S:g} s",
                code="upstream_timeout",
            ),
        )
    except outbound.OutboundForbidden as exc:
        return refused(exc, route.provider)
    except aiohttp.ClientError as exc:
        return Outcome(
            None,
            502,
            ApiError(502, f"Could not reach the provider `{route.provider}`: {exc}", code="upstream_unreachable"),
        )


async def _relay_sse(
    exchange: Exchange, call: Call, pieces: AsyncIterator[bytes], accumulator: StreamAccumulator
) -> None:
    """Pass SSE events through as they arrive, reading each for the record and dropping unrequested usage."""
    drop_usage = not call.request.include_usage
    buffer = b""
    async for piece in pieces:
        if call.first_byte is None:
            call.first_byte = time.time()
        buffer += piece
        *events, buffer = buffer.split(b"\n\n")
        out = []
        for event in events:
            data = event[6:] if event.startswith(b"data: ") else event.partition(b"data:")[2].strip()
            if data and data != b"[DONE]":
                try:
                    chunk = json.loads(data)
                except ValueError:
                    chunk = None
                if isinstance(chunk, dict):
                    accumulator.feed(chunk)
                    if drop_usage and chunk.get("usage") and not chunk.get("choices"):
                        continue
            out.append(event)
            out.append(b"\n\n")
        if out:
            await exchange.stream(b"".join(out))
    if buffer.strip():
        await exchange.stream(buffer + b"\n\n")
    await exchange.end_stream()


def litellm_error(exc: Exception, provider: str) -> ApiError:
    said = _without_traceback(str(exc))
    if isinstance(exc, litellm.Timeout):
        return ApiError(504, f"The provider `{provider}` did not answer in time: {said}", code="upstream_timeout")
    if isinstance(exc, litellm.APIConnectionError):
        return ApiError(502, f"Could not reach the provider `{provider}`: {said}", code="upstream_unreachable")
    if isinstance(exc, litellm.UnsupportedParamsError):
        return ApiError(400, str(exc), code="unsupported_parameter")
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        headers: dict[str, str] = {}
        response = getattr(exc, "response", None)
        if response is not None and getattr(response, "headers", None) is not None:
            headers = {k.lower(): v for k, v in response.headers.items()}
        message = _without_traceback(getattr(exc, "message", None) or str(exc))
        return upstream_error(status, json.dumps({"error": {"message": message}}), provider, headers)
    return ApiError(502, f"The provider `{provider}` failed: {said}", code="upstream_error")


async def forward_litellm(exchange: Exchange, call: Call, run_headers: dict[str, str]) -> Outcome:
    route, request = call.route, call.request
    params = request.litellm_params()
    if route.guarded and route.api_base:
        # Refused at once, with a clear message, when the org's base is internal; the guard below checks every
        # connection litellm then makes (a redirect, a second DNS answer, a provider's default endpoint).
        try:
            await asyncio.to_thread(outbound.check_url, route.api_base)
        except outbound.OutboundForbidden as exc:
            return refused(exc, route.provider)
    with outbound.guarded_connections() if route.guarded else contextlib.nullcontext():
        return await _litellm_call(exchange, call, run_headers, params)


async def _litellm_call(exchange: Exchange, call: Call, run_headers: dict[str, str], params: dict[str, Any]) -> Outcome:
    route, request = call.route, call.request
    try:
        response = await litellm.acompletion(
            model=route.model,
            messages=request.body["messages"],
            api_key=route.api_key,
            api_base=route.api_base,
            timeout=settings.JETTY_GATEWAY_TIMEOUT_S,
            max_retries=0,
            **params,
        )
        if not request.stream:
            call.first_byte = time.time()
            completion = response.model_dump()
            await exchange.respond(200, json.dumps(completion).encode(), run_headers)
            return Outcome(completion, 200)
        accumulator = StreamAccumulator()
        started = False
        async for chunk in response:
            data = chunk.model_dump(exclude_none=True)
            accumulator.feed(data)
            if not started:
                call.first_byte = time.time()
                await exchange.start_stream(run_headers)
                started = True
            if not request.include_usage and data.get("usage") and not data.get("choices"):
                continue
            await exchange.stream(b"data: " + json.dumps(data).encode() + b"\n\n")
        if not started:
            await exchange.start_stream(run_headers)
        await exchange.stream(b"data: [DONE]\n\n")
        await exchange.end_stream()
        return Outcome(accumulator.completion(), 200)
    except outbound.OutboundForbidden as exc:
        return refused(exc, route.provider)
    except (openai.OpenAIError, litellm.UnsupportedParamsError) as exc:
        reason = outbound.refusal_in(exc)
        if reason is not None:
            return refused(outbound.OutboundForbidden(reason), route.provider)
        error = litellm_error(exc, route.provider)
        return Outcome(None, error.status, error)
