"""A recorded model call's conversation in one shape, whatever wire it travelled in.

A ``model.call`` keeps the request and response as the client sent and got them (``schemas.ModelCall``): OpenAI chat
completions, Anthropic Messages, OpenAI Responses, Gemini, or an imported format (Inspect AI, ATIF). Readers (the
run page, judges, compare, exports) want the same few things from every one of them: the messages the model was
given and what it answered (text, thoughts, tool calls). These readers turn each wire into :class:`Message`s.

They read stored data, which may be old or odd: they never raise, and skip what they do not recognise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


@dataclass(frozen=True)
class ToolRequest:
    """A tool the model asked for."""

    name: str
    arguments: Any  # parsed from JSON when the wire carries a string
    id: str = ""


@dataclass(frozen=True)
class Message:
    """One turn of a conversation. A tool's result is a ``tool`` message answering ``tool_call_id``."""

    role: str
    text: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolRequest, ...] = ()
    tool_call_id: str = ""

    @property
    def empty(self) -> bool:
        return not (self.text or self.thinking or self.tool_calls)


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _arguments(value: Any) -> Any:
    """Tool arguments as data: wires that send them as a JSON string get them parsed (kept as text if not JSON)."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            return value
    return value


def _joined(pieces: list[str]) -> str:
    return "\n".join(p for p in pieces if p)


def part_text(part: Any) -> str:
    """The text of one content part in any wire (``text``, ``input_text``, ``output_text``, Gemini's bare ``text``,
    Inspect's ``reasoning``); a part without text (an image, a file) is named by its type."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    for key in ("text", "refusal"):
        if isinstance(part.get(key), str):
            return part[key]
    kind = part.get("type") or next((k for k in ("inlineData", "fileData", "image_url") if k in part), "")
    return f"[{kind}]" if kind else ""


def content_text(content: Any) -> str:
    """A message's content as text: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    return _joined([part_text(p) for p in _list(content)])


# OpenAI chat completions --------------------------------------------------------------------------------------------


def _chat_calls(calls: Any) -> tuple[ToolRequest, ...]:
    out = []
    for call in _list(calls):
        function = _dict(_dict(call).get("function"))
        out.append(ToolRequest(_str(function.get("name")), _arguments(function.get("arguments")), _str(call.get("id"))))
    return tuple(out)


def _chat_message(message: Json) -> Message:
    return Message(
        role=_str(message.get("role")) or "assistant",
        text=content_text(message.get("content")),
        thinking=_str(message.get("reasoning_content")),
        tool_calls=_chat_calls(message.get("tool_calls")),
        tool_call_id=_str(message.get("tool_call_id")),
    )


def chat_messages(request: Json) -> list[Message]:
    return [_chat_message(m) for m in _list(request.get("messages")) if isinstance(m, dict)]


def chat_answer(response: Json) -> Message:
    choices = [c for c in _list(response.get("choices")) if isinstance(c, dict)]
    first = next((c for c in choices if c.get("index", 0) == 0), choices[0] if choices else {})
    return _chat_message({**_dict(first.get("message")), "role": "assistant"})


# Anthropic Messages --------------------------------------------------------------------------------------------------


def _anthropic_turn(role: str, content: Any) -> list[Message]:
    """One Anthropic message; the tool results a user turn carries become ``tool`` messages of their own."""
    if isinstance(content, str):
        return [Message(role, content)]
    texts, thoughts, calls, results = [], [], [], []
    for block in _list(content):
        block = _dict(block)
        kind = block.get("type")
        if kind == "tool_use":
            calls.append(ToolRequest(_str(block.get("name")), block.get("input"), _str(block.get("id"))))
        elif kind == "tool_result":
            answered = _str(block.get("tool_use_id"))
            results.append(Message("tool", content_text(block.get("content")), tool_call_id=answered))
        elif kind == "thinking":
            thoughts.append(_str(block.get("thinking")))
        elif kind != "redacted_thinking":
            texts.append(part_text(block))
    turn = Message(role, _joined(texts), _joined(thoughts), tuple(calls))
    return [*results, *([] if turn.empty else [turn])]


def anthropic_messages(request: Json) -> list[Message]:
    out = []
    if request.get("system"):
        out.append(Message("system", content_text(request["system"])))
    for message in _list(request.get("messages")):
        message = _dict(message)
        out += _anthropic_turn(_str(message.get("role")) or "user", message.get("content"))
    return out


def anthropic_answer(response: Json) -> Message:
    turns = _anthropic_turn("assistant", response.get("content"))
    return next((m for m in turns if m.role == "assistant"), Message("assistant"))


# OpenAI Responses ----------------------------------------------------------------------------------------------------

RESPONSES_ROLES = {"developer": "system"}


def _responses_item(item: Json) -> Message | None:
    kind = item.get("type", "message")
    if kind == "message":
        role = _str(item.get("role")) or "assistant"
        return Message(RESPONSES_ROLES.get(role, role), content_text(item.get("content")))
    if kind == "reasoning":
        text = content_text(item.get("content")) or content_text(item.get("summary"))
        return Message("assistant", thinking=text)
    if kind in ("function_call", "custom_tool_call"):
        arguments = _arguments(item.get("arguments")) if kind == "function_call" else item.get("input")
        call = ToolRequest(_str(item.get("name")), arguments, _str(item.get("call_id")))
        return Message("assistant", tool_calls=(call,))
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        text = output if isinstance(output, str) else content_text(output)
        return Message("tool", text, tool_call_id=_str(item.get("call_id")))
    return None


def responses_messages(request: Json) -> list[Message]:
    out = []
    if isinstance(request.get("instructions"), str) and request["instructions"]:
        out.append(Message("system", request["instructions"]))
    given = request.get("input")
    if isinstance(given, str):
        return [*out, Message("user", given)]
    for item in _list(given):
        message = _responses_item(_dict(item))
        if message is not None:
            out.append(message)
    return out


def _merged(messages: list[Message], role: str = "assistant") -> Message:
    """One answer from the several items or parts it came in."""
    return Message(
        role,
        _joined([m.text for m in messages]),
        _joined([m.thinking for m in messages]),
        tuple(call for m in messages for call in m.tool_calls),
    )


def responses_answer(response: Json) -> Message:
    items = [_responses_item(_dict(item)) for item in _list(response.get("output"))]
    return _merged([m for m in items if m is not None and m.role == "assistant"])


# Gemini --------------------------------------------------------------------------------------------------------------

GEMINI_ROLES = {"model": "assistant", "function": "user"}


def _gemini_turn(role: str, parts: Any) -> list[Message]:
    texts, thoughts, calls, results = [], [], [], []
    for part in _list(parts):
        part = _dict(part)
        if "functionCall" in part:
            call = _dict(part["functionCall"])
            calls.append(ToolRequest(_str(call.get("name")), call.get("args"), _str(call.get("id"))))
        elif "functionResponse" in part:
            answer = _dict(part["functionResponse"])
            response = answer.get("response")
            output = _dict(response).get("output") if set(_dict(response)) == {"output"} else None
            text = output if isinstance(output, str) else json.dumps(response, ensure_ascii=False)
            results.append(Message("tool", text, tool_call_id=_str(answer.get("id")) or _str(answer.get("name"))))
        elif part.get("thought"):
            thoughts.append(_str(part.get("text")))
        else:
            texts.append(part_text(part))
    turn = Message(GEMINI_ROLES.get(role, role), _joined(texts), _joined(thoughts), tuple(calls))
    return [*results, *([] if turn.empty else [turn])]


def gemini_messages(request: Json) -> list[Message]:
    out = []
    system = request.get("systemInstruction")
    if isinstance(system, str) and system:
        out.append(Message("system", system))
    elif isinstance(system, dict):
        out.append(Message("system", content_text(system.get("parts"))))
    for content in _list(request.get("contents")):
        content = _dict(content)
        out += _gemini_turn(_str(content.get("role")) or "user", content.get("parts"))
    return out


def gemini_answer(response: Json) -> Message:
    candidates = [c for c in _list(response.get("candidates")) if isinstance(c, dict)]
    first = next((c for c in candidates if c.get("index", 0) == 0), candidates[0] if candidates else {})
    turns = _gemini_turn("model", _dict(first.get("content")).get("parts"))
    return next((m for m in turns if m.role == "assistant"), Message("assistant"))


# Inspect AI (its ChatMessage and ModelOutput, as imported) -----------------------------------------------------------


def _inspect_message(message: Json) -> Message:
    content = message.get("content")
    parts = _list(content)
    thinking = _joined([_str(_dict(p).get("reasoning")) for p in parts if _dict(p).get("type") == "reasoning"])
    if parts:
        content = [p for p in parts if _dict(p).get("type") != "reasoning"]
    calls = tuple(
        ToolRequest(_str(call.get("function")), call.get("arguments"), _str(call.get("id")))
        for call in map(_dict, _list(message.get("tool_calls")))
    )
    return Message(
        _str(message.get("role")) or "assistant",
        content_text(content),
        thinking,
        calls,
        _str(message.get("tool_call_id")),
    )


def inspect_messages(request: Json) -> list[Message]:
    return [_inspect_message(m) for m in _list(request.get("messages")) if isinstance(m, dict)]


def inspect_answer(response: Json) -> Message:
    choices = [c for c in _list(response.get("choices")) if isinstance(c, dict)]
    message = _dict(choices[0].get("message")) if choices else {}
    return _inspect_message({**message, "role": "assistant"})


# ATIF (an agent step: no request kept) -------------------------------------------------------------------------------


def atif_answer(response: Json) -> Message:
    calls = tuple(
        ToolRequest(_str(call.get("function_name")), call.get("arguments"), _str(call.get("tool_call_id")))
        for call in map(_dict, _list(response.get("tool_calls")))
    )
    message = response.get("message")
    text = message if isinstance(message, str) else content_text(message)
    return Message("assistant", text, _str(response.get("reasoning_content")), calls)


READERS: dict[str, tuple[Callable[[Json], list[Message]], Callable[[Json], Message]]] = {
    "chat": (chat_messages, chat_answer),
    "anthropic": (anthropic_messages, anthropic_answer),
    "responses": (responses_messages, responses_answer),
    "gemini": (gemini_messages, gemini_answer),
    "inspect": (inspect_messages, inspect_answer),
    "atif": (lambda _request: [], atif_answer),
}


def messages(wire: str, request: Any) -> list[Message]:
    """The conversation a request gave the model, oldest first."""
    reader = READERS.get(wire)
    return reader[0](request) if reader is not None and isinstance(request, dict) else []


def answer(wire: str, response: Any) -> Message:
    """What the model answered (its first choice or candidate)."""
    reader = READERS.get(wire)
    return reader[1](response) if reader is not None and isinstance(response, dict) else Message("assistant")
