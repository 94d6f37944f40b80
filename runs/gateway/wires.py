"""Wire formats: the Anthropic Messages, OpenAI Responses and Gemini APIs, translated to and from OpenAI chat.

The gateway speaks only OpenAI Chat Completions inside (request bodies, ``chat.completion`` and
``chat.completion.chunk`` dicts). A :class:`Wire` lets it serve a client that speaks another API (Claude Code,
Codex CLI, Gemini CLI): ``to_chat`` turns the client's request into a chat request, ``from_chat`` a completion into
the client's response, ``encoder`` a stream of chunks into the client's server-sent events, and ``error_body`` an
:class:`ApiError` into the client's error shape. Everything here is pure: no I/O, no state beyond one stream.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from orgs.api_errors import ApiError

Json = dict[str, Any]

EMPTY_SCHEMA: Json = {"type": "object", "properties": {}}


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, code="invalid_value", param=param)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _sse(event: str, data: Json) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _object(value: Any) -> Json:
    """An optional settings object; anything else counts as absent."""
    return value if isinstance(value, dict) else {}


def _array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(f"`{param}` must be an array", param)
    return value


def _dict(value: Any, param: str) -> Json:
    if not isinstance(value, dict):
        raise _bad(f"`{param}` must be an object", param)
    return value


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"`{param}` must be a non-empty string", param)
    return value


def _copy(chat: Json, source: Json, names: dict[str, str]) -> None:
    for theirs, ours in names.items():
        if source.get(theirs) is not None:
            chat[ours] = source[theirs]


def _text_part(text: Any, param: str) -> Json:
    if not isinstance(text, str):
        raise _bad(f"`{param}` must be a string", param)
    return {"type": "text", "text": text}


def _media_part(mime: Any, data: Any, param: str) -> Json:
    """Inline base64 media as a chat content part: images as ``image_url``, anything else (PDFs) as ``file``."""
    if not isinstance(mime, str) or not isinstance(data, str):
        raise _bad(f"`{param}` needs a media type and base64 data", param)
    url = f"data:{mime};base64,{data}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url}}


def _joined(parts: list[Json]) -> str:
    return "\n\n".join(p["text"] for p in parts if p["type"] == "text")


def _function(name: str, description: Any, parameters: Any) -> Json:
    function: Json = {"name": name, "parameters": parameters or EMPTY_SCHEMA}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _named_choice(name: str) -> Json:
    return {"type": "function", "function": {"name": name}}


def _parse_arguments(arguments: Any) -> Json:
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _first_choice(completion: Json) -> Json:
    return next((c for c in completion.get("choices") or [] if c.get("index", 0) == 0), {})


def _tokens(usage: Any) -> tuple[int, int]:
    usage = _object(usage)
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


class _Messages:
    """Chat messages being built. Tool results may hold images, which chat tool messages cannot: those follow in a
    user message once the run of tool messages ends, since tool messages must directly follow their calls."""

    def __init__(self) -> None:
        self.list: list[Json] = []
        self._media: list[Json] = []

    def add(self, message: Json) -> None:
        self._flush()
        self.list.append(message)

    def user(self, parts: list[Json]) -> None:
        parts, self._media = self._media + parts, []
        if parts:
            content = parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts
            self.list.append({"role": "user", "content": content})

    def tool(self, call_id: str, text: str, media: list[Json]) -> None:
        self.list.append({"role": "tool", "tool_call_id": call_id, "content": text})
        self._media += media

    def done(self) -> list[Json]:
        self._flush()
        return self.list

    def _flush(self) -> None:
        if self._media:
            self.list.append({"role": "user", "content": self._media})
            self._media = []


@dataclass
class _Call:
    id: str
    name: str
    arguments: str = ""


class StreamEncoder(ABC):
    """Turns a stream of ``chat.completion.chunk`` dicts (choice 0) into one wire's server-sent events.

    ``feed`` emits what each chunk adds; ``finish`` emits everything that ends the stream, so the gateway can hold
    the end back until the call is recorded. Tool calls are expected one after another, as OpenAI streams them.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.finish_reason: str | None = None
        self.usage: Json = {}
        self.calls: list[_Call] = []
        self._slots: dict[int, _Call] = {}  # by the chunk's tool call index

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        out = [self._begin()]
        choice = _first_choice(chunk)
        delta = _object(choice.get("delta"))
        if delta.get("reasoning_content"):
            out.append(self._reasoning(delta["reasoning_content"]))
        if delta.get("content"):
            out.append(self._text(delta["content"]))
        for piece in delta.get("tool_calls") or []:
            out.append(self._tool_piece(piece))
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return b"".join(out)

    def finish(self) -> bytes:
        return self._begin() + self._end()

    def _begin(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._start()

    def _tool_piece(self, piece: Json) -> bytes:
        function = _object(piece.get("function"))
        index = piece.get("index", 0)
        call = self._slots.get(index)
        out = b""
        # Some providers number every call 0 and tell them apart only by their ids.
        if call is None or (piece.get("id") and piece["id"] != call.id):
            call = _Call(piece.get("id") or _new_id("call_"), function.get("name") or "")
            self._slots[index] = call
            self.calls.append(call)
            out = self._call_started(call)
        if function.get("arguments"):
            call.arguments += function["arguments"]
            out += self._arguments(call, function["arguments"])
        return out

    @abstractmethod
    def _start(self) -> bytes: ...

    @abstractmethod
    def _text(self, text: str) -> bytes: ...

    @abstractmethod
    def _reasoning(self, text: str) -> bytes: ...

    @abstractmethod
    def _call_started(self, call: _Call) -> bytes: ...

    @abstractmethod
    def _arguments(self, call: _Call, piece: str) -> bytes: ...

    @abstractmethod
    def _end(self) -> bytes: ...


class Wire(ABC):
    """One client API, translated to and from OpenAI chat."""

    name: ClassVar[str]

    @abstractmethod
    def to_chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The OpenAI chat request body for this wire's request; raises ApiError(400) when it is malformed."""

    @abstractmethod
    def from_chat(self, completion: dict[str, Any], model: str) -> dict[str, Any]:
        """This wire's response body for a non-streaming ``chat.completion``, naming ``model``."""

    @abstractmethod
    def encoder(self, model: str) -> StreamEncoder: ...

    @abstractmethod
    def error_body(self, error: ApiError) -> dict[str, Any]: ...


# Anthropic Messages ------------------------------------------------------------------------------------------------

ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
ANTHROPIC_ERRORS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
ANTHROPIC_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
THINKING = ("thinking", "redacted_thinking")


def _toolu(call_id: Any) -> str:
    call_id = str(call_id or _new_id("call_"))
    return call_id if call_id.startswith("toolu_") else f"toolu_{call_id}"


def _anthropic_stop(finish_reason: str | None, called: bool) -> str:
    if called and finish_reason != "length":
        return "tool_use"
    return ANTHROPIC_STOP.get(finish_reason or "stop", "end_turn")


def _anthropic_blocks(content: Any, param: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = _array(content, param)
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _bad(f"`{param}[{j}]` must be a content block with a `type`", f"{param}[{j}]")
    return blocks


def _anthropic_part(block: Json, param: str) -> Json:
    kind, source = block["type"], _object(block.get("source"))
    if kind == "text":
        return _text_part(block.get("text"), f"{param}.text")
    if kind in ("image", "document") and source.get("type") == "base64":
        return _media_part(source.get("media_type"), source.get("data"), f"{param}.source")
    if kind == "image" and source.get("type") == "url":
        return {"type": "image_url", "image_url": {"url": _string(source.get("url"), f"{param}.source.url")}}
    raise _bad(f"Content block type {kind!r} is not supported here", param)


def _anthropic_text(content: Any, param: str) -> str:
    return _joined([_anthropic_part(b, f"{param}[{j}]") for j, b in enumerate(_anthropic_blocks(content, param))])


class AnthropicWire(Wire):
    name = "anthropic"

    def to_chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        out = _Messages()
        if body.get("system"):
            out.add({"role": "system", "content": _anthropic_text(body["system"], "system")})
        messages = _array(body.get("messages"), "messages")
        if not messages:
            raise _bad("`messages` must not be empty", "messages")
        for i, message in enumerate(messages):
            param = f"messages[{i}]"
            message = _dict(message, param)
            blocks = _anthropic_blocks(message.get("content"), f"{param}.content")
            role = message.get("role")
            if role == "user":
                self._user(out, blocks, f"{param}.content")
            elif role == "assistant":
                self._assistant(out, blocks, f"{param}.content")
            elif role == "system":  # Claude Code appends these after the user turn
                out.add({"role": "system", "content": _anthropic_text(blocks, f"{param}.content")})
            else:
                raise _bad(f"`{param}.role` must be 'user' or 'assistant', not {role!r}", f"{param}.role")
        chat: Json = {"model": model, "messages": out.done()}
        tools = []
        for j, tool in enumerate(_array(body.get("tools") or [], "tools")):
            tool = _dict(tool, f"tools[{j}]")
            if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
                continue  # a server tool (web search, code execution...): Anthropic runs those, we cannot
            name = _string(tool.get("name"), f"tools[{j}].name")
            tools.append(_function(name, tool.get("description"), tool.get("input_schema")))
        if tools:
            chat["tools"] = tools
            choice = body.get("tool_choice")
            if isinstance(choice, dict):
                kind = choice.get("type")
                if kind == "tool":
                    chat["tool_choice"] = _named_choice(_string(choice.get("name"), "tool_choice.name"))
                elif kind in ANTHROPIC_CHOICES:
                    chat["tool_choice"] = ANTHROPIC_CHOICES[kind]
                else:
                    raise _bad(f"Unknown `tool_choice.type` {kind!r}", "tool_choice.type")
                if choice.get("disable_parallel_tool_use"):
                    chat["parallel_tool_calls"] = False
        _copy(
            chat,
            body,
            {
                "max_tokens": "max_tokens",
                "temperature": "temperature",
                "top_p": "top_p",
                "stop_sequences": "stop",
                "stream": "stream",
            },
        )
        return chat

    def _user(self, out: _Messages, blocks: list[Json], param: str) -> None:
        parts = []
        for j, block in enumerate(blocks):
            where = f"{param}[{j}]"
            if block["type"] == "tool_result":
                call_id = _string(block.get("tool_use_id"), f"{where}.tool_use_id")
                blocks_in = _anthropic_blocks(block.get("content") or "", f"{where}.content")
                result = [_anthropic_part(b, f"{where}.content[{k}]") for k, b in enumerate(blocks_in)]
                out.tool(call_id, _joined(result), [p for p in result if p["type"] != "text"])
            elif block["type"] not in THINKING:
                parts.append(_anthropic_part(block, where))
        out.user(parts)

    def _assistant(self, out: _Messages, blocks: list[Json], param: str) -> None:
        texts, calls = [], []
        for j, block in enumerate(blocks):
            where = f"{param}[{j}]"
            if block["type"] == "tool_use":
                call_id = _string(block.get("id"), f"{where}.id")
                name = _string(block.get("name"), f"{where}.name")
                arguments = json.dumps(block.get("input") or {})
                calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
            elif block["type"] not in THINKING:
                texts.append(_anthropic_part(block, where))
        if texts or calls:
            message: Json = {"role": "assistant", "content": _joined(texts) or None}
            if calls:
                message["tool_calls"] = calls
            out.add(message)

    def from_chat(self, completion: dict[str, Any], model: str) -> dict[str, Any]:
        choice = _first_choice(completion)
        message = _object(choice.get("message"))
        content: list[Json] = []
        if message.get("reasoning_content"):
            content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or []:
            function = _object(call.get("function"))
            content.append(
                {
                    "type": "tool_use",
                    "id": _toolu(call.get("id")),
                    "name": function.get("name") or "",
                    "input": _parse_arguments(function.get("arguments")),
                }
            )
        prompt, completion_tokens = _tokens(completion.get("usage"))
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _anthropic_stop(choice.get("finish_reason"), bool(message.get("tool_calls"))),
            "stop_sequence": None,
            "usage": _anthropic_usage(prompt, completion_tokens),
        }

    def encoder(self, model: str) -> StreamEncoder:
        return AnthropicEncoder(model)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        default = "api_error" if error.status >= 500 else "invalid_request_error"
        return {
            "type": "error",
            "error": {"type": ANTHROPIC_ERRORS.get(error.status, default), "message": error.message},
        }


def _anthropic_usage(prompt: int, completion: int) -> Json:
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


class AnthropicEncoder(StreamEncoder):
    """``message_start``, then content blocks (text, thinking, tool_use) one at a time, each started, streamed by
    deltas and stopped; ``message_delta`` (stop reason, usage) and ``message_stop`` end the message."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.index = -1
        self.open: str | _Call | None = None  # the kind of the open block, or the call it streams

    def _event(self, kind: str, **data: Any) -> bytes:
        return _sse(kind, {"type": kind, **data})

    def _start(self) -> bytes:
        message: Json = {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(*_tokens(self.usage)),
        }
        return self._event("message_start", message=message)

    def _block(self, kind: str | _Call, block: Json) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        return out + self._event("content_block_start", index=self.index, content_block=block)

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return self._event("content_block_stop", index=self.index)

    def _text(self, text: str) -> bytes:
        out = b"" if self.open == "text" else self._block("text", {"type": "text", "text": ""})
        return out + self._event("content_block_delta", index=self.index, delta={"type": "text_delta", "text": text})

    def _reasoning(self, text: str) -> bytes:
        opened = self.open == "thinking"
        out = b"" if opened else self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        delta = {"type": "thinking_delta", "thinking": text}
        return out + self._event("content_block_delta", index=self.index, delta=delta)

    def _call_started(self, call: _Call) -> bytes:
        return self._block(call, {"type": "tool_use", "id": _toolu(call.id), "name": call.name, "input": {}})

    def _arguments(self, call: _Call, piece: str) -> bytes:
        if self.open is not call:  # a closed block cannot take more input; OpenAI never interleaves calls
            return b""
        delta = {"type": "input_json_delta", "partial_json": piece}
        return self._event("content_block_delta", index=self.index, delta=delta)

    def _end(self) -> bytes:
        prompt, completion = _tokens(self.usage)
        delta = {"stop_reason": _anthropic_stop(self.finish_reason, bool(self.calls)), "stop_sequence": None}
        usage = {"input_tokens": prompt, "output_tokens": completion}
        return self._close() + self._event("message_delta", delta=delta, usage=usage) + self._event("message_stop")


# OpenAI Responses --------------------------------------------------------------------------------------------------

RESPONSES_TEXT = ("input_text", "output_text", "text")
RESPONSES_CALLS = ("function_call", "custom_tool_call")
RESPONSES_OUTPUTS = ("function_call_output", "custom_tool_call_output")
RESPONSES_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _responses_parts(content: Any, param: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    parts = []
    for j, part in enumerate(_array(content, param)):
        where = f"{param}[{j}]"
        kind = _dict(part, where).get("type")
        if kind in RESPONSES_TEXT:
            parts.append(_text_part(part.get("text"), f"{where}.text"))
        elif kind == "refusal":
            parts.append(_text_part(part.get("refusal"), f"{where}.refusal"))
        elif kind == "input_image":
            image: Json = {"url": _string(part.get("image_url"), f"{where}.image_url")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"Content part type {kind!r} is not supported", where)
    return parts


def _message_item(item_id: str, text: str, status: str) -> Json:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _reasoning_item(item_id: str, text: str | None) -> Json:
    item: Json = {"type": "reasoning", "id": item_id, "summary": []}
    if text is not None:
        item["content"] = [{"type": "reasoning_text", "text": text}]
    return item


def _function_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _response(
    response_id: str,
    model: str,
    created_at: int,
    output: list[Json],
    *,
    done: bool = True,
    finish_reason: str | None = None,
    usage: Any = None,
) -> Json:
    status, incomplete = ("completed" if done else "in_progress"), None
    if done and finish_reason in ("length", "content_filter"):
        status = "incomplete"
        incomplete = {"reason": "max_output_tokens" if finish_reason == "length" else "content_filter"}
    summary = None
    if done:
        usage = _object(usage)
        prompt, completion = _tokens(usage)
        cached = _object(usage.get("prompt_tokens_details")).get("cached_tokens") or 0
        reasoning = _object(usage.get("completion_tokens_details")).get("reasoning_tokens") or 0
        summary = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        }
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": summary,
        "user": None,
        "metadata": {},
    }


class ResponsesWire(Wire):
    name = "responses"

    def to_chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        out = _Messages()
        instructions = body.get("instructions")
        if instructions:
            out.add({"role": "system", "content": _string(instructions, "instructions")})
        items = body.get("input")
        if isinstance(items, str):
            out.user([{"type": "text", "text": items}])
        elif isinstance(items, list):
            for i, item in enumerate(items):
                self._item(out, _dict(item, f"input[{i}]"), f"input[{i}]")
        else:
            raise _bad("`input` must be a string or an array of input items", "input")
        chat: Json = {"model": model, "messages": out.done()}
        tools = []
        for j, tool in enumerate(_array(body.get("tools") or [], "tools")):
            tool = _dict(tool, f"tools[{j}]")
            if tool.get("type") != "function":
                continue  # web_search, local_shell, custom...: tools chat models cannot be offered
            function = _function(
                _string(tool.get("name"), f"tools[{j}].name"), tool.get("description"), tool.get("parameters")
            )
            if tool.get("strict") is True:
                function["function"]["strict"] = True
            tools.append(function)
        if tools:
            chat["tools"] = tools
            choice = body.get("tool_choice")
            if choice in ("auto", "none", "required"):
                chat["tool_choice"] = choice
            elif isinstance(choice, dict) and choice.get("type") == "function":
                chat["tool_choice"] = _named_choice(_string(choice.get("name"), "tool_choice.name"))
            if isinstance(body.get("parallel_tool_calls"), bool):
                chat["parallel_tool_calls"] = body["parallel_tool_calls"]
        text_format = _object(_object(body.get("text")).get("format"))
        if text_format.get("type") == "json_schema":
            schema: Json = {"name": text_format.get("name") or "response", "schema": text_format.get("schema") or {}}
            if isinstance(text_format.get("strict"), bool):
                schema["strict"] = text_format["strict"]
            chat["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif text_format.get("type") == "json_object":
            chat["response_format"] = {"type": "json_object"}
        _copy(
            chat,
            body,
            {"max_output_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "stream": "stream"},
        )
        return chat

    def _item(self, out: _Messages, item: Json, param: str) -> None:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = RESPONSES_ROLES.get(str(item.get("role")))
            if role is None:
                raise _bad(f"`{param}.role` must be user, assistant, system or developer", f"{param}.role")
            parts = _responses_parts(item.get("content"), f"{param}.content")
            if role == "user":
                out.user(parts)
            else:
                out.add({"role": role, "content": _joined(parts)})
        elif kind in RESPONSES_CALLS:
            name = _string(item.get("name"), f"{param}.name")
            if kind == "function_call":
                arguments = item.get("arguments") or "{}"
            else:
                arguments = json.dumps({"input": item.get("input")})
            call_id = _string(item.get("call_id"), f"{param}.call_id")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            last = out.list[-1] if out.list else {}
            if last.get("role") == "assistant":  # consecutive calls (and the text before them) are one message
                last.setdefault("tool_calls", []).append(call)
            else:
                out.add({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in RESPONSES_OUTPUTS:
            output = item.get("output")
            parts = [] if output is None else _responses_parts(output, f"{param}.output")
            call_id = _string(item.get("call_id"), f"{param}.call_id")
            out.tool(call_id, _joined(parts), [p for p in parts if p["type"] != "text"])
        elif kind is None:
            raise _bad(f"`{param}` needs a `type` or a `role`", param)
        # reasoning, local_shell_call, web_search_call, item_reference...: nothing a chat model can be given

    def from_chat(self, completion: dict[str, Any], model: str) -> dict[str, Any]:
        choice = _first_choice(completion)
        message = _object(choice.get("message"))
        output = []
        if message.get("reasoning_content"):
            output.append(_reasoning_item(_new_id("rs_"), message["reasoning_content"]))
        if message.get("content"):
            output.append(_message_item(_new_id("msg_"), message["content"], "completed"))
        for call in message.get("tool_calls") or []:
            function = _object(call.get("function"))
            call_id = call.get("id") or _new_id("call_")
            output.append(
                _function_item(
                    _new_id("fc_"), call_id, function.get("name") or "", function.get("arguments") or "", "completed"
                )
            )
        created = int(completion.get("created") or time.time())
        return _response(
            _new_id("resp_"),
            model,
            created,
            output,
            finish_reason=choice.get("finish_reason"),
            usage=completion.get("usage"),
        )

    def encoder(self, model: str) -> StreamEncoder:
        return ResponsesEncoder(model)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return error.body()


class ResponsesEncoder(StreamEncoder):
    """``response.created`` and ``response.in_progress``, then output items one at a time (reasoning, message,
    function_call), each added, streamed by deltas and done; ``response.completed`` carries the whole response.

    A response cut short by the token limit also ends with ``response.completed`` (status ``incomplete``):
    Codex takes OpenAI's ``response.incomplete`` event for a failed stream and retries it.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id = _new_id("resp_")
        self.created_at = int(time.time())
        self.sequence = 0
        self.output: list[Json] = []
        self.open: Json | None = None  # the output item being streamed
        self.open_call: _Call | None = None
        self.text = ""  # of the open message or reasoning item

    def _event(self, kind: str, **data: Any) -> bytes:
        event = _sse(kind, {"type": kind, "sequence_number": self.sequence, **data})
        self.sequence += 1
        return event

    def _where(self) -> Json:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output) - 1}

    def _start(self) -> bytes:
        response = _response(self.id, self.model, self.created_at, [], done=False)
        return b"".join(self._event(kind, response=response) for kind in ("response.created", "response.in_progress"))

    def _add(self, item: Json) -> bytes:
        out = self._close()
        self.open = item
        self.output.append(item)
        return out + self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)

    def _close(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        where, out = self._where(), b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": self.text, "annotations": []}
            out += self._event("response.output_text.done", **where, content_index=0, text=self.text, logprobs=[])
            out += self._event("response.content_part.done", **where, content_index=0, part=part)
            item.update(_message_item(item["id"], self.text, "completed"))
        elif item["type"] == "reasoning":
            out += self._event("response.reasoning_text.done", **where, content_index=0, text=self.text)
            item.update(_reasoning_item(item["id"], self.text))
        else:
            assert self.open_call is not None
            name, arguments = self.open_call.name, self.open_call.arguments
            out += self._event("response.function_call_arguments.done", **where, name=name, arguments=arguments)
            item.update(arguments=arguments, status="completed")
        self.open, self.open_call, self.text = None, None, ""
        return out + self._event("response.output_item.done", output_index=where["output_index"], item=item)

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "message":
            out = self._add(_message_item(_new_id("msg_"), "", "in_progress"))
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event("response.content_part.added", **self._where(), content_index=0, part=part)
        self.text += text
        delta = {"content_index": 0, "delta": text, "logprobs": []}
        return out + self._event("response.output_text.delta", **self._where(), **delta)

    def _reasoning(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.open["type"] != "reasoning":
            out = self._add(_reasoning_item(_new_id("rs_"), None))
        self.text += text
        return out + self._event("response.reasoning_text.delta", **self._where(), content_index=0, delta=text)

    def _call_started(self, call: _Call) -> bytes:
        out = self._add(_function_item(_new_id("fc_"), call.id, call.name, "", "in_progress"))
        self.open_call = call
        return out

    def _arguments(self, call: _Call, piece: str) -> bytes:
        if self.open_call is not call:  # a done item cannot take more arguments; OpenAI never interleaves calls
            return b""
        return self._event("response.function_call_arguments.delta", **self._where(), delta=piece)

    def _end(self) -> bytes:
        out = self._close()
        response = _response(
            self.id, self.model, self.created_at, self.output, finish_reason=self.finish_reason, usage=self.usage
        )
        return out + self._event("response.completed", response=response)


# Gemini ------------------------------------------------------------------------------------------------------------

GEMINI_FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GEMINI_PARTS = ("text", "functionCall", "functionResponse", "inlineData")


def _lower_types(schema: Any) -> Any:
    """A Gemini (OpenAPI-style) schema as JSON schema, whose types are lower case ("OBJECT" -> "object")."""
    if isinstance(schema, list):
        return [_lower_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    lowered = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            value = value.lower()
        elif key == "type" and isinstance(value, list):
            value = [t.lower() if isinstance(t, str) else t for t in value]
        else:
            value = _lower_types(value)
        lowered[key] = value
    return lowered


def _gemini_kind(part: Json, param: str) -> str | None:
    """The kind of a content part, or None for the model's thoughts (which are not passed back)."""
    if part.get("thought"):
        return None
    kind = next((k for k in GEMINI_PARTS if k in part), None)
    if kind is None and set(part) - {"thoughtSignature"}:
        raise _bad(f"`{param}` is not a part we support (text, functionCall, functionResponse, inlineData)", param)
    return kind


class _CallIds:
    """Tool call ids for Gemini history, whose function calls may have none: a call keeps its id or gets a stable
    generated one, and a function response answers the earliest open call with its id, else with its name."""

    def __init__(self) -> None:
        self.open: list[tuple[str, str]] = []  # (name, id) of calls not answered yet
        self.count = 0

    def call(self, name: str, given: Any) -> str:
        call_id = given if isinstance(given, str) and given else f"call_{self.count}_{name}"
        self.count += 1
        self.open.append((name, call_id))
        return call_id

    def answer(self, name: str, given: Any) -> str | None:
        found = next((k for k, (_, i) in enumerate(self.open) if given and i == given), None)
        if found is None:
            found = next((k for k, (n, _) in enumerate(self.open) if n == name), None)
        return None if found is None else self.open.pop(found)[1]


class GeminiWire(Wire):
    name = "gemini"

    def to_chat(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """Gemini chooses streaming by the URL (``:streamGenerateContent``), so ``stream`` is left to the caller."""
        out = _Messages()
        system = body.get("systemInstruction")
        if isinstance(system, str) and system:
            out.add({"role": "system", "content": system})
        elif isinstance(system, dict):
            param = "systemInstruction.parts"
            parts = _array(system.get("parts") or [], param)
            texts = [
                _text_part(_dict(p, f"{param}[{j}]").get("text"), f"{param}[{j}].text") for j, p in enumerate(parts)
            ]
            if texts:
                out.add({"role": "system", "content": _joined(texts)})
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _bad("`contents` is required and must be a non-empty array", "contents")
        ids = _CallIds()
        for i, content in enumerate(contents):
            param = f"contents[{i}]"
            content = _dict(content, param)
            role = content.get("role") or "user"
            parts = _array(content.get("parts"), f"{param}.parts")
            if role == "model":
                self._model(out, parts, ids, f"{param}.parts")
            elif role in ("user", "function"):
                self._user(out, parts, ids, f"{param}.parts")
            else:
                raise _bad(f"`{param}.role` must be 'user' or 'model', not {role!r}", f"{param}.role")
        chat: Json = {"model": model, "messages": out.done()}
        tools = []
        for j, tool in enumerate(_array(body.get("tools") or [], "tools")):
            declarations = _dict(tool, f"tools[{j}]").get("functionDeclarations") or []  # googleSearch etc: dropped
            for k, declaration in enumerate(_array(declarations, f"tools[{j}].functionDeclarations")):
                where = f"tools[{j}].functionDeclarations[{k}]"
                declaration = _dict(declaration, where)
                schema = declaration.get("parametersJsonSchema") or declaration.get("parameters")
                name = _string(declaration.get("name"), f"{where}.name")
                tools.append(_function(name, declaration.get("description"), _lower_types(schema)))
        if tools:
            chat["tools"] = tools
            calling = _object(_object(body.get("toolConfig")).get("functionCallingConfig"))
            mode, allowed = str(calling.get("mode") or "AUTO").upper(), calling.get("allowedFunctionNames") or []
            if mode == "NONE":
                chat["tool_choice"] = "none"
            elif mode == "ANY":
                named = len(allowed) == 1 and isinstance(allowed[0], str)
                chat["tool_choice"] = _named_choice(allowed[0]) if named else "required"
        config = _object(body.get("generationConfig"))
        _copy(
            chat,
            config,
            {
                "temperature": "temperature",
                "topP": "top_p",
                "maxOutputTokens": "max_tokens",
                "stopSequences": "stop",
                "candidateCount": "n",
            },
        )
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseJsonSchema") or config.get("responseSchema")
            if schema:
                json_schema = {"name": "response", "schema": _lower_types(schema)}
                chat["response_format"] = {"type": "json_schema", "json_schema": json_schema}
            else:
                chat["response_format"] = {"type": "json_object"}
        return chat

    def _model(self, out: _Messages, parts: list[Any], ids: _CallIds, param: str) -> None:
        texts, calls = [], []
        for j, part in enumerate(parts):
            where = f"{param}[{j}]"
            part = _dict(part, where)
            kind = _gemini_kind(part, where)
            if kind == "text":
                texts.append(_text_part(part["text"], f"{where}.text")["text"])
            elif kind == "functionCall":
                call = _dict(part["functionCall"], f"{where}.functionCall")
                name = _string(call.get("name"), f"{where}.functionCall.name")
                function = {"name": name, "arguments": json.dumps(call.get("args") or {})}
                calls.append({"id": ids.call(name, call.get("id")), "type": "function", "function": function})
            elif kind is not None:
                raise _bad(f"`{where}`: a model turn cannot hold {kind}", where)
        if texts or calls:
            message: Json = {"role": "assistant", "content": "".join(texts) or None}
            if calls:
                message["tool_calls"] = calls
            out.add(message)

    def _user(self, out: _Messages, parts: list[Any], ids: _CallIds, param: str) -> None:
        chat_parts = []
        for j, part in enumerate(parts):
            where = f"{param}[{j}]"
            part = _dict(part, where)
            kind = _gemini_kind(part, where)
            if kind == "text":
                chat_parts.append(_text_part(part["text"], f"{where}.text"))
            elif kind == "inlineData":
                data = _dict(part["inlineData"], f"{where}.inlineData")
                chat_parts.append(_media_part(data.get("mimeType"), data.get("data"), f"{where}.inlineData"))
            elif kind == "functionResponse":
                answer = _dict(part["functionResponse"], f"{where}.functionResponse")
                name = _string(answer.get("name"), f"{where}.functionResponse.name")
                call_id = ids.answer(name, answer.get("id"))
                if call_id is None:
                    raise _bad(f"`{where}` answers no earlier functionCall of {name!r}", where)
                response = _object(answer.get("response"))
                output = response.get("output") if set(response) == {"output"} else None
                out.tool(call_id, output if isinstance(output, str) else json.dumps(response), [])
            elif kind is not None:
                raise _bad(f"`{where}`: a user turn cannot hold {kind}", where)
        out.user(chat_parts)

    def from_chat(self, completion: dict[str, Any], model: str) -> dict[str, Any]:
        candidates = []
        for choice in completion.get("choices") or []:
            message = _object(choice.get("message"))
            parts: list[Json] = []
            if message.get("reasoning_content"):
                parts.append({"text": message["reasoning_content"], "thought": True})
            if message.get("content"):
                parts.append({"text": message["content"]})
            for call in message.get("tool_calls") or []:
                function = _object(call.get("function"))
                parts.append(_function_call(call.get("id"), function.get("name"), function.get("arguments")))
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": GEMINI_FINISH.get(choice.get("finish_reason") or "stop", "STOP"),
                    "index": choice.get("index", 0),
                }
            )
        return {
            "candidates": candidates,
            "usageMetadata": _gemini_usage(completion.get("usage")),
            "modelVersion": model,
            "responseId": completion.get("id") or _new_id(""),
        }

    def encoder(self, model: str) -> StreamEncoder:
        return GeminiEncoder(model)

    def error_body(self, error: ApiError) -> dict[str, Any]:
        status = GEMINI_STATUS.get(error.status) or ("INTERNAL" if error.status >= 500 else "INVALID_ARGUMENT")
        return {"error": {"code": error.status, "message": error.message, "status": status}}


def _function_call(call_id: Any, name: Any, arguments: Any) -> Json:
    # The id is optional in Gemini; given, Gemini CLI sends it back with the response, which pairs them exactly.
    call: Json = {"name": name or "", "args": _parse_arguments(arguments)}
    if call_id:
        call["id"] = call_id
    return {"functionCall": call}


def _gemini_usage(usage: Any) -> Json:
    prompt, completion = _tokens(usage)
    total = int(_object(usage).get("total_tokens") or prompt + completion)
    return {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": total}


class GeminiEncoder(StreamEncoder):
    """One ``data:`` event per text piece; a function call once it is whole (when the next one starts, or at the
    end), since Gemini sends each call in one part. The last event carries ``finishReason`` and usage."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.id = _new_id("")
        self.sent = 0  # calls already sent

    def _chunk(self, parts: list[Json], finish_reason: str | None = None) -> bytes:
        candidate: Json = {"content": {"role": "model", "parts": parts}, "index": 0}
        body: Json = {"candidates": [candidate]}
        if finish_reason:
            candidate["finishReason"] = finish_reason
            body["usageMetadata"] = _gemini_usage(self.usage)
        body.update(modelVersion=self.model, responseId=self.id)
        return f"data: {json.dumps(body)}\n\n".encode()

    def _calls(self, upto: int) -> list[Json]:
        ready, self.sent = self.calls[self.sent : upto], max(self.sent, upto)
        return [_function_call(c.id, c.name, c.arguments) for c in ready]

    def _start(self) -> bytes:
        return b""

    def _text(self, text: str) -> bytes:
        return self._chunk([{"text": text}])

    def _reasoning(self, text: str) -> bytes:
        return self._chunk([{"text": text, "thought": True}])

    def _call_started(self, call: _Call) -> bytes:
        ready = self._calls(len(self.calls) - 1)
        return self._chunk(ready) if ready else b""

    def _arguments(self, call: _Call, piece: str) -> bytes:
        return b""

    def _end(self) -> bytes:
        reason = GEMINI_FINISH.get(self.finish_reason or "stop", "STOP")
        return self._chunk(self._calls(len(self.calls)), reason)


WIRES: dict[str, Wire] = {wire.name: wire for wire in (AnthropicWire(), ResponsesWire(), GeminiWire())}
