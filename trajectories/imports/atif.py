"""Harbor's Agent Trajectory Interchange Format (ATIF v1.x): one trajectory document, one agent run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import EventKind, RunKind, RunStatus
from ..schemas import model_call
from .common import (
    BadImport,
    ImportedRun,
    Report,
    Stream,
    amount_field,
    count_field,
    loose_timestamp,
    new_record,
    summed,
    text_of,
    timestamp,
)

ATIF_ROOT = {"schema_version", "session_id", "agent", "steps", "notes", "final_metrics", "extra"}
ATIF_AGENT = {"name", "version", "model_name", "tool_definitions", "extra"}
ATIF_STEP = {
    "step_id",
    "timestamp",
    "source",
    "model_name",
    "reasoning_effort",
    "message",
    "reasoning_content",
    "tool_calls",
    "observation",
    "metrics",
    "extra",
    "is_copied_context",
}
ATIF_TOOL_CALL = {"tool_call_id", "function_name", "arguments", "extra"}
ATIF_RESULT = {"source_call_id", "content", "subagent_trajectory_ref", "extra"}
ATIF_METRICS = {
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "prompt_token_ids",
    "completion_token_ids",
    "logprobs",
    "extra",
}


def _report_unknown(data: dict[str, Any], known: set[str], where: str, report: Report, kept: str) -> dict[str, Any]:
    extra = {k: v for k, v in data.items() if k not in known}
    for key in extra:
        report.add(f"{where}.{key}", "unknown field", kept)
    return extra


def parse_atif(doc: dict[str, Any], *, task: str = "") -> tuple[list[ImportedRun], Report]:
    """One ATIF trajectory as one agent run.

    system and user steps become ``agent.message`` events with their role; an agent step becomes a ``model.call``
    (model, metrics: tokens, cost; the message, reasoning and tool calls it answered with), ``agent.message`` for
    its message and reasoning, a ``tool.call`` per tool call and a ``tool.result`` per observation result (one
    without a ``source_call_id`` becomes a ``log``, a subagent reference a ``log`` naming the sub-trajectory).
    Step times are the step's ``timestamp``; the span is ``step <step_id>``.
    """
    report = Report("atif")
    version = doc.get("schema_version")
    if not isinstance(version, str) or not version.startswith("ATIF-v1"):
        raise BadImport("Not an ATIF trajectory: `schema_version` must be 'ATIF-v1.x'", param="schema_version")
    session_id, agent, steps = doc.get("session_id"), doc.get("agent"), doc.get("steps")
    if not isinstance(session_id, str) or not session_id:
        raise BadImport("ATIF `session_id` must be a non-empty string", param="session_id")
    if not isinstance(agent, dict) or not isinstance(agent.get("name"), str):
        raise BadImport("ATIF `agent` must be an object with a `name`", param="agent")
    if not isinstance(steps, list):
        raise BadImport("ATIF `steps` must be a list", param="steps")
    unmapped: dict[str, Any] = {}
    unmapped.update(_report_unknown(doc, ATIF_ROOT, "", report, "the run's metadata.import.unmapped"))
    unmapped.update(
        {
            f"agent.{k}": v
            for k, v in _report_unknown(agent, ATIF_AGENT, "agent", report, "metadata.import.unmapped").items()
        }
    )
    model = str(agent.get("model_name") or "")
    stream = Stream(report)
    now = datetime.now(tz=UTC).timestamp()
    first = next((s.get("timestamp") for s in steps if isinstance(s, dict) and s.get("timestamp")), None)
    ts = loose_timestamp(first, now)
    if first is None:
        report.note("The trajectory has no step timestamps: events carry the time of the import.")
    names: dict[str, str] = {}
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, dict):
            raise BadImport(f"ATIF `{where}` must be an object", param=where)
        source = step.get("source")
        if source not in ("system", "user", "agent"):
            raise BadImport(f"ATIF `{where}.source` must be system, user or agent", param=f"{where}.source")
        if step.get("timestamp"):
            ts = timestamp(step["timestamp"], f"{where}.timestamp")
        span = f"step {step.get('step_id', i + 1)}"
        extra = _report_unknown(step, ATIF_STEP, where, report, f"payload.unmapped of the events of {span}")
        message = step.get("message", "")
        content = message if isinstance(message, str) else text_of(message)
        common: dict[str, Any] = {"step_id": step.get("step_id")}
        if step.get("extra"):
            common["extra"] = step["extra"]
        if extra:
            common["unmapped"] = extra
        if not isinstance(message, str):
            common["parts"] = message  # multimodal content parts (ATIF v1.6), kept whole
        if step.get("is_copied_context"):
            common["copied_context"] = True
        if source != "agent":
            stream.add(EventKind.AGENT_MESSAGE, ts, {"role": source, "content": content, **common}, span=span)
            continue
        metrics = step.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise BadImport(f"ATIF `{where}.metrics` must be an object", param=f"{where}.metrics")
        metric_extra = _report_unknown(metrics, ATIF_METRICS, f"{where}.metrics", report, f"the model.call of {span}")
        calls = step.get("tool_calls") or []
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise BadImport(f"ATIF `{where}.tool_calls` must be a list of objects", param=f"{where}.tool_calls")
        step_model = str(step.get("model_name") or model)
        response = {"message": content, "reasoning_content": step.get("reasoning_content"), "tool_calls": calls}
        call_payload = {
            "source": "atif",
            "model_name": step.get("model_name"),
            "reasoning_effort": step.get("reasoning_effort"),
            "metrics": {k: v for k, v in metrics.items() if k not in ("prompt_tokens", "completion_tokens", "cost_usd")}
            | ({"unmapped": metric_extra} if metric_extra else {}),
            **common,
        }
        stream.add(
            EventKind.MODEL_CALL,
            ts,
            model_call(
                "atif",
                None,  # ATIF keeps what the agent answered, not what it was asked
                {k: v for k, v in response.items() if v not in (None, [], "")},
                usage={k: metrics[k] for k in ("prompt_tokens", "completion_tokens") if k in metrics},
                **{k: v for k, v in call_payload.items() if v not in (None, {}, [])},
            ),
            span=span,
            model=step_model,
            provider=step_model.split("/", 1)[0] if "/" in step_model else "",
            prompt_tokens=count_field(metrics, "prompt_tokens", f"{where}.metrics", optional=True),
            completion_tokens=count_field(metrics, "completion_tokens", f"{where}.metrics", optional=True),
            cost_usd=amount_field(metrics, "cost_usd", f"{where}.metrics", optional=True),
        )
        if step.get("reasoning_content"):
            stream.add(EventKind.AGENT_MESSAGE, ts, {"content": step["reasoning_content"], "thinking": True}, span=span)
        if content or not calls:
            stream.add(EventKind.AGENT_MESSAGE, ts, {"content": content}, span=span)
        for j, call in enumerate(calls):
            call_extra = _report_unknown(call, ATIF_TOOL_CALL, f"{where}.tool_calls[{j}]", report, "the tool.call")
            call_id, name = str(call.get("tool_call_id") or ""), str(call.get("function_name") or "")
            names[call_id] = name
            payload = {"id": call_id, "name": name, "arguments": call.get("arguments") or {}}
            if call.get("extra"):
                payload["extra"] = call["extra"]
            stream.add(EventKind.TOOL_CALL, ts, payload | ({"unmapped": call_extra} if call_extra else {}), span=span)
        observation = step.get("observation") or {}
        results = observation.get("results") if isinstance(observation, dict) else None
        if observation and not isinstance(results, list):
            raise BadImport(f"ATIF `{where}.observation.results` must be a list", param=f"{where}.observation")
        for j, result in enumerate(results or []):
            rwhere = f"{where}.observation.results[{j}]"
            if not isinstance(result, dict):
                raise BadImport(f"ATIF `{rwhere}` must be an object", param=rwhere)
            result_extra = _report_unknown(result, ATIF_RESULT, rwhere, report, "the tool.result")
            output = result.get("content")
            refs = result.get("subagent_trajectory_ref")
            source_call = result.get("source_call_id")
            if source_call:
                payload = {
                    "id": str(source_call),
                    "name": names.get(str(source_call), ""),
                    "output": None if output is None else text_of(output),
                    "ok": True,
                }
                if not isinstance(output, (str, type(None))):
                    payload["parts"] = output
                if refs:
                    payload["subagents"] = refs
                if result.get("extra"):
                    payload["extra"] = result["extra"]
                stream.add(
                    EventKind.TOOL_RESULT, ts, payload | ({"unmapped": result_extra} if result_extra else {}), span=span
                )
            else:
                payload = {"message": text_of(output), "source": "atif observation", "subagents": refs}
                payload |= {"extra": result.get("extra"), "unmapped": result_extra}
                stream.add(EventKind.LOG, ts, {k: v for k, v in payload.items() if v}, span=span)
    if any(isinstance(s, dict) and s.get("observation") for s in steps):
        report.note("ATIF does not say whether a tool call failed: every tool.result is recorded with ok = true.")
    report.note("ATIF has no run status: the run is recorded as succeeded.")
    final = doc.get("final_metrics") or {}
    record = new_record(
        task or str(agent["name"]),
        RunKind.AGENT,
        RunStatus.SUCCEEDED,
        stream.events[0].ts if stream.events else now,
        agent=str(agent["name"])[:50],
        model=model[:200],
        events=stream.events,
    )
    summed(record)
    if isinstance(final, dict) and final.get("total_cost_usd") is not None and not record.cost_usd:
        record.cost_usd = amount_field(final, "total_cost_usd", "final_metrics") or 0.0
    record.metadata = {
        "import": {
            "format": "atif",
            "session_id": session_id,
            "schema_version": version,
            "agent": {k: v for k, v in agent.items() if k in ATIF_AGENT},
            **{k: doc[k] for k in ("notes", "final_metrics", "extra") if doc.get(k)},
            **({"unmapped": unmapped} if unmapped else {}),
        }
    }
    return [ImportedRun(f"atif:{session_id}", record)], report
