"""How events read in the web UI: a one-line title and a short preview per event, and the full detail of one.

Kept apart from the views so the timeline, the search hits, the compare view and the labelling queue all say the
same thing about an event. Payloads are read through their kind's schema (``trajectories.schemas``): a model call's
conversation reads the same in every wire, and older rows read as today's.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from .conversations import Message
from .models import Event
from .schemas import read_model_call, upgrade

PREVIEW_CHARS = 400


def _text(value: Any, indent: int | None = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _cut(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text) - limit:,} more characters)"


def _payload(event: Event) -> dict[str, Any]:
    """The event's payload in today's shape (older rows and agents' own names for fields read the same)."""
    payload = upgrade(event.kind, event.payload)
    return payload if isinstance(payload, dict) else {}


def tool_arguments(payload: dict[str, Any]) -> Any:
    value = payload.get("arguments")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _asks(message: Message, limit: int = 200) -> str:
    """The tools a message asks for, a line each."""
    return "".join(f"\n→ {c.name}({_cut(_text(c.arguments, indent=None), limit)})" for c in message.tool_calls)


def _said(message: Message) -> str:
    """A message of a model call's conversation as text: what it says, its thoughts, the tools it asks for."""
    thinking = f"(thinking) {message.thinking}\n" if message.thinking else ""
    return (thinking + message.text + _asks(message)).strip()


def title(event: Event) -> str:
    """What the event is, in a few words."""
    p = _payload(event)
    match event.kind:
        case "model.call":
            call = read_model_call(p)
            calls = [c.name for c in call.answer().tool_calls]
            what = f"asks for {', '.join(filter(None, calls))}" if calls else (call.finish_reason or "answers")
            return f"{event.model or p.get('model', '')} {what}"
        case "tool.call":
            return f"calls {p.get('name', '')}"
        case "tool.result":
            return f"result of {p['name']}" if p.get("name") else "tool result"
        case "command":
            if p.get("blocked"):
                return "a command the agent's CLI refused to run"
            code = p.get("exit_code")
            return f"runs a command{'' if code is None else f' (exit {code})'}"
        case "file.change":
            return f"{p.get('action', 'changed')} {p.get('path', '')}"
        case "run.state":
            return f"run {p.get('status', '')}"
        case "step.start" | "step.end":
            return f"step {p.get('step', '')} {p.get('status', 'starts' if event.kind == 'step.start' else 'ends')}"
        case "judge.verdict":
            return f"judge {p.get('judge_model', '')}: {'pass' if p.get('passed') else 'fail'}"
        case "contract.check":
            return f"the platform checks the contract: {'met' if p.get('passed') else 'broken'}"
    return event.kind


def preview(event: Event) -> str:
    """A few lines of what the event said or did."""
    p = _payload(event)
    match event.kind:
        case "model.call":
            answer = read_model_call(p).answer()
            return _cut((answer.text + _asks(answer)).strip())
        case "agent.message":
            return _cut(_text(p.get("content")))
        case "tool.call":
            return _cut(_text(tool_arguments(p), indent=None))
        case "tool.result":
            return _cut(_text(p.get("output")))
        case "command":
            return _cut(f"$ {_text(p.get('command'))}\n{_text(p.get('output'))}".strip())
        case "file.change":
            return f"{p.get('size', '?')} bytes" if p.get("action") != "deleted" else ""
        case "run.state":
            return _cut(_text(p.get("error", "")))
        case "log" | "error":
            return _cut(_text(p.get("message") or p.get("text") or p, indent=None))
        case "step.end":
            return _cut(_text(p.get("error") or p.get("outputs") or ""))
        case "contract.check":
            checks = [c for c in p.get("checks") or [] if isinstance(c, dict) and c.get("applies", True)]
            lines = [f"{'✓' if c.get('passed') else '✗'} {c.get('name')}: {c.get('message')}" for c in checks]
            return _cut("\n".join(lines))
    return _cut(_text(p, indent=None)) if p else ""


def signature(event: Event) -> str:
    """What the event did, without when or how long: two runs that took the same step have equal signatures."""
    p = _payload(event)
    match event.kind:
        case "tool.call":
            return f"tool.call:{p.get('name', '')}:{_cut(_text(tool_arguments(p)), 200)}"
        case "command":
            return f"command:{_cut(_text(p.get('command')), 200)}"
        case "file.change":
            return f"file:{p.get('action')}:{p.get('path')}"
        case "agent.message":
            return f"message:{_cut(_text(p.get('content')), 200)}"
        case "model.call":
            answer = read_model_call(p).answer()
            return f"model:{','.join(filter(None, (c.name for c in answer.tool_calls))) or _cut(answer.text, 200)}"
        case "step.start" | "step.end":
            return f"{event.kind}:{p.get('step')}"
    return event.kind


@dataclass
class Detail:
    """Everything worth showing of one event, in sections."""

    sections: list[tuple[str, str]] = field(default_factory=list)
    diff: list[tuple[str, str]] = field(default_factory=list)  # (css class, line)
    figures: dict[str, Any] = field(default_factory=dict)


def diff_lines(old: str, new: str, path: str = "file") -> list[tuple[str, str]]:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{path}", f"b/{path}", lineterm="")
    return [(diff_class(line), line) for line in lines]


def diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "hunk"
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")


def _edit_diff(arguments: Any) -> list[tuple[str, str]]:
    """A file edit asked for through a tool (Claude Code's Edit/Write, Codex's apply_patch), as a diff."""
    if isinstance(arguments, dict):
        path = str(arguments.get("file_path") or arguments.get("path") or "file")
        if "old_string" in arguments or "new_string" in arguments:
            return diff_lines(_text(arguments.get("old_string")), _text(arguments.get("new_string")), path)
        if "content" in arguments and isinstance(arguments["content"], str):
            return diff_lines("", arguments["content"], path)
        patch = arguments.get("patch") or arguments.get("input")
        if isinstance(patch, str) and ("*** Begin Patch" in patch or patch.startswith(("---", "diff "))):
            return [(diff_class(line), line) for line in patch.splitlines()]
    if isinstance(arguments, str) and "*** Begin Patch" in arguments:
        return [(diff_class(line), line) for line in arguments.splitlines()]
    return []


def detail(event: Event, limit: int = 200_000) -> Detail:
    """The full event: a model call's request and response with tokens and cost, a tool call's arguments and
    output, a command's output, a file change's diff."""
    p, out = _payload(event), Detail()
    if event.kind == "model.call":
        out.figures = {
            "model": event.model,
            "provider": event.provider,
            "prompt tokens": event.prompt_tokens,
            "completion tokens": event.completion_tokens,
            "cost (USD)": event.cost_usd,
            "latency (ms)": event.latency_ms,
        }
        call = read_model_call(p)
        for message in call.messages():
            out.sections.append((f"request · {message.role}", _cut(_said(message), limit)))
        answer = call.answer()
        if not answer.empty:
            if answer.thinking:
                out.sections.append(("thinking", _cut(answer.thinking, limit)))
            out.sections.append(("response", _cut(answer.text, limit)))
            for asked in answer.tool_calls:
                out.sections.append((f"asks for {asked.name}", _cut(_text(asked.arguments), limit)))
        elif call.response is not None:
            out.sections.append(("response", _cut(_text(call.response), limit)))
        if call.error:
            out.sections.append(("error", _cut(call.error, limit)))
        return out
    if event.kind == "tool.call":
        arguments = tool_arguments(p)
        out.sections.append((f"{p.get('name', '')} arguments", _cut(_text(arguments), limit)))
        out.diff = _edit_diff(arguments)
    elif event.kind == "command":
        out.sections.append(("command", _text(p.get("command"))))
        out.sections.append((f"output (exit {p.get('exit_code')})", _cut(_text(p.get("output")), limit)))
    elif event.kind == "file.change" and isinstance(p.get("diff"), str):
        out.diff = [(diff_class(line), line) for line in p["diff"].splitlines()]
    if not out.sections:
        out.sections.append((event.kind, _cut(_text(p), limit)))
    return out
