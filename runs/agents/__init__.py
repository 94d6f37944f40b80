"""Agent adapters: how to configure, start and read each agent inside a sandbox.

``jetty-agent`` is ours; the CLI adapters (Claude Code, Codex, Gemini CLI) register here too.
"""

from __future__ import annotations

import difflib
import functools
import json
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from trajectories.actions import EventRecord, store_blob

from ..sandboxes import hostile

MAX_FIELD_CHARS = 64_000


def sanitise(value: Any) -> Any:
    """Strip NUL bytes and cap long strings before anything an agent printed is stored."""
    if isinstance(value, str):
        value = value.replace("\x00", "")
        return value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS] + "[... truncated]"
    if isinstance(value, list):
        return [sanitise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): sanitise(v) for k, v in value.items()}
    return value


def stdout_line(line: str, ts: float) -> EventRecord:
    """A line the agent printed that is not one of its structured events."""
    return EventRecord(kind="log", ts=ts, payload={"stream": "stdout", "line": sanitise(line)})


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Mission:
    runbook: str
    instruction: str
    model: str
    gateway_url: str
    run_token: str
    max_turns: int = 40
    network: bool = True


class Agent(ABC):
    """One agent run's adapter: a fresh instance per run, so it may keep state across the lines it reads."""

    name: str

    def __init__(self) -> None:
        self.final: str | None = None  # the final answer, once a line carried it
        self.reported: dict[str, Any] = {}  # what the agent's own result line reported (usage, cost)

    @property
    def version(self) -> str:
        return ""

    def problem(self) -> str | None:
        """Why the run failed though the agent exited 0, from what it printed (None if it did not)."""
        return None

    def binds(self) -> tuple[tuple[str, str], ...]:
        """Host folders the agent needs inside the sandbox, read-only: (host path, sandbox path)."""
        return ()

    @abstractmethod
    def launch(self, mission: Mission, home: Path) -> Launch:
        """Write the agent's configuration into its home and say how to start it."""

    @abstractmethod
    def events(self, line: str, ts: float) -> list[EventRecord]:
        """Trajectory events for one line the agent printed (a final answer it carries goes to ``final``). The line
        is hostile: the caller admits them (``trajectories.actions.admitted``), keeping one that does not fit its
        kind's schema as a ``log``."""


class JettyAgent(Agent):
    name = "jetty-agent"
    SCRIPT = Path(__file__).with_name("jetty_agent.py")
    KINDS = {
        "message": "agent.message",
        "tool_call": "tool.call",
        "tool_result": "tool.result",
        "command": "command",
        "file": "file.change",
        "error": "error",
    }

    def launch(self, mission: Mission, home: Path) -> Launch:
        jetty = home / ".jetty"
        jetty.mkdir(exist_ok=True)
        shutil.copy(self.SCRIPT, jetty / "jetty_agent.py")
        messages = [{"role": "system", "content": mission.runbook}]
        if mission.instruction:
            messages.append({"role": "user", "content": mission.instruction})
        (jetty / "mission.json").write_text(json.dumps(messages))
        return Launch(
            argv=["python3", "/home/agent/.jetty/jetty_agent.py"],
            env={
                "JETTY_GATEWAY_URL": mission.gateway_url,
                "JETTY_RUN_TOKEN": mission.run_token,
                "JETTY_MODEL": mission.model,
                "JETTY_MISSION": "/home/agent/.jetty/mission.json",
                "JETTY_MAX_TURNS": str(mission.max_turns),
            },
        )

    def events(self, line: str, ts: float) -> list[EventRecord]:
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "type" not in data:
            return [stdout_line(line, ts)]
        kind = data.pop("type")
        if kind == "final":
            self.final = sanitise(str(data.get("content") or ""))
            return []
        if kind in ("command", "tool_result") and "ok" not in data:  # the script reports only the exit code
            code = data.get("exit_code")
            data["ok"] = type(code) is int and code == 0
        if kind == "command":
            data.setdefault("output", None)
            data.setdefault("exit_code", None)
        return [EventRecord(kind=self.KINDS.get(kind, "log"), ts=ts, payload=sanitise(data))]


def _registry() -> dict[str, Callable[[], Agent]]:
    from django.conf import settings

    from .clis import ClaudeCode, Codex, GeminiCli, GenericCli

    agents: dict[str, Callable[[], Agent]] = {cls.name: cls for cls in (JettyAgent, ClaudeCode, Codex, GeminiCli)}
    for name, config in settings.JETTY_GENERIC_AGENTS.items():
        agents.setdefault(name, functools.partial(GenericCli, name, config))
    return agents


def agent_names() -> list[str]:
    return sorted(_registry())


FAMILY_AGENTS = (
    ("claude", "claude-code"),
    ("anthropic", "claude-code"),
    ("gemini", "gemini-cli"),
    ("gpt", "codex"),
    ("openai/o", "codex"),
    ("o1", "codex"),
    ("o3", "codex"),
    ("o4", "codex"),
)


def agent_for(name: str | None, model: str) -> Agent | None:
    """A fresh adapter for the named agent, or for the one that fits the model's family (jetty-agent otherwise)."""
    agents = _registry()
    if name:
        factory = agents.get(name)
        return None if factory is None else factory()
    lowered = model.lower()
    for marker, agent in FAMILY_AGENTS:
        if marker in lowered and agent in agents:
            return agents[agent]()
    return JettyAgent()


class WorkspaceWatch:
    """Notices files the agent created, changed or deleted under /app (outside assets), between tool calls."""

    LIMIT = 5000
    BLOB_BYTES = 1024 * 1024
    DIFF_BYTES = 200_000
    DIFF_LINES = 4_000  # old and new together

    def __init__(self, workspace: Path, org_id: int | None = None):
        self.workspace = workspace  # read only through ``hostile``: the agent writes here while we look
        self.org_id = org_id  # the org whose run this is: it holds the snapshots stored (None: nobody)
        self.snapshot_bytes = 0  # stored so far, against JETTY_RUN_MAX_SNAPSHOT_BYTES
        self.seen = self.scan()
        self.contents: dict[str, tuple[str, str | None]] = {}  # path: (sha256, text) as last recorded

    def scan(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of the regular files under /app now, through the reader that follows no link: the agent
        may be renaming folders or swapping them for links while this runs."""
        found: dict[str, tuple[int, int]] = {}
        for entry in hostile.walk(self.workspace, exclude=("assets",)):
            if entry.refused is None:
                found[entry.path] = (entry.size, entry.mtime_ns)
                if len(found) >= self.LIMIT:
                    break
        return found

    def changes(self, ts: float) -> list[EventRecord]:
        now = self.scan()
        events = []
        # Several changes can land in one scan when the agent outruns the reader: order them as they happened.
        for name in sorted(set(now) | set(self.seen), key=lambda n: (now.get(n, (0, 0))[1], n)):
            before, after = self.seen.get(name), now.get(name)
            if before == after:
                continue
            action = "created" if before is None else "deleted" if after is None else "modified"
            payload = {
                "path": f"/app/{name}",
                "action": action,
                "size": after[0] if after else 0,
                "source": "workspace",
            }
            payload.update(self.snapshot(name, after is not None))
            events.append(EventRecord(kind="file.change", ts=ts, payload=payload))
        self.seen = now
        return events

    def snapshot(self, name: str, exists: bool) -> dict[str, Any]:
        """The file's content as it is now, stored once by its SHA-256, and the diff from what it was (text files
        up to ``DIFF_BYTES``): the run's workspace at any step can be rebuilt from its file changes."""
        previous = self.contents.pop(name, None)
        if not exists:
            return {"previous_sha256": previous[0]} if previous else {}
        try:
            data = hostile.read(self.workspace, name, self.BLOB_BYTES)
        except hostile.Unreadable as exc:
            return {"snapshot": "too large to keep"} if exc.reason == hostile.TOO_LARGE else {}
        # An agent rewriting the same files at every step would otherwise fill the store without bound.
        if self.snapshot_bytes + len(data) > settings.JETTY_RUN_MAX_SNAPSHOT_BYTES:
            return {"snapshot": "not kept: the run stored its JETTY_RUN_MAX_SNAPSHOT_BYTES of snapshots"}
        self.snapshot_bytes += len(data)
        digest = store_blob(data, self.org_id)
        found: dict[str, Any] = {"sha256": digest}
        if previous:
            found["previous_sha256"] = previous[0]
        text = _text(data) if len(data) <= self.DIFF_BYTES else None
        # A file that was there before the agent started has no recorded past: no diff for its first change.
        old_text = previous[1] if previous else (None if name in self.seen else "")
        if text is not None and old_text is not None:
            old_lines, new_lines = old_text.splitlines(), text.splitlines()
            # difflib is quadratic at worst, and runs here on the worker, outside the sandbox's limits: files of
            # crafted lines took minutes each. Longer files keep their snapshot, without a diff.
            if len(old_lines) + len(new_lines) <= self.DIFF_LINES:
                lines = difflib.unified_diff(old_lines, new_lines, f"a/{name}", f"b/{name}", lineterm="")
                found["diff"] = "\n".join(lines)[: self.DIFF_BYTES]
        self.contents[name] = (digest, text)
        return found


def _text(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None
