"""``POST /v1/chat/completions`` (passthrough mode) and ``GET /v1/models``, at the ASGI level."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings

from orgs.api_errors import ApiError, parse_json_body
from orgs.auth import bearer_value, principal_for

from ..models import Job
from . import agent_mode, routing
from .calls import Call, ChatRequest
from .exchange import ClientGone, Exchange
from .recorder import record_run_model_call, recorder
from .upstream import forward_direct, forward_litellm

logger = logging.getLogger(__name__)

_resolve = sync_to_async(routing.resolve, thread_sensitive=True)
_cache = routing.ResolutionCache(settings.JETTY_AUTH_CACHE_S)


async def resolve(token: str, request: ChatRequest) -> tuple[routing.Caller, routing.Route]:
    key = (token, request.model, request.collection)
    found = _cache.get(key)
    if found is None:
        found = await _resolve(token, request.model, request.collection, settings.JETTY_GATEWAY_DIRECT)
        if found[0].principal.run_id is None:  # a run token must die with its run: never cached
            _cache.put(key, found)
    return found


def _token(exchange: Exchange) -> str:
    token = bearer_value(exchange.headers.get("authorization"))
    if token is None:
        raise ApiError(
            401, "You didn't provide an API key. Send it as `Authorization: Bearer <token>`.", code="invalid_api_key"
        )
    return token


async def chat_completions(exchange: Exchange) -> None:
    try:
        raw = await exchange.body(settings.JETTY_MAX_BODY_BYTES)
        token = _token(exchange)
        request = ChatRequest.parse(parse_json_body(raw))
        caller, route = await resolve(token, request)
    except ApiError as error:
        await exchange.respond_error(error)
        return
    except ClientGone:
        return

    if request.agent_mode:
        await agent_mode.handle(exchange, request, caller)
        return
    call = Call(request=request, caller=caller, route=route)
    lines = exchange.headers.get("x-jetty-agent-lines", "")
    call.agent_lines = int(lines) if lines.isdigit() else None
    run_id = caller.principal.run_id
    run_headers = {"x-jetty-run-id": call.public_id} if run_id is None else {}
    # A sandbox's call is stored in its run before the agent sees the answer, so the trajectory stays in order.
    exchange.hold = run_id is not None and not request.stream
    forward = forward_direct if route.direct else forward_litellm
    try:
        outcome = await forward(exchange, call, run_headers)
    except ClientGone:
        await _store(call, None, status_code=499, error="The client disconnected", cancelled=True)
        return
    except Exception as exc:
        logger.exception("gateway call %s failed", call.public_id)
        await _store(call, None, status_code=500, error=f"Platform error: {exc}", error_kind="platform")
        exchange.hold = False
        if not exchange.started:
            await exchange.respond_error(ApiError(500, "Internal error; it has been logged", code="internal_error"))
        return

    failure = outcome.error
    if failure is None:
        await _store(call, outcome.response, status_code=outcome.status_code)
        await exchange.release()
        return
    await _store(call, outcome.response, status_code=failure.status, error=failure.message, error_kind="upstream")
    exchange.hold = False
    if exchange.started:  # the stream had begun: the error travels as a last event
        try:
            await exchange.stream(b"data: " + json.dumps(failure.body()).encode() + b"\n\n")
            await exchange.end_stream()
        except ClientGone:
            pass
    else:
        await exchange.respond_json(failure.status, failure.body(), {**failure.headers, **run_headers})


_record_run_model_call = sync_to_async(record_run_model_call, thread_sensitive=True)


async def _store(
    call: Call,
    response: dict | None,
    *,
    status_code: int,
    error: str = "",
    error_kind: str = "",
    cancelled: bool = False,
) -> None:
    """A passthrough call becomes its own run (spooled, off the critical path); a sandbox's joins its run."""
    run_id = call.caller.principal.run_id
    if run_id is None:
        recorder().submit(
            call.record(response, status_code=status_code, error=error, error_kind=error_kind, cancelled=cancelled)
        )
    else:
        await _after_agent_lines(run_id, call.agent_lines)
        await _record_run_model_call(run_id, call.model_call_event(response, status_code=status_code, error=error))


_lines_recorded = sync_to_async(
    lambda run_id: Job.objects.filter(run_id=run_id).values_list("lines_recorded", flat=True).first() or 0,
    thread_sensitive=False,
)


async def _after_agent_lines(run_id: int, lines: int | None, limit_s: float = 3.0) -> None:
    """Keep the trajectory in order: an agent that says how many lines it printed before this call gets its
    model call recorded only once the worker has recorded those lines (they happened first)."""
    deadline = time.monotonic() + limit_s
    while lines and await _lines_recorded(run_id) < lines and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


_principal = sync_to_async(principal_for, thread_sensitive=True)
_models_for = sync_to_async(routing.models_for, thread_sensitive=True)


async def models(exchange: Exchange) -> None:
    try:
        principal = await _principal(_token(exchange))
        if principal is None:
            raise ApiError(401, "Incorrect API key provided, or it was revoked or has expired.", code="invalid_api_key")
        listing = await _models_for(principal)
        path = exchange.scope["path"]
        if path.startswith("/v1/models/"):
            wanted = path.removeprefix("/v1/models/")
            found = next((m for m in listing if m["id"] == wanted), None)
            if found is None:
                raise ApiError(404, f"The model `{wanted}` does not exist", code="model_not_found", param="model")
            await exchange.respond_json(200, found)
            return
        await exchange.respond_json(200, {"object": "list", "data": listing})
    except ApiError as error:
        await exchange.respond_error(error)
