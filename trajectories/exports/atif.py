"""A run as a Harbor ATIF trajectory (``GET /runs/{id}/export?format=atif``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..models import Event, Run
from .jetty import dumps, events_of

ATIF_VERSION = "ATIF-v1.6"


def _atif_time(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat(timespec="microseconds" if moment.microsecond % 1000 else "milliseconds")
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def run_to_atif(run: Run) -> dict[str, Any]:
    """The run as a Harbor ATIF trajectory: user and system messages as their steps, each model call an agent step
    with its metrics, the messages and reasoning that followed it, its tool calls and their results.

    ATIF has no place for the rest (commands, file changes, logs, run states, workflow steps, verdicts): they are
    counted in ``extra.jetty.not_in_atif`` (the JSONL and trajectory exports hold everything). A run imported from
    ATIF comes back as it was, the fields the import did not know included.
    """
    imported = run.metadata.get("import") if isinstance(run.metadata.get("import"), dict) else {}
    from_atif = imported.get("format") == "atif"
    steps: list[dict[str, Any]] = []
    step: dict[str, Any] | None = None
    dropped: dict[str, int] = {}

    def close() -> None:
        nonlocal step
        if step is not None:
            steps.append({k: v for k, v in step.items() if v not in (None, [], {}) or k == "message"})
        step = None

    def agent_step(event: Event) -> dict[str, Any]:
        return {"step_id": None, "timestamp": _atif_time(event.ts), "source": "agent", "message": ""}

    for event in events_of(run):
        payload = event.payload if isinstance(event.payload, dict) else {}
        role = payload.get("role")
        if event.kind == "agent.message" and role in ("system", "user", "developer"):
            close()
            step = {
                "step_id": payload.get("step_id"),
                "timestamp": _atif_time(event.ts),
                "source": "system" if role == "developer" else role,
                "message": payload.get("parts", payload.get("content") or ""),
                "is_copied_context": payload.get("copied_context"),
                "extra": payload.get("extra"),
                **(payload.get("unmapped") or {}),
            }
            close()
        elif event.kind == "model.call":
            close()
            metrics = {
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "cost_usd": None if event.cost_usd is None else float(event.cost_usd),
            }
            metrics = {k: v for k, v in metrics.items() if v is not None}
            more = dict(payload.get("metrics") or {}) if from_atif else {}
            metrics |= {k: v for k, v in more.items() if k != "unmapped"} | (more.get("unmapped") or {})
            step = agent_step(event) | {
                "step_id": payload.get("step_id"),
                "model_name": payload.get("model_name") if from_atif else event.model,
                "reasoning_effort": payload.get("reasoning_effort"),
                "message": payload.get("parts", "") if from_atif else "",
                "tool_calls": [],
                "metrics": metrics,
                "is_copied_context": payload.get("copied_context"),
                "extra": payload.get("extra"),
                **(payload.get("unmapped") or {}),
            }
        elif event.kind == "agent.message":
            step = step or agent_step(event)
            key = "reasoning_content" if payload.get("thinking") else "message"
            text = str(payload.get("content") or "")
            if not (key == "message" and isinstance(step.get("message"), list)):
                step[key] = f"{step[key]}\n\n{text}" if step.get(key) else text
        elif event.kind == "tool.call":
            step = step or agent_step(event)
            call: dict[str, Any] = {
                "tool_call_id": str(payload.get("id") or ""),
                "function_name": str(payload.get("name") or ""),
            }
            arguments = payload.get("arguments")
            call["arguments"] = arguments if isinstance(arguments, dict) else {"input": arguments}
            if payload.get("extra"):
                call["extra"] = payload["extra"]
            step.setdefault("tool_calls", []).append(call | (payload.get("unmapped") or {}))
        elif event.kind == "tool.result" or (event.kind == "log" and payload.get("source") == "atif observation"):
            step = step or agent_step(event)
            output = payload.get("parts", payload.get("output", payload.get("message")))
            result: dict[str, Any] = {"source_call_id": payload.get("id")} if event.kind == "tool.result" else {}
            if output is not None:
                result["content"] = output if isinstance(output, (str, list)) else dumps(output)
            if payload.get("subagents"):
                result["subagent_trajectory_ref"] = payload["subagents"]
            if payload.get("extra"):
                result["extra"] = payload["extra"]
            observation = step.setdefault("observation", {"results": []})
            observation["results"].append(result | (payload.get("unmapped") or {}))
        else:
            dropped[event.kind] = dropped.get(event.kind, 0) + 1
    close()
    for number, each in enumerate(steps, start=1):
        each["step_id"] = each.get("step_id") or number

    agent = dict(imported.get("agent") or {}) if from_atif else {}
    agent = agent or {"name": run.agent or "jetty", "version": str(run.metadata.get("agent_version") or ""),
                      "model_name": run.model}  # fmt: skip
    doc: dict[str, Any] = {
        "schema_version": imported.get("schema_version") if from_atif else ATIF_VERSION,
        "session_id": imported.get("session_id") if from_atif else run.public_id,
        "agent": agent,
    }
    for key in ("notes", "final_metrics", "extra"):
        if from_atif and imported.get(key):
            doc[key] = imported[key]
    if not from_atif:
        doc["final_metrics"] = {
            "total_prompt_tokens": run.prompt_tokens,
            "total_completion_tokens": run.completion_tokens,
            "total_cost_usd": float(run.cost_usd),
            "total_steps": len(steps),
        }
    for key, value in (imported.get("unmapped") or {}).items() if from_atif else ():
        if key.startswith("agent."):
            agent[key.removeprefix("agent.")] = value
        else:
            doc[key] = value
    if dropped or not from_atif:
        jetty = {"run": run.public_id, "status": run.status, "not_in_atif": dropped}
        if run.contract is not None:
            jetty["contract"] = run.contract
        doc["extra"] = {**(doc.get("extra") or {}), "jetty": jetty}
    doc["steps"] = steps
    return doc
