"""Agent mode of ``POST /v1/chat/completions`` (``jetty.runbook: true``): start a durable run, then answer
synchronously, as an SSE stream of its events, or at once with 202."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from orgs import outbound
from orgs.api_errors import ApiError, holds_nul
from orgs.models import NAME_PATTERN, NAME_RULE
from trajectories.actions import run_group
from trajectories.models import FINAL_STATUSES, Event, Run

from .. import contract
from ..actions import AgentRequest
from ..agent_tasks import TaskTarget, start_agent_mode_run
from ..agents import agent_for, agent_names
from ..limits import check_limits
from ..results import final_answer, run_summary
from .calls import CHAT_TASK, ChatRequest
from .exchange import ClientGone, Exchange
from .routing import Caller

SNAPSHOTS = ("general", "python", "browser")
POLL_S = 0.1
KEEPALIVE_S = 10.0
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.I)
PLACEHOLDER = re.compile(r"{{\s*([A-Za-z_][\w.]*)\s*}}")


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)


def render_runbook(runbook: str, variables: dict[str, Any], param: str = "jetty.template_variables") -> str:
    """Fill ``{{name}}`` placeholders server-side; ``{{results_dir}}`` is /app/results. Secrets come later."""
    values = {"results_dir": "/app/results", **{k: str(v) for k, v in variables.items()}}
    wanted = {name for name in PLACEHOLDER.findall(runbook) if not name.startswith("secrets.")}
    missing = sorted(wanted - set(values))
    if missing:
        raise _bad(f"The runbook uses template variables with no value: {', '.join(missing)}", param)
    unknown = sorted(set(variables) - wanted)
    if unknown:
        raise _bad(f"Unknown template variables (the runbook does not use them): {', '.join(unknown)}", param)
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), runbook)


def parse(request: ChatRequest, caller: Caller) -> AgentRequest:
    if holds_nul(request.body):  # a passthrough call may carry them; a run's stored runbook and settings cannot
        raise _bad("An agent run's messages and `jetty` block must not hold NUL characters (\\u0000)", "messages")
    jetty = request.body.get("jetty") or {}
    messages = request.body["messages"]
    runbook = runbook_sent(request)
    instruction = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    agent = jetty.get("agent")
    if agent is not None and (not isinstance(agent, str) or agent not in agent_names()):
        raise _bad(f"Unknown agent {agent!r}; available: {', '.join(agent_names())}", "jetty.agent")
    chosen = agent_for(agent, request.model)
    assert chosen is not None
    snapshot = jetty.get("snapshot", "general")
    if snapshot not in SNAPSHOTS:
        raise _bad(f"Unknown snapshot {snapshot!r}; available: {', '.join(SNAPSHOTS)}", "jetty.snapshot")
    variables = jetty.get("template_variables") or {}
    if not isinstance(variables, dict):
        raise _bad("`jetty.template_variables` must be an object", "jetty.template_variables")
    timeout = jetty.get("timeout_s", 1800)
    if type(timeout) is not int or not 1 <= timeout <= 86_400:
        raise _bad("`jetty.timeout_s` must be an integer number of seconds from 1 to 86400", "jetty.timeout_s")
    network = jetty.get("network", "on")
    if network not in ("on", "off"):
        raise _bad("`jetty.network` must be `on` or `off`", "jetty.network")
    try:
        limits = check_limits(jetty.get("limits"))
    except ValueError as exc:
        raise _bad(str(exc).replace("`limits", "`jetty.limits"), "jetty.limits") from None
    if jetty.get("runbook_url"):
        raise _bad("`jetty.runbook_url` is not available on this server yet", "jetty.runbook_url")
    file_paths, file_ids = jetty.get("file_paths") or [], jetty.get("files") or []
    for name, value in (("file_paths", file_paths), ("files", file_ids)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 1000:
            raise _bad(f"`jetty.{name}` must be an array of strings", f"jetty.{name}")
    webhook_url = jetty.get("webhook_url") or ""
    webhook_secret = jetty.get("webhook_secret") or ""
    if webhook_url:
        if not isinstance(webhook_url, str) or not URL.match(webhook_url) or len(webhook_url) > 2000:
            raise _bad("`jetty.webhook_url` must be an http(s) URL", "jetty.webhook_url")
        if not isinstance(webhook_secret, str) or not webhook_secret:
            raise _bad(
                "`jetty.webhook_secret` is required with `jetty.webhook_url` (it signs each delivery)",
                "jetty.webhook_secret",
            )
    contract_mode = contract.parse_mode(jetty.get("contract"), runbook)
    if contract_mode is None:
        whose = "`jetty.contract`" if "contract" in jetty else "The runbook's frontmatter `contract`"
        raise _bad(f"{whose} must be `enforce` (the default) or `report`", "jetty.contract")
    key = jetty.get("idempotency_key") or ""
    if not isinstance(key, str) or len(key) > 200:
        raise _bad("`jetty.idempotency_key` must be a string of at most 200 characters", "jetty.idempotency_key")
    return AgentRequest(
        model=request.model,
        runbook=render_runbook(runbook, variables),
        instruction=instruction,
        task=request.task if request.task != CHAT_TASK else "_agent",
        agent=chosen.name,
        snapshot=snapshot,
        params=variables,
        timeout_s=timeout,
        network=network == "on",
        limits=limits,
        idempotency_key=key,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        file_paths=file_paths,
        file_ids=file_ids,
        collection_id=caller.collection.pk if caller.collection else None,
        contract_mode=contract_mode,
    )


def runbook_sent(request: ChatRequest) -> str:
    """The runbook as the client sent it: the system (or developer) message."""
    messages = request.body["messages"]
    runbook = next((m.get("content") for m in messages if m.get("role") in ("system", "developer")), None)
    if not isinstance(runbook, str) or not runbook.strip():
        raise _bad("Agent mode needs the runbook as the system message", "messages")
    return runbook


def task_target(request: ChatRequest, caller: Caller) -> TaskTarget | None:
    """What the call keeps: its collection if it is new, and its ``jetty.task`` in its collection (named, or its
    token's) as a stored task whose newest version is the runbook sent. None when there is nothing to keep."""
    collection = caller.collection.name if caller.collection is not None else caller.new_collection
    task = request.task if collection and "task" in (request.body.get("jetty") or {}) else None
    if task is not None and not NAME_PATTERN.match(task):
        raise _bad(f"`jetty.task` names a task of collection `{collection}`: it must be {NAME_RULE}", "jetty.task")
    if task is None and not caller.new_collection:
        return None
    return TaskTarget(collection=collection, task=task, runbook=runbook_sent(request))


def _load(run_id: int) -> Run:
    return Run.objects.select_related("job", "collection").prefetch_related("artifacts").get(pk=run_id)


def _events_after(run_id: int, after: int) -> list[Event]:
    return list(Event.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:200])


_start = sync_to_async(start_agent_mode_run, thread_sensitive=True)
_load_async = sync_to_async(_load, thread_sensitive=True)
_events_async = sync_to_async(_events_after, thread_sensitive=True)
_status = sync_to_async(lambda run_id: Run.objects.values_list("status", flat=True).get(pk=run_id))


def completion(run: Run) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{run.public_id}",
        "object": "chat.completion",
        "created": int(run.created.timestamp()),
        "model": run.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": final_answer(run)},
                "finish_reason": "stop" if run.status == "succeeded" else run.status,
            }
        ],
        "usage": {
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "total_tokens": run.total_tokens,
        },
        "jetty": run_summary(run),
    }


def chunk(run: Run, delta: dict[str, Any], jetty: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": f"chatcmpl-{run.public_id}",
        "object": "chat.completion.chunk",
        "created": int(run.created.timestamp()),
        "model": run.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "jetty": jetty,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def event_chunk(run: Run, event: Event) -> bytes:
    payload = event.payload
    delta: dict[str, Any] = {}
    if event.kind == "agent.message" and payload.get("content"):
        delta = {"role": "assistant", "content": payload["content"] + "\n"}
    return chunk(run, delta, {"event": event.kind, "seq": event.seq, "payload": payload})


async def handle(exchange: Exchange, request: ChatRequest, caller: Caller) -> None:
    try:
        agent_request = parse(request, caller)
        target = task_target(request, caller)
        if agent_request.webhook_url:  # resolving the name blocks: off the event loop
            await asyncio.to_thread(outbound.require_url, agent_request.webhook_url, "jetty.webhook_url")
    except ApiError as error:
        await exchange.respond_error(error)
        return
    try:
        run, _created = await _start(caller.principal, agent_request, target)
    except ApiError as error:
        await exchange.respond_error(error)
        return
    headers = {"x-jetty-run-id": run.public_id}
    jetty = request.body.get("jetty") or {}
    if jetty.get("async") or agent_request.webhook_url:
        run = await _load_async(run.pk)
        await exchange.respond_json(
            202, {"id": run.public_id, "object": "jetty.run", "status": run.status, "jetty": run_summary(run)}, headers
        )
        return
    deadline = time.monotonic() + agent_request.timeout_s + 120
    async with RunListener(run.pk) as changed:
        await _answer(exchange, request, run, headers, deadline, changed)


class RunListener:
    """Wakes a waiting request when its run changes (through the channel layer), or after POLL_S anyway."""

    def __init__(self, run_id: int):
        self.group = run_group(run_id)
        self.layer = get_channel_layer()
        self.channel: str | None = None

    async def __aenter__(self):
        if self.layer is not None:
            try:
                self.channel = await self.layer.new_channel()
                await self.layer.group_add(self.group, self.channel)
            except Exception:  # no shared layer (Redis down): polling alone still answers
                self.channel = None
        return self.wait

    async def wait(self) -> None:
        if self.channel is None or self.layer is None:
            await asyncio.sleep(POLL_S)
            return
        try:
            await asyncio.wait_for(self.layer.receive(self.channel), POLL_S)
        except TimeoutError:
            pass
        except Exception:
            await asyncio.sleep(POLL_S)

    async def __aexit__(self, *exc) -> None:
        if self.channel is not None and self.layer is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                pass


async def _answer(
    exchange: Exchange, request: ChatRequest, run: Run, headers: dict[str, str], deadline: float, changed
) -> None:
    if not request.stream:
        while await _status(run.pk) not in FINAL_STATUSES and time.monotonic() < deadline:
            await changed()
        run = await _load_async(run.pk)
        await exchange.respond_json(200, completion(run), headers)
        return
    await exchange.start_stream(headers)
    after, quiet = 0, time.monotonic()
    try:
        while time.monotonic() < deadline:
            events = await _events_async(run.pk, after)
            for event in events:
                await exchange.stream(event_chunk(run, event))
                after = event.seq
            if events:
                quiet = time.monotonic()
            elif await _status(run.pk) in FINAL_STATUSES:
                if not await _events_async(run.pk, after):
                    break
            else:
                if time.monotonic() - quiet > KEEPALIVE_S:
                    await exchange.stream(b": keep-alive\n\n")
                    quiet = time.monotonic()
                await changed()
        run = await _load_async(run.pk)
        await exchange.stream(chunk(run, {}, {"event": "summary", **run_summary(run)}, finish="stop"))
        await exchange.stream(b"data: [DONE]\n\n")
        await exchange.end_stream()
    except ClientGone:
        return  # the run goes on: it is durable and its client may come back for it
