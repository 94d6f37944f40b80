"""Adapters for the coding-agent CLIs: Claude Code, Codex and Gemini CLI, and a generic one for any other CLI.

Each CLI comes from the pinned, read-only tree ``scripts/install-agents`` builds (mounted at ``/opt/jetty/agents``
in every sandbox), runs headless as the sandbox's unprivileged user with its configuration written fresh into the
run's private home, and talks only to the platform's model gateway with the run's token: no provider key ever
reaches it. Each adapter turns the CLI's event stream (Claude Code ``stream-json``, Codex ``--json``, Gemini
``stream-json``) into trajectory events as lines arrive, and keeps what its result line reports (final answer,
usage, cost) so the run can cross-check it against the gateway's own count.
"""

from __future__ import annotations

import json
import shlex
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings

from trajectories.actions import EventRecord
from trajectories.shell import (
    GEMINI_PGID,
    ShellOutcome,
    claude_shell_outcome,
    codex_shell_outcome,
    command_event,
    gemini_shell_outcome,
)

from . import Agent, Launch, Mission, sanitise, stdout_line

AGENTS_MOUNT = "/opt/jetty/agents"
PATH = f"{AGENTS_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin"
SHELL_TOOLS = frozenset({"Bash", "run_shell_command", "exec_command", "shell"})


MAX_PROMPT_CHARS = 100_000  # one command-line argument may hold at most 128 KiB (MAX_ARG_STRLEN)


def mission_prompt(mission: Mission, home: Path) -> str:
    """The mission a CLI gets as its prompt: the runbook, delimited, then the caller's instruction. A runbook too
    long for a command line is written to the agent's home and the prompt says where."""
    runbook = f"<runbook>\n{mission.runbook.strip()}\n</runbook>"
    if len(runbook) > MAX_PROMPT_CHARS:
        (home / "RUNBOOK.md").write_text(mission.runbook)
        runbook = "Your runbook is in /home/agent/RUNBOOK.md: read all of it first, then follow it."
    parts = [
        "You are running a Jetty runbook in a sandbox. Work in /app. The input files are in /app/assets "
        "(read-only). Write every result file to /app/results, and finish with /app/results/summary.md.",
        runbook,
    ]
    if mission.instruction.strip():
        parts.append(mission.instruction.strip())
    return "\n\n".join(parts)


def gateway_root(url: str) -> str:
    """The gateway's base URL without the ``/v1`` suffix (Anthropic's and Gemini's clients add their own)."""
    return url.rstrip("/").removesuffix("/v1")


def installed_version(package: str) -> str:
    manifest = Path(settings.JETTY_AGENTS_DIR) / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return ""


def _json(line: str) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class CliAgent(Agent):
    """What the three CLI adapters share: the mounted tree, the prompt, line parsing and the result line."""

    package: ClassVar[str] = ""
    family_model: ClassVar[str] = ""  # the model name the CLI is told; the gateway routes to the run's model
    family_prefixes: ClassVar[tuple[str, ...]] = ()  # model names the CLI may be told as they are
    type_field = "type"  # the field that says what a JSON line is

    def __init__(self) -> None:
        super().__init__()
        self.result_seen = False
        self.error: str | None = None
        self.calls: dict[str, dict[str, Any]] = {}  # tool call id -> the call, to pair results with commands

    @property
    def version(self) -> str:
        return installed_version(self.package)

    def binds(self) -> tuple[tuple[str, str], ...]:
        return ((str(settings.JETTY_AGENTS_DIR), AGENTS_MOUNT),)

    def cli_model(self, model: str) -> str:
        """The run's model as the CLI should name it: its own family's name when it is one, else a stand-in."""
        name = model.rsplit("/", 1)[-1]
        return name if name.startswith(self.family_prefixes) else self.family_model

    def base_env(self, mission: Mission) -> dict[str, str]:
        env = {"PATH": PATH, "TMPDIR": "/tmp", "NO_COLOR": "1", "CI": "1"}
        if not mission.network:
            # Nothing outside is reachable: a dead local proxy makes the CLIs' background fetches fail at once
            # instead of waiting for timeouts (Codex's plugin sync took 5 s otherwise).
            env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def events(self, line: str, ts: float) -> list[EventRecord]:
        data = _json(line)
        if data is None or self.type_field not in data:
            return [stdout_line(line, ts)]
        events = [EventRecord(kind=kind, ts=ts, payload=sanitise(payload)) for kind, payload in self.parse(data)]
        return events

    @abstractmethod
    def parse(self, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(event kind, payload) pairs for one JSON line the CLI printed."""

    def tool_result(
        self, call_id: str, output: Any, ok: bool, shell: ShellOutcome | None = None
    ) -> list[tuple[str, dict]]:
        """A tool's result, preceded by a ``command`` event when the tool was the shell: ``shell`` is what the CLI
        said about the command (nothing said, nothing known). The result is ok only when the command was."""
        call = self.calls.pop(call_id, {})
        out: list[tuple[str, dict]] = []
        if call.get("name") in SHELL_TOOLS:
            command = command_event(call.get("command", ""), shell or ShellOutcome(output))
            out.append(("command", command))
            ok = command["ok"]
        out.append(("tool.result", {"id": call_id, "name": call.get("name", ""), "output": output, "ok": ok}))
        return out

    def problem(self) -> str | None:
        """Why the run failed though the CLI exited 0, from what it printed (None if it did not)."""
        if self.error:
            return f"{self.name} reported an error: {self.error}"
        if not self.result_seen:
            return f"{self.name} exited without a result line"
        return None


def _command_of(arguments: dict[str, Any]) -> str:
    command = arguments.get("command", arguments.get("cmd", ""))
    return shlex.join(command) if isinstance(command, list) else str(command)


class ClaudeCode(CliAgent):
    name = "claude-code"
    package = "@anthropic-ai/claude-code"
    family_model = "claude-sonnet-4-5"
    family_prefixes = ("claude",)

    def launch(self, mission: Mission, home: Path) -> Launch:
        env = self.base_env(mission) | {
            "ANTHROPIC_BASE_URL": gateway_root(mission.gateway_url),
            "ANTHROPIC_API_KEY": mission.run_token,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "IS_SANDBOX": "1",
        }
        argv = [
            "claude",
            "-p",
            mission_prompt(mission, home),
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
            "--model",
            self.cli_model(mission.model),
            "--max-turns",
            str(mission.max_turns),
        ]
        return Launch(argv=argv, env=env)

    def parse(self, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind = data.get("type")
        if kind == "system" and data.get("subtype") == "init":
            fields = ("model", "claude_code_version", "permissionMode", "cwd")
            return [("log", {"message": "claude-code started", **{k: data.get(k) for k in fields}})]
        if kind == "assistant":
            out: list[tuple[str, dict]] = []
            for block in (data.get("message") or {}).get("content") or []:
                if block.get("type") == "text" and block.get("text"):
                    out.append(("agent.message", {"content": block["text"]}))
                elif block.get("type") == "thinking" and block.get("thinking"):
                    out.append(("agent.message", {"content": block["thinking"], "thinking": True}))
                elif block.get("type") == "tool_use":
                    arguments = block.get("input") or {}
                    call = {"id": block.get("id", ""), "name": block.get("name", ""), "arguments": arguments}
                    self.calls[call["id"]] = {**call, "command": _command_of(arguments)}
                    out.append(("tool.call", call))
            return out
        if kind == "user":
            out = []
            for block in (data.get("message") or {}).get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    content = block.get("content")
                    if isinstance(content, list):
                        content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
                    is_error = bool(block.get("is_error"))
                    shell = claude_shell_outcome(str(content or ""), is_error, data.get("tool_use_result"))
                    out += self.tool_result(block.get("tool_use_id", ""), content, not is_error, shell)
            return out
        if kind == "result":
            self.result_seen = True
            self.final = str(data.get("result") or "")
            usage = data.get("usage") or {}
            self.reported = {
                "input_tokens": int(usage.get("input_tokens") or 0)
                + int(usage.get("cache_read_input_tokens") or 0)
                + int(usage.get("cache_creation_input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0),
                "cost_usd": data.get("total_cost_usd"),
                "turns": data.get("num_turns"),
            }
            if data.get("is_error") or data.get("subtype") != "success":
                self.error = str(data.get("result") or data.get("subtype") or "error")
            summary = ("subtype", "is_error", "num_turns", "duration_ms", "total_cost_usd", "usage")
            return [("log", {"message": "claude-code result", **{k: data.get(k) for k in summary}})]
        return []


class Codex(CliAgent):
    name = "codex"
    package = "@openai/codex"
    family_model = "gpt-5.5"
    family_prefixes = ("gpt", "o1", "o3", "o4", "codex")

    def launch(self, mission: Mission, home: Path) -> Launch:
        codex_home = home / ".codex"  # not under /tmp: Codex refuses to set up its helpers there
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(
            "\n".join(
                [
                    f"model = {json.dumps(self.cli_model(mission.model))}",
                    'model_provider = "jetty"',
                    "[model_providers.jetty]",
                    'name = "Jetty gateway"',
                    f"base_url = {json.dumps(mission.gateway_url)}",
                    'env_key = "JETTY_RUN_TOKEN"',
                    'wire_api = "responses"',
                    "",
                ]
            )
        )
        env = self.base_env(mission) | {"CODEX_HOME": "/home/agent/.codex", "JETTY_RUN_TOKEN": mission.run_token}
        argv = [
            "codex",
            "exec",
            "--skip-git-repo-check",
            "--json",
            "--dangerously-bypass-approvals-and-sandbox",  # the sandbox is ours
            "-C",
            "/app",
            mission_prompt(mission, home),
        ]
        return Launch(argv=argv, env=env)

    def parse(self, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind = data.get("type")
        item = data.get("item") or {}
        if kind == "thread.started":
            return [("log", {"message": "codex started", "thread_id": data.get("thread_id")})]
        if kind == "item.started" and item.get("type") == "command_execution":
            call = {"id": item.get("id", ""), "name": "exec_command", "arguments": {"command": item.get("command")}}
            self.calls[call["id"]] = {**call, "command": item.get("command", "")}
            return [("tool.call", call)]
        if kind == "item.completed":
            return self._item(item)
        if kind == "turn.completed":
            self.result_seen = True
            usage = data.get("usage") or {}
            self.reported = {
                "input_tokens": int(usage.get("input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0),
            }
            return [("log", {"message": "codex turn completed", "usage": usage})]
        if kind in ("turn.failed", "error"):
            message = (data.get("error") or {}).get("message") if kind == "turn.failed" else data.get("message")
            if kind == "turn.failed":
                self.error = str(message)
            return [("error", {"message": message, "source": "codex"})]
        return []

    def _item(self, item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind = item.get("type")
        if kind == "agent_message":
            self.final = str(item.get("text") or "")
            return [("agent.message", {"content": item.get("text")})]
        if kind == "reasoning":
            return [("agent.message", {"content": item.get("text"), "thinking": True})]
        if kind == "command_execution":
            call_id = item.get("id", "")
            if call_id not in self.calls:
                self.calls[call_id] = {"name": "exec_command", "command": item.get("command", "")}
            shell = codex_shell_outcome(item)
            return self.tool_result(call_id, item.get("aggregated_output"), shell.exit_code == 0, shell)
        if kind == "file_change":
            return [
                ("file.change", {"path": change.get("path"), "action": change.get("kind"), "source": "codex"})
                for change in item.get("changes") or []
            ]
        if kind == "error":
            return [("log", {"message": item.get("message"), "level": "warning", "source": "codex"})]
        return [("log", {"message": f"codex {kind}", "item": item})]


class GeminiCli(CliAgent):
    name = "gemini-cli"
    package = "@google/gemini-cli"
    family_model = "gemini-2.5-pro"
    family_prefixes = ("gemini",)
    SETTINGS = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    }

    def __init__(self) -> None:
        super().__init__()
        self.message: list[str] = []

    def launch(self, mission: Mission, home: Path) -> Launch:
        (home / ".gemini").mkdir(exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(self.SETTINGS))
        env = self.base_env(mission) | {
            "GEMINI_API_KEY": mission.run_token,
            "GOOGLE_GEMINI_BASE_URL": gateway_root(mission.gateway_url),
            "GEMINI_SANDBOX": "false",  # yolo mode would start Gemini's own Docker sandbox
        }
        argv = [
            "gemini",
            "-p",
            mission_prompt(mission, home),
            "-m",  # a named model also skips the model router's extra classification call
            self.cli_model(mission.model),
            "--approval-mode=yolo",
            # Debug mode shows the shell tool's full report ("Exit Code: N") in the stream, not only its output:
            # without it a command that printed something and failed looks like one that succeeded.
            "--debug",
            "--output-format",
            "stream-json",
        ]
        return Launch(argv=argv, env=env)

    def _flush(self) -> list[tuple[str, dict[str, Any]]]:
        """Assistant text arrives in deltas: it becomes one message when something else happens."""
        if not self.message:
            return []
        text, self.message = "".join(self.message), []
        self.final = text
        return [("agent.message", {"content": text})]

    def parse(self, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind = data.get("type")
        if kind == "message":
            if data.get("role") == "assistant":
                if not data.get("delta"):
                    self._flush()
                self.message.append(str(data.get("content") or ""))
            return []
        out = self._flush()
        if kind == "init":
            out.append(("log", {"message": "gemini-cli started", "model": data.get("model")}))
        elif kind == "tool_use":
            arguments = data.get("parameters") or {}
            call = {"id": data.get("tool_id", ""), "name": data.get("tool_name", ""), "arguments": arguments}
            self.calls[call["id"]] = {**call, "command": _command_of(arguments)}
            out.append(("tool.call", call))
        elif kind == "tool_result":
            ok = data.get("status") == "success"
            output = data.get("output") if ok else (data.get("error") or {}).get("message", data.get("output"))
            if isinstance(output, str):
                output = GEMINI_PGID.sub("", output)
            out += self.tool_result(data.get("tool_id", ""), output, ok, gemini_shell_outcome(data))
        elif kind == "result":
            self.result_seen = True
            stats = data.get("stats") or {}
            self.reported = {
                "input_tokens": int(stats.get("input_tokens") or 0),
                "output_tokens": int(stats.get("output_tokens") or 0),
            }
            if data.get("status") != "success":
                self.error = str((data.get("error") or {}).get("message") or data.get("status"))
            out.append(("log", {"message": "gemini-cli result", "status": data.get("status"), "stats": stats}))
        elif kind == "error":
            out.append(("error", {"message": data.get("message"), "source": "gemini-cli"}))
        return out


class GenericCli(CliAgent):
    """Any other CLI that takes an instruction and writes files, configured in ``JETTY_GENERIC_AGENTS``:

    ``{"name": {"command": ["mycli", "--model", "{model}", "{prompt}"], "output": "text" | "jsonl",
    "kinds": {"their type": "tool.call", ...}, "type_field": "type", "final_type": "result",
    "final_field": "text", "env": {...}}}``

    ``{prompt}``, ``{prompt_file}``, ``{model}`` and ``{gateway_url}`` are filled in the command. The CLI finds the
    gateway in OPENAI_BASE_URL / ANTHROPIC_BASE_URL and the run token in OPENAI_API_KEY / ANTHROPIC_API_KEY.
    Text output becomes log lines and the final answer is the last non-empty line; JSON lines become events by
    ``kinds``, and the final answer is ``final_field`` of the ``final_type`` line.
    """

    def __init__(self, name: str, config: dict[str, Any]):
        super().__init__()
        self.name = name
        self.config = config
        self.type_field = str(config.get("type_field", "type"))
        self.result_seen = config.get("output", "text") == "text"

    @property
    def version(self) -> str:
        return str(self.config.get("version", ""))

    def launch(self, mission: Mission, home: Path) -> Launch:
        prompt = mission_prompt(mission, home)
        (home / "MISSION.md").write_text(prompt)
        values = {
            "prompt": prompt,
            "prompt_file": "/home/agent/MISSION.md",
            "model": mission.model,
            "gateway_url": mission.gateway_url,
        }
        argv = []
        for part in self.config["command"]:
            for name, value in values.items():
                part = str(part).replace(f"{{{name}}}", value)
            argv.append(part)
        env = self.base_env(mission) | {
            "OPENAI_BASE_URL": mission.gateway_url,
            "OPENAI_API_KEY": mission.run_token,
            "ANTHROPIC_BASE_URL": gateway_root(mission.gateway_url),
            "ANTHROPIC_API_KEY": mission.run_token,
            "JETTY_MODEL": mission.model,
            **{str(k): str(v) for k, v in (self.config.get("env") or {}).items()},
        }
        return Launch(argv=argv, env=env)

    def events(self, line: str, ts: float) -> list[EventRecord]:
        if self.config.get("output", "text") == "text":
            if line.strip():
                self.final = line.strip()
            return [stdout_line(line, ts)]
        return super().events(line, ts)

    def parse(self, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        kind = str(data[self.type_field])
        if kind == self.config.get("final_type", "result"):
            self.result_seen = True
            self.final = str(data.get(self.config.get("final_field", "text")) or "")
        return [((self.config.get("kinds") or {}).get(kind, "log"), data)]

    def problem(self) -> str | None:
        if not self.result_seen:
            return f"{self.name} exited without a `{self.config.get('final_type', 'result')}` line"
        return None
