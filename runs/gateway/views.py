"""``POST /v1/chat/completions`` (passthrough mode) and ``GET /v1/models``, at the ASGI level."""

from __future__ import annotations

import logging

import litellm
from asgiref.sync import sync_to_async
from django.conf import settings

from orgs.api_errors import ApiError, parse_json_body
from orgs.auth import Principal, bearer_value

from ..limits import take_model_call
from . import agent_mode, replay, routing
from .calls import Call, ChatRequest
from .exchange import ClientGone, Exchange, WireExchange
from .native import forward_native, native_for
from .recorder import hold_run_model_call, recorder
from .upstream import forward_direct, forward_litellm

logger = logging.getLogger(__name__)

_resolve = sync_to_async(routing.resolve, thread_sensitive=True)
_cache = routing.ResolutionCache(settings.JETTY_AUTH_CACHE_S)
_admit = sync_to_async(routing.admit, thread_sensitive=True)
_take_model_call = sync_to_async(take_model_call, thread_sensitive=True)


async def admit(principal: Principal) -> None:
    """Count the request against its token's rate limit (ApiError 429 over it). Every gateway request passes here
    once its caller is known, cached resolution or not."""
    if principal.run_id is not None and settings.JETTY_RUN_RATE_LIMIT_REQUESTS > 0:
        await _admit(principal)
    elif principal.token is not None and settings.JETTY_RATE_LIMIT_REQUESTS > 0:
        await _admit(principal)


async def resolve(token: str, request: ChatRequest) -> tuple[routing.Caller, routing.Route]:
    key = (token, request.model, request.collection)
    found = _cache.get(key)
    if found is None:
        found = await _resolve(
            token, request.model, request.collection, settings.JETTY_GATEWAY_DIRECT, request.agent_mode
        )
        # A run token must die with its run, and a collection about to be made must not pass for one that exists
        # (a passthrough call naming it is a 404): neither is cached.
        if found[0].principal.run_id is None and not found[0].new_collection:
            _cache.put(key, found)
    await admit(found[0].principal)
    return found


def _token(exchange: Exchange) -> str:
    """The caller's token, wherever its client puts it: OpenAI's bearer header, Anthropic's ``x-api-key``,
    Gemini's ``x-goog-api-key`` or ``?key=``."""
    headers = exchange.headers
    token = (
        bearer_value(headers.get("authorization"))
        or headers.get("x-api-key")
        or headers.get("x-goog-api-key")
        or exchange.query.get("key")
    )
    if not token:
        raise ApiError(
            401, "You didn't provide an API key. Send it as `Authorization: Bearer <token>`.", code="invalid_api_key"
        )
    return token.strip()


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
        if caller.principal.run_id is not None:  # a sandbox starting runs would spawn runs without bound
            message = "A run's token can only call models; it cannot start agent runs"
            await exchange.respond_error(ApiError(403, message, code="run_token_forbidden", param="jetty.runbook"))
            return
        if not routing.has_credentials(route):  # an agent would only retry a provider that cannot answer
            missing = f"No API key for provider `{route.provider}` is configured for this organisation"
            await exchange.respond_error(ApiError(400, missing, code="provider_not_configured", param="model"))
            return
        await agent_mode.handle(exchange, request, caller)
        return
    await forward_and_store(exchange, Call(request=request, caller=caller, route=route))


async def wire_call(exchange: WireExchange, requested_model: str | None, stream: bool | None = None) -> None:
    """A model call in another wire format (Anthropic Messages, OpenAI Responses, Gemini): translated to chat
    completions on the way in, served like any other call, translated back on the way out."""
    wire = exchange.wire
    try:
        raw = await exchange.body(settings.JETTY_MAX_BODY_BYTES)
        token = _token(exchange)
        body = parse_json_body(raw)
        model = requested_model or body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ApiError(400, "`model` is required and must be a string", code="invalid_value", param="model")
        chat = wire.to_chat(body, model)
        if stream is not None:
            chat["stream"] = stream
        if chat.get("stream"):
            chat["stream_options"] = {"include_usage": True}  # every wire's stream ends with the usage
        request = ChatRequest.parse(chat)
        caller, route = await resolve(token, request)
    except ApiError as error:
        await exchange.respond_error(error)
        return
    except ClientGone:
        return
    call = Call(request=request, caller=caller, route=route, wire=wire, wire_body=body)
    call.native = native_for(wire.name, route.provider)
    if call.native is None:  # translated; a provider that speaks the client's wire gets the request as sent
        exchange.begin(request.stream, route.model)
    await forward_and_store(exchange, call)


async def forward_and_store(exchange: Exchange, call: Call) -> None:
    """Forward a resolved call to its provider, answer the client, and record the call."""
    run_id = call.caller.principal.run_id
    run_headers = {"x-jetty-run-id": call.public_id} if run_id is None else {}
    # A sandbox's call is stored for its run before the agent sees the answer (or, streaming, the stream's end):
    # whatever the agent does because of the answer comes after the call in the trajectory.
    exchange.hold = run_id is not None and not call.request.stream
    recorded = None
    if run_id is not None:  # counted against the run's budget; a replay or a fork answers from the recording
        try:
            position = await _take_model_call(run_id)
        except ApiError as error:
            exchange.hold = False
            await exchange.respond_error(error)
            return
        verdict, found = await replay.decide(run_id, position, replay.request_as_recorded(call))
        if verdict == "stop":
            exchange.hold = False
            await exchange.respond_error(replay.mismatch(found))
            return
        if verdict == "replay":
            recorded = found
            call.replayed = {"run": (await replay.plan_source(run_id)), "seq": found.seq, "index": found.index}
            if call.native is not None:  # the recording is in chat completions: translate it to the agent's wire
                assert isinstance(exchange, WireExchange)
                call.native = None
                exchange.begin(call.request.stream, call.route.model)
    try:
        if recorded is not None:
            outcome = await replay.answer_from_recording(exchange, call, recorded)
        elif call.native is not None:
            assert isinstance(exchange, WireExchange)
            outcome = await forward_native(exchange, call, run_headers)
        else:
            forward = forward_direct if call.route.direct else forward_litellm
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
        try:
            await exchange.release()
        except ClientGone:
            pass
        return
    await _store(call, outcome.response, status_code=failure.status, error=failure.message, error_kind="upstream")
    exchange.hold = False
    if exchange.started:  # the stream had begun: the error travels as a last event
        try:
            await exchange.stream_error(failure)
        except ClientGone:
            pass
    else:
        await exchange.respond_error(failure, run_headers)


_hold_run_model_call = sync_to_async(hold_run_model_call, thread_sensitive=True)


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
        await _hold_run_model_call(run_id, call.model_call_event(response, status_code=status_code, error=error))


_principal = sync_to_async(routing.any_principal, thread_sensitive=True)
_models_for = sync_to_async(routing.models_for, thread_sensitive=True)


async def models(exchange: Exchange) -> None:
    try:
        principal = await _principal(_token(exchange))
        if principal is None:
            raise ApiError(401, "Incorrect API key provided, or it was revoked or has expired.", code="invalid_api_key")
        await admit(principal)
        listing = await _models_for(principal)
        path = exchange.scope["path"]
        if path.startswith("/v1/models/"):
            wanted = path.removeprefix("/v1/models/")
            found = next((m for m in listing if m["id"] == wanted), None)
            if found is None:
                raise ApiError(404, f"The model `{wanted}` does not exist", code="model_not_found", param="model")
            await exchange.respond_json(200, found)
            return
        if path.startswith("/v1beta/"):
            gemini_models = [{"name": f"models/{m['id']}", "displayName": m["id"]} for m in listing]
            await exchange.respond_json(200, {"models": gemini_models})
        elif "anthropic-version" in exchange.headers:  # Claude Code and Anthropic's SDKs list models this way
            data = [
                {"type": "model", "id": m["id"], "display_name": m["id"], "created_at": "1970-01-01T00:00:00Z"}
                for m in listing
            ]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            await exchange.respond_json(200, {"data": data, "has_more": False, "first_id": first, "last_id": last})
        else:
            await exchange.respond_json(200, {"object": "list", "data": listing})
    except ApiError as error:
        await exchange.respond_error(error)


async def count_tokens(exchange: WireExchange, requested_model: str | None) -> None:
    """What Claude Code and Gemini CLI ask before a call: the prompt's size, counted by litellm's tokenizer for
    the model the call would go to."""
    wire = exchange.wire
    try:
        raw = await exchange.body(settings.JETTY_MAX_BODY_BYTES)
        token = _token(exchange)
        body = parse_json_body(raw)
        if wire.name == "gemini" and isinstance(body.get("generateContentRequest"), dict):
            body = body["generateContentRequest"]
        model = requested_model or body.get("model") or ""
        request = ChatRequest.parse(wire.to_chat(body, model))
        _caller, route = await resolve(token, request)
    except ApiError as error:
        await exchange.respond_error(error)
        return
    except ClientGone:
        return
    count = litellm.token_counter(model=route.model, messages=request.body["messages"], tools=request.body.get("tools"))
    answer = {"totalTokens": count} if wire.name == "gemini" else {"input_tokens": count}
    await exchange.respond_json(200, answer)


async def gemini(exchange: WireExchange) -> None:
    """``/v1beta/models/<model>:<method>`` (or ``/v1/…``): Gemini's calls name the model and method in the path."""
    model, _, method = exchange.scope["path"].split("/models/", 1)[1].rpartition(":")
    if method == "generateContent":
        await wire_call(exchange, model, stream=False)
    elif method == "streamGenerateContent":
        await wire_call(exchange, model, stream=True)
    elif method == "countTokens":
        await count_tokens(exchange, model)
    else:
        await exchange.respond_error(ApiError(404, f"Unknown method `{method}`", code="not_found"))
