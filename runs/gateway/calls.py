"""One passthrough call: its validated request, what came back, and the run record it becomes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from orgs.api_errors import ApiError
from orgs.models import public_code
from trajectories.schemas import model_call

from .routing import Caller, Route

if TYPE_CHECKING:
    from .native import Native
    from .wires import Wire

JETTY_FIELDS = frozenset(
    {
        "runbook",
        "collection",
        "task",
        "agent",
        "model_provider",
        "snapshot",
        "template_variables",
        "file_paths",
        "files",
        "runbook_url",
        "timeout_s",
        "network",
        "limits",
        "webhook_url",
        "webhook_secret",
        "async",
        "idempotency_key",
        "contract",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
CHAT_TASK = "_chat"


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise ApiError(400, message, code="invalid_value" if param else None, param=param)


@dataclass
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    task: str
    collection: str | None
    agent_mode: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChatRequest:
        model = body.get("model")
        _require(isinstance(model, str) and bool(model.strip()), "`model` is required and must be a string", "model")
        messages = body.get("messages")
        _require(
            isinstance(messages, list) and len(messages) > 0,
            "`messages` is required and must be a non-empty array",
            "messages",
        )
        for i, message in enumerate(messages or []):
            _require(
                isinstance(message, dict) and message.get("role") in ROLES,
                f"messages[{i}] must be an object with a role in {sorted(ROLES)}",
                f"messages[{i}].role",
            )
        stream = body.get("stream", False)
        _require(stream is None or isinstance(stream, bool), "`stream` must be a boolean", "stream")
        n = body.get("n")
        _require(n is None or (type(n) is int and 1 <= n <= 128), "`n` must be an integer from 1 to 128", "n")
        for name in ("tools", "stop"):
            value = body.get(name)
            if name == "stop":
                _require(value is None or isinstance(value, (str, list)), "`stop` must be a string or an array", "stop")
            else:
                _require(value is None or isinstance(value, list), f"`{name}` must be an array", name)
        stream_options = body.get("stream_options")
        _require(
            stream_options is None or isinstance(stream_options, dict),
            "`stream_options` must be an object",
            "stream_options",
        )
        jetty = body.get("jetty")
        _require(jetty is None or isinstance(jetty, dict), "`jetty` must be an object", "jetty")
        jetty = jetty or {}
        unknown = sorted(set(jetty) - JETTY_FIELDS)
        _require(not unknown, f"Unknown field(s) in `jetty`: {', '.join(unknown)}", "jetty")
        task = jetty.get("task", CHAT_TASK)
        _require(isinstance(task, str) and 0 < len(task) <= 200, "`jetty.task` must be a short string", "jetty.task")
        collection = jetty.get("collection")
        _require(
            collection is None or isinstance(collection, str), "`jetty.collection` must be a string", "jetty.collection"
        )
        for flag in ("runbook", "async"):
            _require(jetty.get(flag) in (None, True, False), f"`jetty.{flag}` must be true or false", f"jetty.{flag}")
        return cls(
            body=body,
            model=str(model).strip(),
            stream=bool(stream),
            include_usage=bool((stream_options or {}).get("include_usage")),
            task=task,
            collection=collection,
            agent_mode=bool(jetty.get("runbook")),
        )

    def litellm_params(self) -> dict[str, Any]:
        """The request's parameters as litellm keyword arguments: only the model parameters of OpenAI's chat API
        (and a few litellm maps for other providers) become arguments; everything else reaches the provider in its
        request body (``extra_body``). So nothing a client sends can choose where litellm connects or with which
        credentials and headers (``base_url``, ``api_base``, ``custom_llm_provider``, ``api_key``,
        ``extra_headers``...)."""
        params = self.upstream_params()
        extra = {k: params.pop(k) for k in list(params) if k not in LITELLM_ARGUMENTS}
        if extra:
            params["extra_body"] = extra
        return params

    def upstream_params(self) -> dict[str, Any]:
        """Everything the provider should see besides model and messages."""
        params = {k: v for k, v in self.body.items() if k not in ("model", "messages", "jetty")}
        if self.stream:
            # Always ask for usage so the call can be accounted; the client only sees it if it asked.
            params["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
        return params


# OpenAI's chat completion parameters, plus the model parameters litellm maps for other providers (`top_k`,
# `thinking`). Never anything that routes, authenticates or adds headers.
LITELLM_ARGUMENTS = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier", "seed",
        "service_tier", "stop", "store", "stream", "stream_options", "temperature", "thinking", "tool_choice",
        "tools", "top_k", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
_DATA_KEYS = ("url", "data", "file_data", "image_url")


def redact(value: Any, limit: int) -> Any:
    """Replace large inline base64 (data URLs, audio, files) with a short note; returns a copy only if needed."""
    if isinstance(value, str):
        if len(value) > limit and (value.startswith("data:") or _looks_base64(value)):
            head = value[: value.find(",") + 1] if value.startswith("data:") else ""
            return f"{head}[redacted {len(value)} chars]"
        return value
    if isinstance(value, list):
        out = [redact(v, limit) for v in value]
        return value if all(a is b for a, b in zip(out, value, strict=True)) else out
    if isinstance(value, dict):
        changed = {k: redact(v, limit) for k, v in value.items() if k in _DATA_KEYS or isinstance(v, (dict, list))}
        if all(changed[k] is value[k] for k in changed):
            return value
        return {**value, **changed}
    return value


def _looks_base64(text: str) -> bool:
    sample = text[:256]
    return " " not in sample and "\n" not in sample[:200]


def redact_request(body: dict[str, Any]) -> dict[str, Any]:
    limit = settings.JETTY_REDACT_MIN_CHARS
    messages = body.get("messages") or []
    redacted = [m if isinstance(m.get("content"), str) else redact(m, limit) for m in messages]
    return {**{k: v for k, v in body.items() if k != "messages"}, "messages": redacted}


class StreamAccumulator:
    """Rebuilds the whole completion from its streamed chunks, for the record."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.content: dict[int, list[str]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.finish: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None
        self.chunks = 0

    def feed(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        self.id = self.id or chunk.get("id", "")
        self.model = self.model or chunk.get("model", "")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.setdefault(index, []).append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = self.tool_calls.setdefault(index, {}).setdefault(
                    call.get("index", 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish[index] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        indexes = sorted(set(self.content) | set(self.tool_calls) | set(self.finish)) or [0]
        choices = []
        for index in indexes:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content.get(index, [])) or None}
            if index in self.tool_calls:
                message["tool_calls"] = [self.tool_calls[index][k] for k in sorted(self.tool_calls[index])]
            choices.append({"index": index, "message": message, "finish_reason": self.finish.get(index)})
        return {
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
        }


@dataclass
class Call:
    """The bookkeeping of one gateway call, turned into a run record when it ends."""

    request: ChatRequest
    caller: Caller
    route: Route
    public_id: str = field(default_factory=lambda: public_code("run"))
    started: float = field(default_factory=time.time)
    first_byte: float | None = None
    wire: Wire | None = None  # the client's own wire format, when it is not chat completions
    wire_body: dict[str, Any] | None = None  # the request as that client sent it
    native: Native | None = None  # set when the provider speaks the client's wire: forwarded as sent
    replayed: dict[str, Any] | None = None  # answered from a recording: which run and call

    def model_call_event(self, response: dict[str, Any] | None, *, status_code: int, error: str = "") -> dict:
        """The ``model.call`` event: the whole exchange as the client saw it, in the one shape every writer stores
        (``trajectories.schemas.ModelCall``), whichever of the three ways the call went."""
        finished = time.time()
        client_wire = self.wire if self.wire_body is not None else None  # None: the client speaks chat completions
        wire = "chat" if client_wire is None else client_wire.name
        request = (
            redact_request(self.request.body)
            if client_wire is None
            else redact(self.wire_body, settings.JETTY_REDACT_MIN_CHARS)
        )
        shown, chat = response, response  # chat: the answer as a chat completion, when it is one
        more: dict[str, Any] = {}
        if self.native is not None and response is not None:  # forwarded as sent: the response is the provider's
            chat, usage, finish = None, self.native.usage(response), self.native.finish(response)
        else:
            usage = (response or {}).get("usage")
            choices = (response or {}).get("choices") or []
            finish = choices[0].get("finish_reason") if choices else None
            if client_wire is not None and response is not None:  # translated back into the client's wire
                shown = client_wire.from_chat(response, self.route.model)
                more["chat_response"] = response  # kept too: a replay answers from it in any wire
        if error:
            more["error"] = error
        if self.replayed is not None:
            more["replayed_from"] = self.replayed
        payload = model_call(
            wire,
            request,
            shown,
            usage=usage,
            finish_reason=finish,
            status_code=status_code,
            stream=self.request.stream,
            upstream_model=(chat or response or {}).get("model") or self.route.upstream_model,
            ttfb_ms=None if self.first_byte is None else round((self.first_byte - self.started) * 1000, 2),
            **more,
        )
        counted = payload["usage"] if self.replayed is None else None  # answered from a recording: nothing spent
        return {
            "kind": "model.call",
            "ts": self.started,
            "payload": payload,
            "model": self.route.model,
            "provider": "replay" if self.replayed is not None else self.route.provider,
            "prompt_tokens": (counted or {}).get("prompt_tokens", 0),
            "completion_tokens": (counted or {}).get("completion_tokens", 0),
            "cost_usd": None,
            "latency_ms": int((finished - self.started) * 1000),
        }

    def record(
        self,
        response: dict[str, Any] | None,
        *,
        status_code: int,
        error: str = "",
        error_kind: str = "",
        cancelled: bool = False,
    ) -> dict[str, Any]:
        """A passthrough call as a whole one-step run."""
        call = self.model_call_event(response, status_code=status_code, error=error)
        finished = call["ts"] + call["latency_ms"] / 1000
        usage = call["payload"]["usage"] or {}
        prompt, completion = call["prompt_tokens"], call["completion_tokens"]
        status = "cancelled" if cancelled else ("failed" if error else "succeeded")
        end_payload: dict[str, Any] = {"status": status}
        if error:
            end_payload["error"] = error
        principal = self.caller.principal
        return {
            "public_id": self.public_id,
            "org_id": principal.org.pk,
            "collection_id": self.caller.collection.pk if self.caller.collection else None,
            "task": self.request.task,
            "kind": "chat",
            "status": status,
            "created": self.started,
            "started_at": self.started,
            "finished_at": finished,
            "model": self.route.model,
            "upstream_model": call["payload"]["upstream_model"],
            "provider": self.route.provider,
            "error_kind": error_kind,
            "error": error,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": int(usage.get("total_tokens") or prompt + completion),
            "cost_usd": None,
            "token_prefix": principal.prefix,
            "metadata": {"stream": self.request.stream, "status_code": status_code},
            "events": [
                {"kind": "run.state", "ts": self.started, "payload": {"status": "running"}},
                call,
                {"kind": "run.state", "ts": finished, "payload": end_payload},
            ],
        }
