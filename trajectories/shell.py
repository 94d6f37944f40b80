"""What an agent CLI says about one shell command, read in its own words: the output, the exit code (None where the
CLI does not say, never a guess) and, for a command it refused, why. Shared by the live adapters
(``runs/agents/clis.py``) and the importers of the same CLIs' session logs (``trajectories/imports/sessions.py``),
so a command reads the same whichever way it reached the trajectory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShellOutcome:
    """What a CLI said about one shell command: its output, its exit code (None when the CLI did not say), and why
    it refused to run it (None when it ran)."""

    output: str | None
    exit_code: int | None = None
    blocked: str | None = None


def command_event(command: str, outcome: ShellOutcome) -> dict[str, Any]:
    """A ``command`` event's payload: ok only for a command that ran and exited 0; ``blocked`` only when it did not
    run."""
    ok = outcome.blocked is None and outcome.exit_code == 0
    payload = {"command": command, "output": outcome.output, "exit_code": outcome.exit_code, "ok": ok}
    if outcome.blocked is not None:
        payload["blocked"] = outcome.blocked
    return payload


# Claude Code reads exit code 1 of these commands as an answer, not a failure (its Bash tool's "command semantics"),
# and says so in ``returnCodeInterpretation`` instead of "Exit code 1".
CLAUDE_EXIT_1 = frozenset(
    {"No matches found", "Files differ", "Some directories were inaccessible", "Condition is false"}
)
CLAUDE_EXIT = re.compile(r"Exit code (-?\d+)(?:\n|$)")
CLAUDE_NO_OUTPUT = "(Bash completed with no output)"


def claude_shell_outcome(content: str, is_error: bool, detail: Any) -> ShellOutcome:
    """A Bash tool result as Claude Code reports it. A failed command's result starts "Exit code N"; a refused or
    invalid call is an error without one (its ``tool_use_result`` is then a string, not the command's record); a
    succeeded one exited 0 unless ``returnCodeInterpretation`` names another code, or it was interrupted or sent to
    the background, where no code is known."""
    record = detail if isinstance(detail, dict) else {}
    if is_error:
        found = CLAUDE_EXIT.match(content)
        if found:
            return ShellOutcome(content[found.end() :], int(found.group(1)))
        if record:
            return ShellOutcome(content)
        return ShellOutcome(None, blocked=content)
    output = "" if content == CLAUDE_NO_OUTPUT else content
    interpretation = record.get("returnCodeInterpretation")
    if (
        record.get("interrupted")
        or record.get("backgroundTaskId")
        or (interpretation and interpretation not in CLAUDE_EXIT_1)
    ):
        return ShellOutcome(output)
    return ShellOutcome(output, 1 if interpretation else 0)


def codex_shell_outcome(item: dict[str, Any]) -> ShellOutcome:
    """A ``command_execution`` item as Codex reports it: its own ``exit_code``; a ``declined`` one never ran."""
    output = item.get("aggregated_output")
    if item.get("status") == "declined":
        return ShellOutcome(None, blocked=str(output or "declined by Codex"))
    code = item.get("exit_code")
    return ShellOutcome(output, code if isinstance(code, int) else None)


# Gemini CLI's shell tool, in debug mode, shows what it tells the model: "Output: …", then "Error: …", "Exit Code: N"
# (only when not 0), "Signal: …", "Background PIDs: …" and "Process Group PGID: N", each only when there is one.
GEMINI_REPORT = re.compile(
    r"Output: (?P<output>.*?)(?:\nError: (?P<error>.*?))?(?:\nExit Code: (?P<code>-?\d+))?"
    r"(?:\nSignal: (?P<signal>[^\n]*))?(?:\nBackground PIDs: [^\n]*)?(?:\nProcess Group PGID: \d+)?",
    re.S,
)
GEMINI_PGID = re.compile(r"\nProcess Group PGID: \d+\Z")  # differs between two runs of one step: not kept
GEMINI_EXITED = re.compile(r"Command exited with code: (-?\d+)")  # its display without debug mode, no output
GEMINI_BLOCKED = "Blocked: "  # "Blocked: command substitution detected in shell command."


def gemini_shell_outcome(data: dict[str, Any]) -> ShellOutcome:
    """A ``run_shell_command`` result as Gemini CLI reports it. A refused command is a *success* whose display
    starts "Blocked:"; a tool error (a denied or invalid call) never ran the command."""
    output = data.get("output")
    if data.get("status") != "success":
        return ShellOutcome(None, blocked=str((data.get("error") or {}).get("message") or output or "error"))
    text = str(output or "")
    if text.startswith(GEMINI_BLOCKED):
        return ShellOutcome(None, blocked=text)
    report = GEMINI_REPORT.fullmatch(text)
    if report:
        said = report.group("output")
        code = report.group("code")
        if code is None and (report.group("error") or report.group("signal")):
            return ShellOutcome(said)
        return ShellOutcome("" if said == "(empty)" else said, int(code or 0))
    exited = GEMINI_EXITED.fullmatch(text)
    if exited:
        return ShellOutcome("", int(exited.group(1)))
    return ShellOutcome(output)
