"""The payload of every event kind, typed: what each writer must store and what every reader may rely on.

One small pydantic model per ``EventKind``. They are strict about the types of the fields readers use (a command's
``exit_code`` is an int or null, never ``"3"`` or ``true``) and lenient about the rest: any other key is kept, so
a writer may add detail (an importer keeps what its format holds) without a schema change.

``model.call`` has one shape whatever produced it (the gateway in each wire, a workflow step, an importer):
``wire`` names the format of ``request`` (as the client sent it) and ``response`` (as the client got it), ``usage``
is always ``{prompt_tokens, completion_tokens, total_tokens}`` or null, ``finish_reason`` is in chat completions'
terms. ``ModelCall.messages()`` and ``ModelCall.answer()`` read the conversation the same way for every wire.

What happens to an event that does not fit (the rule, by where the event comes from):

- **Platform writers** (the gateway, workflow steps, the worker, judges, ``move_run``): ``append_events``,
  ``move_run`` and ``record_finished_runs`` check every event. A payload that does not fit, or an unknown kind, is a
  bug in that writer: with ``JETTY_STRICT_EVENTS`` (the tests and CI) it raises :class:`InvalidEvent`; otherwise
  the event is stored as a ``log`` naming the problem (``code: invalid_event``, with the original kind and
  payload) and the error is logged, so a writer's bug never loses a run's trajectory.
- **Agent output** (adapters read lines any process in the sandbox may print): ``admit`` at the boundary
  (``runs.timeline``) first maps the usual aliases (``upgrade``), then turns what still does not fit into such a
  ``log``. It never raises: hostile output cannot crash a run.
- **Imports of other formats** (ATIF, Inspect, CLI session logs): the same, and the import's report lists it.
- **Jetty's own trajectory JSON** (``POST /runs/ingest``, strict): older shapes are upgraded; a payload that still
  does not fit is a 400 naming the event and the field.

Readers of stored rows use ``read`` (or ``upgrade``), which accept the shapes older versions stored.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import conversations
from .conversations import Message
from .models import EventKind, RunStatus

logger = logging.getLogger(__name__)

Json = dict[str, Any]


class InvalidEvent(ValueError):
    """A platform writer produced an event that does not fit its kind's schema."""


class Payload(BaseModel):
    """An event payload: strict types for the declared fields, any other key kept as it is."""

    model_config = ConfigDict(strict=True, extra="allow")
    kind: ClassVar[str]


class Usage(BaseModel):
    """Tokens of one model call, the same three numbers for every wire."""

    model_config = ConfigDict(strict=True, extra="forbid")
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(usage: Any) -> Json | None:
    """Any wire's usage (OpenAI's ``prompt_tokens``, Anthropic's ``input_tokens`` plus its cache counts, Responses',
    Gemini's ``promptTokenCount``, Inspect's) as ``{prompt_tokens, completion_tokens, total_tokens}``."""
    if not isinstance(usage, dict) or not usage:
        return None
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    elif "promptTokenCount" in usage or "candidatesTokenCount" in usage:
        prompt, completion = _count(usage.get("promptTokenCount")), _count(usage.get("candidatesTokenCount"))
        usage = {"total_tokens": usage.get("totalTokenCount")}
    elif "input_tokens" in usage or "output_tokens" in usage:
        # Anthropic counts cached prompt tokens apart; the others' input_tokens include them.
        cached = ("cache_read_input_tokens", "cache_creation_input_tokens")
        prompt = _count(usage.get("input_tokens")) + sum(_count(usage.get(k)) for k in cached)
        completion = _count(usage.get("output_tokens"))
    else:
        return None
    total = _count(usage.get("total_tokens")) or prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


# Each wire's words for why the model stopped, in chat completions' terms.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_length": "length",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "unknown": None,
}


def finish_reason(value: Any) -> str | None:
    """A stop reason in any wire's words, in chat completions' (``stop``, ``length``, ``tool_calls``, …)."""
    if not isinstance(value, str) or not value:
        return None
    return FINISH_REASONS.get(value, value)


WIRES = ("chat", "anthropic", "responses", "gemini", "inspect", "atif")
Wire = Literal["chat", "anthropic", "responses", "gemini", "inspect", "atif"]


class ModelCall(Payload):
    """One call of a model. ``request`` and ``response`` are in ``wire``'s format: ``chat`` (OpenAI chat
    completions), ``anthropic`` (Messages), ``responses`` (OpenAI Responses), ``gemini``, or an imported format
    (``inspect``: Inspect AI's messages and ModelOutput; ``atif``: an ATIF agent step, no request). Either is null
    where it is not known (a failed call has no response; a CLI session log keeps no request).

    ``chat_response`` is the chat completion the gateway translated ``response`` from, kept so a replay can answer
    in any wire; absent when the response is the provider's own (same-wire forwarding) or is chat already.
    """

    kind = EventKind.MODEL_CALL
    wire: Wire
    request: Json | None
    response: Json | None
    usage: Usage | None
    finish_reason: str | None
    status_code: int | None
    stream: bool | None
    error: str | None = None
    chat_response: Json | None = None
    upstream_model: str | None = None
    ttfb_ms: float | None = None
    replayed_from: Json | None = None
    source: str | None = None  # where an imported call came from

    def messages(self) -> list[Message]:
        """What the model was given, as messages (tool results are ``tool`` messages), whatever the wire."""
        return conversations.messages(self.wire, self.request)

    def answer(self) -> Message:
        """What the model answered: text, thoughts and the tools it asked for, whatever the wire."""
        return conversations.answer(self.wire, self.response)

    def completion(self) -> Json | None:
        """The answer as an OpenAI chat completion, when the call has one (what a replay answers from)."""
        if self.wire == "chat":
            return self.response
        return self.chat_response


def model_call(
    wire: str,
    request: Json | None,
    response: Json | None,
    *,
    usage: Any = None,
    finish_reason: str | None = None,
    status_code: int | None = None,
    stream: bool | None = None,
    **more: Any,
) -> Json:
    """A ``model.call`` payload as every writer must store it (``usage`` given in any wire's shape)."""
    return {
        "wire": wire,
        "request": request,
        "response": response,
        "usage": usage_of(usage),
        "finish_reason": finish_reason,
        "status_code": status_code,
        "stream": stream,
        **more,
    }


class RunState(Payload):
    kind = EventKind.RUN_STATE
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
    error: str | None = None
    error_code: str | None = None


class AgentMessage(Payload):
    """Something the agent said (or thought, with ``thinking``); ``role`` only for what it was told."""

    kind = EventKind.AGENT_MESSAGE
    content: str
    role: str | None = None
    thinking: bool | None = None


class ToolCall(Payload):
    kind = EventKind.TOOL_CALL
    name: str
    id: str = ""
    arguments: Any = None  # an object for most tools; Codex's custom tools take a string


class ToolResult(Payload):
    kind = EventKind.TOOL_RESULT
    id: str = ""
    name: str = ""
    output: Any = None  # text for most tools; an imported tool may return parts or data
    ok: bool
    exit_code: int | None = None


class Command(Payload):
    """A shell command the agent ran. ``exit_code`` is the one its CLI reported, null where the CLI does not say;
    ``blocked`` says why, when the CLI refused to run it."""

    kind = EventKind.COMMAND
    command: str
    output: str | None
    exit_code: int | None
    ok: bool
    blocked: str | None = None
    duration_ms: int | None = None


class FileChange(Payload):
    kind = EventKind.FILE_CHANGE
    path: str
    action: str  # created, modified, deleted (the workspace watcher); the agent's own words otherwise
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    previous_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    diff: str | None = None
    source: str | None = None


class Log(Payload):
    """Anything worth keeping that has no kind of its own (a line the agent printed, a warning, an import's
    leftovers): no field is required."""

    kind = EventKind.LOG
    level: str | None = None
    code: str | None = None


class StepStart(Payload):
    kind = EventKind.STEP_START
    step: str
    type: str | None = None
    visit: int | None = None


class StepEnd(Payload):
    kind = EventKind.STEP_END
    step: str
    status: str | None = None
    error: str | None = None


class JudgeVerdict(Payload):
    """A judge's verdict on the run: Jetty's rubric judge, or an imported scorer's score."""

    kind = EventKind.JUDGE_VERDICT
    judge_model: str | None = None
    passed: bool | None = None
    grade: float | None = None
    scores: dict[str, Any] | None = None
    reasons: list[str] | None = None


class Error(Payload):
    kind = EventKind.ERROR
    message: str | None = None
    source: str | None = None


class Check(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str
    passed: bool
    message: str
    applies: bool = True  # false: the runbook asks for nothing this check looks at (it passes, and says why)
    output: str | None = None


class ContractCheck(Payload):
    """The platform's own check of what a runbook promised (its required files, its validation report, its final
    checklist), and whether it decides the run's status (``enforce``) or is only reported."""

    kind = EventKind.CONTRACT_CHECK
    passed: bool
    mode: Literal["enforce", "report"]
    checks: list[Check]
    duration_ms: float | None = None


SCHEMAS: dict[str, type[Payload]] = {
    schema.kind: schema
    for schema in (
        RunState, ModelCall, AgentMessage, ToolCall, ToolResult, Command, FileChange, Log, StepStart, StepEnd,
        JudgeVerdict, Error, ContractCheck,
    )
}  # fmt: skip
assert set(SCHEMAS) == set(EventKind.values), "every event kind needs a schema"
assert set(RunState.model_fields["status"].annotation.__args__) == set(RunStatus.values)  # type: ignore[union-attr]


def problem(kind: str, payload: Any) -> str | None:
    """Why the payload does not fit its kind's schema, in a line (None when it fits)."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        return f"unknown event kind {kind!r}"
    if not isinstance(payload, dict):
        return "the payload is not an object"
    try:
        schema.model_validate(payload)
    except ValidationError as exc:
        return "; ".join(_error_line(error) for error in exc.errors()[:3])
    return None


def _error_line(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "payload"
    return f"{where}: {error['msg']}"


def check(kind: str, payload: Any) -> None:
    """Raise :class:`InvalidEvent` when the payload does not fit its kind."""
    found = problem(kind, payload)
    if found is not None:
        raise InvalidEvent(f"a {kind} event does not fit its schema: {found}")


def as_log(kind: str, payload: Any, found: str) -> Json:
    """The ``log`` payload an event that does not fit is kept as: the problem, the kind and payload it had."""
    return {
        "level": "warning",
        "code": "invalid_event",
        "message": f"a {kind} event did not fit its schema ({found}): kept as a log",
        "kind": kind,
        "payload": payload,
    }


def admit(kind: str, payload: Any) -> tuple[str, Json]:
    """An event from an untrusted source as it may be stored: upgraded, and kept as a ``log`` if it still does
    not fit (never raises)."""
    payload = upgrade(kind, payload)
    found = problem(kind, payload)
    return (kind, payload) if found is None else (EventKind.LOG, as_log(kind, payload, found))


def on_append(kind: str, payload: Any, where: str) -> tuple[str, Any]:
    """A platform writer's event as it may be stored (``where`` names the run, for the log): as it is when it
    fits; otherwise :class:`InvalidEvent` under ``JETTY_STRICT_EVENTS``, else a ``log`` naming the problem."""
    found = problem(kind, payload)
    if found is None:
        return kind, payload
    if settings.JETTY_STRICT_EVENTS:
        raise InvalidEvent(f"{where}: a {kind} event does not fit its schema: {found}")
    logger.error("%s: a %s event does not fit its schema (%s): stored as a log", where, kind, found)
    return EventKind.LOG, as_log(kind, payload, found)


# Older and looser shapes -------------------------------------------------------------------------------------------

ALIASES: dict[str, dict[str, str]] = {  # kind: {a name some agents use: ours}
    EventKind.AGENT_MESSAGE: {"text": "content"},
    EventKind.TOOL_CALL: {"tool": "name", "input": "arguments", "args": "arguments"},
    EventKind.TOOL_RESULT: {"content": "output"},
}


def upgrade(kind: str, payload: Any) -> Any:
    """The payload in today's shape, from the shapes earlier versions stored and the names agents use for the same
    fields (``text`` for ``content``, ``input`` for ``arguments``). Returns a new dict; never raises."""
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    for theirs, ours in ALIASES.get(kind, {}).items():
        if ours not in out and theirs in out:
            out[ours] = out.pop(theirs)
    if kind == EventKind.MODEL_CALL:
        out.setdefault("wire", "chat")  # before wires, every call was chat completions
        for key in ("request", "response", "finish_reason", "status_code", "stream"):
            out.setdefault(key, None)
        if out.get("usage") is not None and problem_of(Usage, out["usage"]):
            out["usage"] = usage_of(out["usage"])
        out.setdefault("usage", None)
    elif kind in (EventKind.COMMAND, EventKind.TOOL_RESULT) and "ok" not in out:
        code = out.get("exit_code")  # jetty-agent said only its exit code
        if isinstance(code, int) and not isinstance(code, bool):
            out["ok"] = code == 0
    if kind == EventKind.COMMAND:
        out.setdefault("output", None)
        out.setdefault("exit_code", None)
    return out


def problem_of(schema: type[BaseModel], value: Any) -> bool:
    try:
        schema.model_validate(value)
    except ValidationError:
        return True
    return False


def read_model_call(payload: Any) -> ModelCall:
    """A stored ``model.call`` for reading, whatever its age: fields that do not fit are read as absent."""
    data = upgrade(EventKind.MODEL_CALL, payload if isinstance(payload, dict) else {})
    try:
        return ModelCall.model_validate(data)
    except ValidationError as exc:
        bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
    fallback: Json = {"wire": "chat"}
    data = {k: (fallback.get(k) if k in bad else v) for k, v in data.items()}
    try:
        return ModelCall.model_validate(data)
    except ValidationError:
        return ModelCall.model_validate(model_call("chat", None, None))
