"""Replay and fork: run a recorded agent run again, with the model gateway answering from the recording.

A replay is a new run of the source's runbook, files, snapshot and agent in a fresh sandbox. Its model calls are
answered in order from the source's recorded ``model.call`` events instead of a provider, each one checked first:
the request the agent sends now must match the one it sent then (``fingerprint``: the conversation's text with the
bits that change from run to run by nature, such as times and random ids, masked). At the first mismatch the replay
stops and says which call and what differs. A fork replays only the first ``at`` calls and then goes on live with
a model of its own, so two models can be compared from the same state; the agent reaches that state by doing
again what it did, with the same answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from orgs.api_errors import ApiError
from orgs.auth import Principal
from trajectories.models import FINAL_STATUSES, Run, RunKind
from trajectories.schemas import read_model_call

from .actions import AgentRequest, start_agent_run
from .models import Job

VOLATILE = [
    # Ids a CLI makes up for its own bookkeeping and shows the model (Codex numbers each command's output).
    (re.compile(r"\b(Chunk ID|session[ _]id|request[ _]id|PGID|PID):[ \t]*\S+", re.I), r"\1: <id>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"), "<time>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I), "<hex>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b"), "<duration>"),
    (re.compile(r"[ \t]+"), " "),
]
CONVERSATION_KEYS = ("system", "instructions", "systemInstruction", "messages", "input", "contents")


def _lines(value: Any, path: str, out: list[str], unordered: bool = False) -> None:
    if isinstance(value, dict):
        # A system prompt's lines are compared as a set: CLIs list their skills and tools in no fixed order.
        unordered = unordered or value.get("role") in ("system", "developer")
        for key in sorted(value):
            if key in ("id", "tool_call_id", "call_id", "tool_use_id", "cache_control", "signature"):
                continue  # ids a client makes up per call
            _lines(value[key], f"{path}.{key}", out, unordered)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _lines(item, f"{path}[{i}]", out, unordered)
    elif isinstance(value, str):
        text = value
        for pattern, mask in VOLATILE:
            text = pattern.sub(mask, text)
        if unordered:
            text = "\n".join(sorted(line.strip() for line in text.splitlines() if line.strip()))
        out.append(f"{path}: {text.strip()}")
    elif value is not None:
        out.append(f"{path}: {json.dumps(value)}")


def fingerprint(request: dict[str, Any]) -> list[str]:
    """What a request asks, as comparable lines: the conversation (system prompt, messages, tool calls and
    results) and the tools offered by name, with times, random ids and durations masked."""
    out: list[str] = []
    for key in CONVERSATION_KEYS:
        if key in request:
            _lines(request[key], key, out, unordered=key in ("system", "instructions", "systemInstruction"))
    tools = request.get("tools") or []
    names = sorted(
        str(t.get("name") or (t.get("function") or {}).get("name") or t.get("type") or "")
        for t in tools
        if isinstance(t, dict)
    )
    out.append(f"tools: {', '.join(names)}")
    return out


def first_difference(recorded: list[str], now: list[str]) -> str | None:
    """None when the two fingerprints agree, else where they first part, in words."""
    for a, b in zip(recorded, now, strict=False):
        if a != b:
            path_a, _, text_a = a.partition(": ")
            path_b, _, text_b = b.partition(": ")
            if path_a != path_b:
                return f"the request's shape differs at {path_b} (recorded {path_a})"
            at = next(
                (i for i, (x, y) in enumerate(zip(text_a, text_b, strict=False)) if x != y),
                min(len(text_a), len(text_b)),
            )
            start = max(0, at - 60)
            return f"{path_a} differs: recorded «…{text_a[start : at + 80]}» but now «…{text_b[start : at + 80]}»"
    if len(recorded) != len(now):
        longer, which = (recorded, "recorded") if len(recorded) > len(now) else (now, "new")
        return f"the {which} request has more: {longer[min(len(recorded), len(now))][:200]}"
    return None


@dataclass(frozen=True)
class Recorded:
    index: int  # 0-based position among the source's model calls
    seq: int
    request: dict[str, Any]
    completion: dict[str, Any] | None  # in OpenAI chat completions' shape
    model: str


@dataclass(frozen=True)
class Plan:
    """How a replay or fork run's model calls are answered."""

    run_id: int
    source: str  # the source run's public id
    until: int | None  # replay this many calls; None: all of them
    calls: tuple[Recorded, ...]


def recorded_calls(source: Run) -> tuple[Recorded, ...]:
    events = source.events.filter(kind="model.call").order_by("seq").only("seq", "payload", "model")
    calls = []
    for index, event in enumerate(events.iterator()):
        call = read_model_call(event.payload)
        calls.append(Recorded(index, event.seq, call.request or {}, call.completion(), event.model))
    return tuple(calls)


def plan_for(run_id: int) -> Plan | None:
    """The replay plan of a run, or None for a run that is not a replay or fork."""
    run = Run.objects.filter(pk=run_id).only("metadata").first()
    spec = (run.metadata or {}).get("replay") if run is not None else None
    if not spec:
        return None
    source = Run.objects.filter(pk=spec["source_id"]).first()
    if source is None:
        return Plan(run_id, spec.get("source", ""), 0, ())
    return Plan(run_id, source.public_id, spec.get("until"), recorded_calls(source))


def stop(run_id: int, report: str) -> None:
    """End a replay that has drifted from its recording: the worker kills the sandbox and fails the run with why."""
    with transaction.atomic():
        Job.objects.filter(run_id=run_id).update(cancel_requested=True, stop_reason=report[:2000])


def start_replay(
    principal: Principal,
    source: Run,
    *,
    at: int | None = None,
    model: str | None = None,
    runbook: str | None = None,
) -> Run:
    """A replay of ``source`` (``at`` None) or a fork that replays its first ``at`` model calls and then goes on
    live with ``model`` (the source's own model when not given). ``runbook`` replaces the mission (a replay
    with another runbook stops where the agent's requests part from the recording)."""
    if source.kind != RunKind.AGENT:
        raise ApiError(400, "Only agent runs can be replayed or forked", code="invalid_value", param="run")
    if source.status not in FINAL_STATUSES:
        raise ApiError(409, "The run has not finished yet", code="conflict")
    job = Job.objects.filter(run=source).first()
    if job is None:
        raise ApiError(400, "This run has no recorded request to replay", code="invalid_value", param="run")
    total = source.events.filter(kind="model.call").count()
    if at is not None and not 0 <= at <= total:
        raise ApiError(400, f"`at` must be from 0 to {total}, the run's model calls", code="invalid_value", param="at")
    if at is None and model and model != source.model:
        raise ApiError(
            400, "A replay keeps the run's model; fork it to use another", code="invalid_value", param="model"
        )
    if runbook is not None and not runbook.strip():
        raise ApiError(400, "`runbook` must not be empty", code="invalid_value", param="runbook")
    request = AgentRequest(
        model=model or source.model,
        runbook=runbook if runbook is not None else job.runbook,
        instruction=job.instruction,
        task=source.task,
        agent=source.agent,
        snapshot=source.snapshot,
        params=job.params,
        timeout_s=job.timeout_s,
        network=job.network,
        limits=dict(job.limits),
        collection_id=source.collection_id,
        file_paths=list(job.file_paths),
        env=dict(job.env),
        contract_mode=job.contract_mode,
    )
    spec = {
        "source": source.public_id,
        "source_id": source.pk,
        "until": at,
        "mode": "replay" if at is None else "fork",
        "agent_version": source.metadata.get("agent_version"),
    }
    run, _ = start_agent_run(principal, request, metadata={"replay": spec})
    return run
