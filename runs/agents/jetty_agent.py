#!/usr/bin/env python3
"""jetty-agent: Jetty's own small, model-agnostic coding agent. Standard library only.

It runs inside the sandbox, talks only to the platform's gateway with the run's token, and works a bounded
tool-using loop (shell, read_file, write_file, edit_file) on the mission in ``JETTY_MISSION`` (a JSON file with
the runbook as system message and the instruction as user message). Everything it does is printed as JSON lines
on stdout, which the platform turns into trajectory events.

Environment: JETTY_GATEWAY_URL (…/v1), JETTY_RUN_TOKEN, JETTY_MODEL, JETTY_MISSION, JETTY_MAX_TURNS (default 40),
JETTY_COMMAND_TIMEOUT_S (default 600).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

OUTPUT_LIMIT = 20_000
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "shell",
            "description": "Run a bash command in /app and return its exit code and output.",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a text file.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or overwrite a text file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "edit_file",
            "description": "Replace one exact occurrence of old with new in a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
                "required": ["path", "old", "new"],
            },
        },
    },
]


def emit(kind: str, **fields) -> None:
    sys.stdout.write(json.dumps({"type": kind, **fields}) + "\n")
    sys.stdout.flush()


def clip(text: str) -> str:
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + f"\n[... {len(text) - OUTPUT_LIMIT} more]"


def complete(messages: list) -> dict:
    body = json.dumps({"model": os.environ["JETTY_MODEL"], "messages": messages, "tools": TOOLS}).encode()
    request = urllib.request.Request(
        os.environ["JETTY_GATEWAY_URL"].rstrip("/") + "/chat/completions",
        data=body,
        headers={
            "Authorization": f"Bearer {os.environ['JETTY_RUN_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    for attempt in range(4):
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503, 504) or attempt == 3:
                raise
        except urllib.error.URLError:
            if attempt == 3:
                raise
        time.sleep(2**attempt)
    raise RuntimeError("unreachable")


def run_tool(name: str, args: dict) -> tuple[str, int | None]:
    if name == "shell":
        started = time.monotonic()
        code: int | None
        try:
            done = subprocess.run(
                ["bash", "-lc", args["command"]],
                cwd="/app",
                capture_output=True,
                text=True,
                errors="replace",  # a command may print any bytes (cat of a binary file)
                timeout=float(os.environ.get("JETTY_COMMAND_TIMEOUT_S", "600")),
            )
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as exc:
            # Killed, so it has no exit code of its own: none is made up.
            output, code = f"command timed out after {exc.timeout} s", None
        emit(
            "command",
            command=args["command"],
            exit_code=code,
            output=clip(output),
            ok=code == 0,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return clip(output), code
    path = os.path.join("/app", args["path"])
    if name == "read_file":
        with open(path, encoding="utf-8", errors="replace") as handle:
            return clip(handle.read()), 0
    if name == "write_file":
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(args["content"])
        emit("file", path=path, action="write", size=len(args["content"].encode()))
        return f"wrote {path}", 0
    if name == "edit_file":
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if text.count(args["old"]) != 1:
            return f"`old` must occur exactly once in {path} (found {text.count(args['old'])})", 1
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text.replace(args["old"], args["new"], 1))
        emit("file", path=path, action="edit", size=len(text))
        return f"edited {path}", 0
    return f"unknown tool {name}", 1


def main() -> int:
    with open(os.environ["JETTY_MISSION"], encoding="utf-8") as handle:
        messages = json.load(handle)
    max_turns = int(os.environ.get("JETTY_MAX_TURNS", "40"))
    for turn in range(1, max_turns + 1):
        message = complete(messages)["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if message.get("content"):
            emit("message", turn=turn, content=message["content"], final=not calls)
        messages.append({k: v for k, v in message.items() if k in ("role", "content", "tool_calls")})
        if not calls:
            emit("final", turns=turn, content=message.get("content") or "")
            return 0
        for call in calls:
            name = call["function"]["name"]
            try:
                args = json.loads(call["function"]["arguments"] or "{}")
            except ValueError:
                args = {}
            emit("tool_call", id=call["id"], name=name, arguments=args, turn=turn)
            try:
                output, code = run_tool(name, args)
            except (OSError, KeyError, TypeError, ValueError) as exc:  # ValueError: UnicodeDecodeError too
                output, code = f"{type(exc).__name__}: {exc}", 1
            emit("tool_result", id=call["id"], name=name, output=output, exit_code=code, ok=code == 0)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    emit("error", message=f"stopped after {max_turns} turns without a final answer")
    return 3


if __name__ == "__main__":
    sys.exit(main())
