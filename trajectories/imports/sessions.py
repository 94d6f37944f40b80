"""The agent CLIs' own session logs: Claude Code (``~/.claude/projects/…/<session>.jsonl``) and Codex
(``~/.codex/sessions/…/rollout-….jsonl``), each one agent run."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from ..models import EventKind, RunKind, RunStatus
from ..schemas import finish_reason, model_call
from ..shell import claude_shell_outcome
from .common import (
    SHELL_TOOLS,
    BadImport,
    ImportedRun,
    Report,
    Stream,
    json_lines,
    loose_timestamp,
    new_record,
    summed,
    text_of,
)

# Claude Code session logs --------------------------------------------------------------------------------------------

CLAUDE_REPEATS = {"queue-operation", "last-prompt"}  # the prompt again, as queued and as last seen
CLAUDE_CONTEXT = {"summary", "file-history-snapshot", "attachment", "progress"}


class ToolCalls:
    """Tool calls awaiting their results, to put a ``command`` before the result of a shell call."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}

    def call(self, stream: Stream, ts: float, call_id: str, name: str, arguments: Any, span: str = "") -> None:
        command = arguments.get("command", arguments.get("cmd", "")) if isinstance(arguments, dict) else ""
        self.calls[call_id] = {"name": name, "command": shlex.join(command) if isinstance(command, list) else command}
        stream.add(EventKind.TOOL_CALL, ts, {"id": call_id, "name": name, "arguments": arguments}, span=span)

    def result(
        self,
        stream: Stream,
        ts: float,
        call_id: str,
        output: Any,
        ok: bool,
        exit_code: int | None,
        *,
        command: str | None = None,
        command_output: Any = None,
        blocked: str | None = None,
        span: str = "",
    ) -> None:
        call = self.calls.pop(call_id, {})
        if call.get("name") in SHELL_TOOLS or command is not None:
            shown = command if command is not None else call.get("command", "")
            said = None if blocked is not None else output if command_output is None else command_output
            shell = {"command": shown, "output": said, "exit_code": exit_code, "ok": ok}
            stream.add(EventKind.COMMAND, ts, shell | ({"blocked": blocked} if blocked is not None else {}), span=span)
        stream.add(
            EventKind.TOOL_RESULT,
            ts,
            {"id": call_id, "name": call.get("name", ""), "output": output, "ok": ok},
            span=span,
        )


CODEX_EXITED = re.compile(r"^Process exited with code (-?\d+)$", re.M)


def _exit_code(text: str) -> int | None:
    """The exit code Codex's shell tool put in its report's header (before ``Output:``), never one the command's own
    output printed; None where the report does not say."""
    header = text.split("\nOutput:", 1)[0] if "\nOutput:" in text else ""
    found = CODEX_EXITED.search(header)
    return int(found.group(1)) if found else None


def parse_claude_code(data: bytes, *, task: str = "") -> tuple[list[ImportedRun], Report]:
    """A Claude Code session log as one agent run.

    The user's prompts become ``agent.message`` (role user); each assistant line a ``model.call`` (model, usage,
    stop reason, message id) followed by its blocks: text as ``agent.message``, thinking as ``agent.message``
    (thinking), ``tool_use`` as ``tool.call``; each ``tool_result`` a ``tool.result``, preceded by a ``command``
    when the tool was Bash (exit code from the result, 0 unless it is an error). Context lines (queued prompts,
    attachments, summaries, snapshots) and lines of unknown types are kept as ``log`` events and reported.
    """
    report = Report("claude-code")
    lines = json_lines(data, report)
    stream = Stream(report)
    tools = ToolCalls()
    session_id, model, version, cwd, final = "", "", "", "", ""
    sidechains = 0
    repeats: dict[str, int] = {}
    ts = 0.0
    for number, line in lines:
        where = f"line {number}"
        ts = loose_timestamp(line.get("timestamp"), ts)
        kind = line.get("type")
        session_id = session_id or str(line.get("sessionId") or "")
        version = version or str(line.get("version") or "")
        cwd = cwd or str(line.get("cwd") or "")
        if line.get("isSidechain"):
            sidechains += 1
        message: dict[str, Any] = line["message"] if isinstance(line.get("message"), dict) else {}
        span = "sidechain" if line.get("isSidechain") else ""
        if kind == "user":
            content = message.get("content")
            if isinstance(content, str):
                stream.add(
                    EventKind.AGENT_MESSAGE,
                    ts,
                    {"role": "user", "content": content, "uuid": line.get("uuid")},
                    span=span,
                )
                continue
            for block in content or []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_result":
                    output = text_of(block.get("content"))
                    # Claude Code's own wording, as the live adapter reads it: never a guessed exit code.
                    shell = claude_shell_outcome(output, bool(block.get("is_error")), line.get("toolUseResult"))
                    ok = shell.blocked is None and shell.exit_code == 0
                    call_id = str(block.get("tool_use_id") or "")
                    tools.result(
                        stream, ts, call_id, output, ok, shell.exit_code,
                        command_output=shell.output, blocked=shell.blocked, span=span,
                    )  # fmt: skip
                elif block.get("type") == "text":
                    stream.add(
                        EventKind.AGENT_MESSAGE, ts, {"role": "user", "content": block.get("text", "")}, span=span
                    )
                else:
                    stream.keep(where, f"user {block.get('type')} block", ts, block, "claude-code")
        elif kind == "assistant":
            usage = message.get("usage") or {}
            model = model or str(message.get("model") or "")
            prompt = sum(
                int(usage.get(k) or 0)
                for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
            )
            stream.add(
                EventKind.MODEL_CALL,
                ts,
                model_call(
                    "anthropic",
                    None,  # the session log keeps the conversation as lines, not the request as sent
                    {k: message.get(k) for k in ("id", "model", "stop_reason", "content", "usage") if k in message},
                    usage=usage,
                    finish_reason=finish_reason(message.get("stop_reason")),
                    request_id=line.get("requestId"),
                    source="claude-code session",
                ),
                span=span,
                model=str(message.get("model") or ""),
                provider="anthropic",
                prompt_tokens=prompt if usage else None,
                completion_tokens=int(usage.get("output_tokens") or 0) if usage else None,
            )
            for block in message.get("content") or []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    final = str(block.get("text") or "")
                    stream.add(EventKind.AGENT_MESSAGE, ts, {"content": block.get("text", "")}, span=span)
                elif block.get("type") == "thinking":
                    stream.add(
                        EventKind.AGENT_MESSAGE, ts, {"content": block.get("thinking", ""), "thinking": True}, span=span
                    )
                elif block.get("type") == "tool_use":
                    tools.call(
                        stream,
                        ts,
                        str(block.get("id") or ""),
                        str(block.get("name") or ""),
                        block.get("input") or {},
                        span,
                    )
                else:
                    stream.keep(where, f"assistant {block.get('type')} block", ts, block, "claude-code")
        elif kind == "system":
            stream.add(
                EventKind.LOG,
                ts,
                {"message": line.get("content") or line.get("subtype") or "system", "raw": line},
                span=span,
            )
        elif kind in CLAUDE_REPEATS:
            repeats[str(kind)] = repeats.get(str(kind), 0) + 1
        elif kind in CLAUDE_CONTEXT:
            detail = (line.get("attachment") or {}).get("type") if kind == "attachment" else line.get("operation")
            stream.keep(where, f"{kind}{' ' + str(detail) if detail else ''} line", ts, line, "claude-code")
        else:
            stream.keep(where, f"unknown line type {kind!r}", ts, line, "claude-code")
    if not session_id:
        raise BadImport("Not a Claude Code session log: no line carries a `sessionId`", param="file")
    if repeats:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(repeats.items()))
        report.note(f"Skipped as repeats of the user's prompt: {counts} line(s).")
    if sidechains:
        report.note(f"{sidechains} line(s) came from sub-agents (sidechains): their events have the span 'sidechain'.")
    report.note("Claude Code session logs have no run status: the run is recorded as succeeded.")
    report.note("Claude Code logs no cost per message: the run's cost is 0 unless priced again.")
    record = new_record(
        task or "claude-code-session",
        RunKind.AGENT,
        RunStatus.SUCCEEDED,
        stream.events[0].ts if stream.events else ts,
        agent="claude-code",
        model=model[:200],
        provider="anthropic",
        events=stream.events,
    )
    summed(record)
    record.metadata = {
        "import": {"format": "claude-code", "session_id": session_id, "version": version, "cwd": cwd},
        "final_answer": final,
    }
    return [ImportedRun(f"claude-code:{session_id}", record)], report


# Codex session rollouts ----------------------------------------------------------------------------------------------

CODEX_QUIET = {
    "token_count",
    "thread_settings_applied",
    "task_started",
    "user_message",
    "agent_message",
    "agent_reasoning",
}


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _answers(kind: Any, payload: dict[str, Any]) -> bool:
    """Whether a rollout line is part of a model's answer (rather than what it was given)."""
    if kind != "response_item":
        return kind == "event_msg"  # events about the turn neither answer nor give input
    item = payload.get("type")
    if item == "message":
        return payload.get("role") == "assistant"
    return item in ("reasoning", "function_call", "custom_tool_call", "local_shell_call")


def _codex_output(raw: Any) -> str:
    """The output a function call returned (a string, or content items)."""
    if isinstance(raw, dict):
        raw = raw.get("content", raw.get("output", raw))
    return text_of(raw) if not isinstance(raw, str) else raw


def parse_codex(data: bytes, *, task: str = "") -> tuple[list[ImportedRun], Report]:
    """A Codex session rollout as one agent run.

    ``session_meta`` gives the header (its base instructions become the system ``agent.message``); response items
    map as in the Responses API: ``message`` to ``agent.message`` (with its role), ``reasoning`` to a thinking
    ``agent.message``, ``function_call``/``custom_tool_call``/``local_shell_call`` to ``tool.call``, their outputs
    to ``tool.result``; a finished command execution (``item_completed`` CommandExecution) to ``command`` with
    its exit code; ``token_usage_record`` to a ``model.call`` with the tokens of that response; ``turn_context``
    gives the model. Events that repeat a response item (``user_message``, ``agent_message``, token totals) are
    skipped and counted in the report's notes; anything else is kept as ``log`` and reported.
    """
    report = Report("codex")
    lines = json_lines(data, report)
    stream = Stream(report)
    tools = ToolCalls()
    exits: dict[str, dict[str, Any]] = {}
    session: dict[str, Any] = {}
    model, final, status, error = "", "", RunStatus.SUCCEEDED, ""
    skipped: dict[str, int] = {}
    answer = 0  # where the model's current answer begins: after the last input it was given
    ts = 0.0
    for number, line in lines:
        where = f"line {number}"
        ts = loose_timestamp(line.get("timestamp"), ts)
        kind = line.get("type")
        payload: dict[str, Any] = line["payload"] if isinstance(line.get("payload"), dict) else {}
        item_type = payload.get("type")
        if kind == "session_meta":
            session = {k: v for k, v in payload.items() if k != "base_instructions"}
            instructions = payload.get("base_instructions")
            text = instructions.get("text") if isinstance(instructions, dict) else instructions
            if text:
                stream.add(EventKind.AGENT_MESSAGE, ts, {"role": "system", "content": text})
        elif kind == "turn_context":
            model = str(payload.get("model") or model)
            stream.add(EventKind.LOG, ts, {"message": "codex turn context", "context": payload})
        elif kind == "response_item" and item_type == "message":
            role = str(payload.get("role") or "assistant")
            content = text_of(payload.get("content"))
            event = {"content": content, **({"role": role} if role != "assistant" else {}), "id": payload.get("id")}
            if role == "assistant":
                final = content
            stream.add(EventKind.AGENT_MESSAGE, ts, event)
        elif kind == "response_item" and item_type == "reasoning":
            summary = text_of(payload.get("summary")) or text_of(payload.get("content"))
            stream.add(EventKind.AGENT_MESSAGE, ts, {"content": summary, "thinking": True, "id": payload.get("id")})
        elif kind == "response_item" and item_type in ("function_call", "custom_tool_call", "local_shell_call"):
            call_id = str(payload.get("call_id") or payload.get("id") or "")
            if item_type == "local_shell_call":
                arguments: Any = payload.get("action") or {}
                name = "local_shell"
            else:
                arguments = _arguments(payload.get("arguments", payload.get("input")))
                name = str(payload.get("name") or "")
            tools.call(stream, ts, call_id, name, arguments)
        elif kind == "response_item" and item_type in ("function_call_output", "custom_tool_call_output"):
            call_id = str(payload.get("call_id") or "")
            output = _codex_output(payload.get("output"))
            done = exits.pop(call_id, None)
            code = done.get("exit_code") if done else _exit_code(output)
            ok = code == 0  # ran and exited 0: unknown is not ok
            if done:
                command = (
                    shlex.join(done["command"]) if isinstance(done.get("command"), list) else str(done.get("command"))
                )
                tools.result(
                    stream, ts, call_id, output, ok, code, command=command, command_output=done.get("aggregated_output")
                )
            else:
                tools.result(stream, ts, call_id, output, ok, code)
        elif (
            kind == "event_msg"
            and item_type == "item_completed"
            and (payload.get("item") or {}).get("type") == "CommandExecution"
        ):
            item = payload["item"]
            exits[str(item.get("id") or "")] = item  # placed with the call's output, which follows
        elif kind == "token_usage_record":
            # Logged after the items of the response it counts: the call goes before them, where the answer began.
            usage = payload.get("usage") or {}
            stream.add(
                EventKind.MODEL_CALL,
                stream.events[answer].ts if answer < len(stream.events) else ts,
                model_call(
                    "responses",
                    None,
                    {"id": payload.get("response_id"), "usage": usage},
                    usage=usage,
                    source="codex session",
                ),
                at=answer,
                model=model,
                provider="openai",
                prompt_tokens=int(usage.get("input_tokens") or 0),
                completion_tokens=int(usage.get("output_tokens") or 0),
            )
            answer = len(stream.events)
        elif kind == "event_msg" and item_type == "task_complete":
            final = str(payload.get("last_agent_message") or final)
            stream.add(
                EventKind.LOG,
                ts,
                {"message": "codex task complete", **{k: v for k, v in payload.items() if k != "type"}},
            )
        elif kind == "event_msg" and item_type in ("turn_aborted", "error", "stream_error"):
            status = RunStatus.FAILED if item_type != "turn_aborted" else RunStatus.CANCELLED
            error = str(payload.get("message") or payload.get("reason") or item_type)
            stream.add(EventKind.ERROR, ts, {"message": error, "source": "codex", "type": item_type})
        elif kind == "event_msg" and (item_type in CODEX_QUIET or item_type == "item_completed"):
            label = (
                item_type
                if item_type != "item_completed"
                else f"item_completed {(payload.get('item') or {}).get('type')}"
            )
            skipped[label] = skipped.get(label, 0) + 1
        elif kind == "world_state":
            stream.add(EventKind.LOG, ts, {"message": "codex world state", "state": payload})
        else:
            stream.keep(where, f"{kind} {item_type or ''}".strip(), ts, line, "codex")
        if kind != "token_usage_record" and not _answers(kind, payload):
            answer = len(stream.events)
    for call_id, item in exits.items():
        command = shlex.join(item["command"]) if isinstance(item.get("command"), list) else str(item.get("command"))
        code = item.get("exit_code")
        stream.add(
            EventKind.COMMAND,
            ts,
            {"command": command, "output": item.get("aggregated_output"), "exit_code": code, "ok": code == 0},
        )
        report.add(f"command {call_id}", "a command execution whose call output is missing", "a command event")
    if not session.get("id") and not session.get("session_id"):
        raise BadImport("Not a Codex session rollout: no `session_meta` line", param="file")
    if skipped:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
        report.note(f"Skipped as repeats of response items or of token_usage_record: {counts}.")
    report.note("Codex logs no cost: the run's cost is 0 unless priced again.")
    session_id = str(session.get("id") or session.get("session_id"))
    record = new_record(
        task or "codex-session",
        RunKind.AGENT,
        status,
        stream.events[0].ts if stream.events else ts,
        agent="codex",
        model=model[:200],
        provider=str(session.get("model_provider") or "")[:50],
        error=error[:10_000],
        error_kind="upstream" if status == RunStatus.FAILED else "",
        events=stream.events,
    )
    summed(record)
    record.metadata = {"import": {"format": "codex", **session}, "final_answer": final}
    return [ImportedRun(f"codex:{session_id}", record)], report
