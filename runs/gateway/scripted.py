"""The offline ``scripted`` model provider, registered through litellm's own custom-provider mechanism.

It answers deterministically and instantly, so the whole platform runs without a provider key:
- offered tools (and ``tool_choice`` not ``"none"``), and the last message is not a tool result: it calls the tool
  ``tool_choice`` names, or the first one, with arguments filled from the tool's JSON schema;
- ``response_format`` asks for JSON: a JSON object (filled from the schema when one is given);
- otherwise text: an echo of the last user message, or a note of the tool result it was given.
``scripted/score-N`` answers every integer of a JSON schema with N (a judge with a fixed verdict). ``stop``
sequences cut the text, ``n`` gives that many choices, and usage counts whitespace-separated words.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

PROVIDER = "scripted"
MODELS = ("scripted/default", "scripted/alt")


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(_text_of(m.get("content")).split()) for m in messages)


def _fill(schema: dict[str, Any], text: str, number: int | None = None) -> Any:
    """A deterministic value matching a (simple) JSON schema; integers are ``number`` (kept within the schema's
    bounds) when given, else 1."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: _fill(props.get(name, {}), text, number) for name in required}
    if kind == "array":
        return [_fill(schema.get("items", {}), text, number)]
    if kind == "integer":
        if number is None:
            return 1
        return max(schema.get("minimum", number), min(schema.get("maximum", number), number))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    return text


SHELL_TOOLS = ("shell", "bash", "Bash", "run_shell_command", "exec_command", "local_shell")
BLOCK = re.compile(r"^```(?:bash|sh|shell)[ \t]*\n(.*?)^```", re.M | re.S)
RUNBOOK = re.compile(r"<runbook>\n?(.*?)</runbook>", re.S)


def runbook_blocks(text: str) -> list[str]:
    """The bash blocks of a runbook, in order."""
    return [block.strip() for block in BLOCK.findall(text) if block.strip()]


def shell_tool(tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    functions = [t.get("function", t) for t in tools]
    named = next((f for f in functions if f.get("name") in SHELL_TOOLS), None)
    return named or next((f for f in functions if "command" in (f.get("parameters") or {}).get("properties", {})), None)


def shell_arguments(function: dict[str, Any], command: str) -> dict[str, Any]:
    schema = function.get("parameters") or {}
    properties = schema.get("properties", {})
    key = "cmd" if "cmd" in properties and "command" not in properties else "command"
    arguments = {name: _fill(properties.get(name, {}), "") for name in schema.get("required", []) if name != key}
    kind = properties.get(key, {}).get("type")
    arguments[key] = ["bash", "-lc", command] if kind == "array" else command
    return arguments


def summary_command(blocks: list[str]) -> str:
    # Nothing that looks like command substitution: Gemini CLI refuses to run such commands.
    firsts = [b.splitlines()[0][:80].replace("`", "'").replace("$(", "(") for b in blocks]
    steps = "\n".join(f"{i}. {line}" for i, line in enumerate(firsts, start=1))
    body = f"# Summary\n\nRan {len(blocks)} step(s) of the runbook with the scripted model:\n\n{steps}\n"
    return (
        "mkdir -p /app/results && [ -f /app/results/summary.md ] || "
        f"cat > /app/results/summary.md <<'JETTY_SUMMARY'\n{body}JETTY_SUMMARY"
    )


class Turn:
    """What the scripted model says to one request."""

    def __init__(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]):
        self.model = model
        self.messages = messages
        self.params = params
        self.tool_call: dict[str, Any] | None = None
        self.text = ""
        self._decide()

    @property
    def number(self) -> int | None:
        """``scripted/score-N`` fills every integer of a JSON answer with N: a judge with a fixed verdict."""
        found = re.fullmatch(r"score-(\d+)", self.model)
        return int(found.group(1)) if found else None

    def _call(self, function: dict[str, Any], arguments: Any) -> None:
        digest = hashlib.sha256(json.dumps(self.messages, sort_keys=True, default=str).encode()).hexdigest()
        self.tool_call = {
            "id": f"call_{digest[:24]}",
            "type": "function",
            "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)},
        }

    def _follow_runbook(self, tools: list[dict[str, Any]]) -> bool:
        """The runbook policy: run the mission's bash blocks in order through the shell tool, then the summary."""
        texts = [(m.get("role"), _text_of(m.get("content"))) for m in self.messages]
        # An agent CLI gets the runbook inside its prompt, delimited, beside its own long system prompt.
        tagged = next((found.group(1) for _, t in texts if (found := RUNBOOK.search(t))), None)
        system = next((t for role, t in texts if role in ("system", "developer")), "")
        blocks = runbook_blocks(tagged if tagged is not None else system)
        shell = shell_tool(tools)
        # An agent CLI's mission with no bash block ("You are a code reviewer..."): the summary, then done. Calling
        # the first tool offered instead sent Claude Code into its Agent tool, asking itself without end.
        if shell is None or (not blocks and tagged is None):
            return False
        done = sum(1 for m in self.messages if m.get("role") == "tool")
        if done < len(blocks):
            self._call(shell, shell_arguments(shell, blocks[done]))
        elif done == len(blocks):
            self._call(shell, shell_arguments(shell, summary_command(blocks)))
        else:
            self.text = f"Runbook complete: ran {len(blocks)} step(s) and wrote /app/results/summary.md."
        return True

    def _decide(self) -> None:
        last = self.messages[-1] if self.messages else {}
        tools = self.params.get("tools") or []
        choice = self.params.get("tool_choice")
        user_text = next((_text_of(m.get("content")) for m in reversed(self.messages) if m.get("role") == "user"), "")
        if tools and choice != "none" and self._follow_runbook(tools):
            return
        if tools and choice != "none" and last.get("role") != "tool":
            function = tools[0].get("function", {})
            if isinstance(choice, dict) and choice.get("function", {}).get("name"):
                wanted = choice["function"]["name"]
                function = next((t["function"] for t in tools if t.get("function", {}).get("name") == wanted), function)
            self._call(function, _fill(function.get("parameters") or {"type": "object", "properties": {}}, user_text))
            return
        response_format = self.params.get("response_format") or {}
        if last.get("role") == "tool":
            reply = f"The tool returned: {_text_of(last.get('content'))[:500]}"
        else:
            reply = f"echo: {user_text}" if self.model != "alt" else f"alt says: {user_text}"
        if response_format.get("type") == "json_schema":
            schema = response_format.get("json_schema", {}).get("schema", {})
            self.text = json.dumps(_fill(schema, reply, self.number))
        elif response_format.get("type") == "json_object":
            self.text = json.dumps({"answer": reply})
        else:
            self.text = self._cut(reply)

    def _cut(self, text: str) -> str:
        stop = self.params.get("stop")
        for marker in [stop] if isinstance(stop, str) else stop or []:
            if marker and marker in text:
                text = text[: text.index(marker)]
        return text

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_call else "stop"

    @property
    def usage(self) -> dict[str, int]:
        prompt = _words(self.messages)
        completion = len(self.text.split()) + (8 if self.tool_call else 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def message(self) -> dict[str, Any]:
        if self.tool_call:
            return {"role": "assistant", "content": None, "tool_calls": [self.tool_call]}
        return {"role": "assistant", "content": self.text}

    def chunks(self) -> Iterator[GenericStreamingChunk]:
        n = int(self.params.get("n") or 1)
        for index in range(n):
            if self.tool_call:
                call = dict(self.tool_call, index=0)
                yield GenericStreamingChunk(
                    text="",
                    tool_use=call,  # type: ignore[typeddict-item]
                    is_finished=False,
                    finish_reason="",
                    usage=None,
                    index=index,
                )
            else:
                words = self.text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == len(words) - 1 else word + " "
                    yield GenericStreamingChunk(
                        text=piece, tool_use=None, is_finished=False, finish_reason="", usage=None, index=index
                    )
        yield GenericStreamingChunk(
            text="",
            tool_use=None,
            is_finished=True,
            finish_reason=self.finish_reason,
            usage=self.usage,  # type: ignore[typeddict-item]
            index=0,
        )


class ScriptedLLM(CustomLLM):
    """litellm handler for ``scripted/<name>`` models."""

    def _turn(self, model: str, messages: list, optional_params: dict) -> Turn:
        return Turn(model, messages, optional_params)

    # litellm calls these with keyword arguments; only the model, messages and parameters matter here.
    def completion(self, model, messages, *args, optional_params, **kwargs) -> ModelResponse:  # type: ignore[override]
        turn = self._turn(model, messages, optional_params)
        n = int(optional_params.get("n") or 1)
        return ModelResponse(
            id=f"chatcmpl-scripted-{int(time.time() * 1000)}",
            model=f"{PROVIDER}/{model}",
            choices=[{"index": i, "message": turn.message(), "finish_reason": turn.finish_reason} for i in range(n)],
            usage=turn.usage,
        )

    async def acompletion(self, *args, **kwargs) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def streaming(self, model, messages, *args, optional_params, **kwargs) -> Iterator[GenericStreamingChunk]:  # type: ignore[override]
        yield from self._turn(model, messages, optional_params).chunks()

    async def astreaming(  # type: ignore[override]
        self, model, messages, *args, optional_params, **kwargs
    ) -> AsyncIterator[GenericStreamingChunk]:
        for chunk in self._turn(model, messages, optional_params).chunks():
            yield chunk


def register() -> None:
    """Add the provider to litellm once per process."""
    if not any(item["provider"] == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": ScriptedLLM()})
