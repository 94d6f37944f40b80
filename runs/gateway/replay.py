"""The gateway's side of replays and forks (``runs.replay``): answer a call from the recording, in whatever wire
and streaming mode the agent asked for, exactly as a provider's answer would travel."""

from __future__ import annotations

import json
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from orgs.api_errors import ApiError

from .. import replay
from .calls import Call, redact, redact_request
from .exchange import Exchange
from .upstream import Outcome

PLAN_CACHE_S = 30.0
_plans: dict[int, tuple[float, replay.Plan | None]] = {}


def _plan(run_id: int) -> replay.Plan | None:
    found = _plans.get(run_id)
    if found is not None and time.monotonic() - found[0] < PLAN_CACHE_S:
        return found[1]
    plan = replay.plan_for(run_id)
    _plans[run_id] = (time.monotonic(), plan)
    if len(_plans) > 1000:
        _plans.pop(next(iter(_plans)))
    return plan


def _decide(run_id: int, position: int, request: dict[str, Any]) -> tuple[str, Any]:
    """("live", None), ("replay", the recorded call) or ("stop", why) for the run's model call at ``position``
    (0-based, counted by the gateway as calls arrive: ``runs.limits.take_model_call``; the stored calls lag behind,
    placed in the trajectory by the worker in batches)."""
    plan = _plan(run_id)
    if plan is None:
        return "live", None
    if plan.until is not None and position >= plan.until:
        return "live", None
    where = f"model call {position + 1} of the replay of {plan.source}"
    if position >= len(plan.calls):
        report = f"Replay stopped at {where}: the recording has only {len(plan.calls)} model call(s)"
        replay.stop(run_id, report)
        return "stop", report
    recorded = plan.calls[position]
    difference = replay.first_difference(replay.fingerprint(recorded.request), replay.fingerprint(request))
    if difference is None and recorded.completion is None:
        difference = "the recorded call was forwarded in the provider's own format, which cannot be replayed"
    if difference is not None:
        report = f"Replay stopped at {where} (recorded as event #{recorded.seq}): {difference}"
        replay.stop(run_id, report)
        return "stop", report
    return "replay", recorded


decide = sync_to_async(_decide, thread_sensitive=True)


async def plan_source(run_id: int) -> str:
    found = _plans.get(run_id)
    return found[1].source if found is not None and found[1] is not None else ""


def request_as_recorded(call: Call) -> dict[str, Any]:
    """The request as the recorder stores it, so it compares like with like."""
    if call.wire is not None and call.wire_body is not None:
        return redact(call.wire_body, settings.JETTY_REDACT_MIN_CHARS)
    return redact_request(call.request.body)


def chunks(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole completion as the chunks a provider would have streamed."""
    base = {"id": completion.get("id") or "chatcmpl-replay", "object": "chat.completion.chunk"}
    base["model"] = completion.get("model") or ""
    base["created"] = int(time.time())
    out = []
    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant"}
        if message.get("content"):
            delta["content"] = message["content"]
        out.append({**base, "choices": [{"index": index, "delta": delta}]})
        for position, tool_call in enumerate(message.get("tool_calls") or []):
            piece = {"index": position, "id": tool_call.get("id"), "type": "function"}
            piece["function"] = tool_call.get("function") or {}
            out.append({**base, "choices": [{"index": index, "delta": {"tool_calls": [piece]}}]})
        out.append({**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    if completion.get("usage"):
        out.append({**base, "choices": [], "usage": completion["usage"]})
    return out


async def answer_from_recording(exchange: Exchange, call: Call, recorded: replay.Recorded) -> Outcome:
    """Answer the client with the recorded completion, as forward_litellm answers with a provider's."""
    completion = dict(recorded.completion or {})
    request = call.request
    call.first_byte = time.time()
    if not request.stream:
        await exchange.respond(200, json.dumps(completion).encode(), {})
        return Outcome(completion, 200)
    await exchange.start_stream({})
    for chunk in chunks(completion):
        if not request.include_usage and chunk.get("usage") and not chunk.get("choices"):
            continue
        await exchange.stream(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    await exchange.stream(b"data: [DONE]\n\n")
    await exchange.end_stream()
    return Outcome(completion, 200)


def mismatch(report: str) -> ApiError:
    # 400, not 409: agents retry conflicts; a request that does not match the recording will not match again.
    return ApiError(400, report, code="replay_mismatch")
