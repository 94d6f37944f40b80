"""The CLI adapters read what each real CLI printed (samples captured from Claude Code 2.1.197, Codex 0.171.0 and
Gemini CLI 0.61.0 against a local model, in tests/fixtures/cli-streams/) into trajectory events.

The ``<agent>-<case>.jsonl`` samples are whole runs of each CLI in a sandbox, driven by the scripted model through a
one-step runbook (``exit 3``, ``echo fine``, ``echo "$(echo hi)"``, ``echo before-failing; exit 5``,
``grep -q nomatch /dev/null``), then the scripted summary step; Gemini CLI's ``nodebug`` ones ran without ``--debug``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runs.agents import JettyAgent, Mission, agent_for
from runs.agents.clis import MAX_PROMPT_CHARS, ClaudeCode, Codex, GeminiCli, mission_prompt

AGENTS = {"claude-code": ClaudeCode, "codex": Codex, "gemini-cli": GeminiCli}

STREAMS = Path(__file__).parent / "fixtures" / "cli-streams"


def read(agent, sample: str):
    events = []
    for line in (STREAMS / sample).read_text().splitlines():
        events += agent.events(line, 0.0)
    return [(e.kind, e.payload) for e in events]


@pytest.mark.parametrize(
    ("agent", "sample", "tool", "exit_code"),
    [
        (ClaudeCode(), "claude_tool_allowed.jsonl", "Bash", 0),
        (Codex(), "codex_tool_bypass.jsonl", "exec_command", 0),
        # Printed without --debug: Gemini CLI then shows a command's output and not its exit code.
        (GeminiCli(), "gemini_tool.jsonl", "run_shell_command", None),
    ],
)
def test_a_tool_turn_becomes_call_command_result_then_the_answer(agent, sample, tool, exit_code):
    events = read(agent, sample)
    kinds = [k for k, _ in events]
    call = kinds.index("tool.call")
    assert kinds[call : call + 3] == ["tool.call", "command", "tool.result"]
    assert events[call][1]["name"] == tool
    command = events[call + 1][1]
    assert "echo hello-from-tool > results/out.txt" in command["command"]
    assert "hello-from-tool" in command["output"]
    assert command["exit_code"] == exit_code and command["ok"] is (exit_code == 0)
    assert kinds.index("agent.message") > call + 2
    assert agent.final == "DONE" and agent.problem() is None
    assert agent.reported["input_tokens"] > 0 and agent.reported["output_tokens"] > 0


@pytest.mark.parametrize(
    ("agent", "sample"),
    [(ClaudeCode(), "claude_text.jsonl"), (Codex(), "codex_text.jsonl"), (GeminiCli(), "gemini_text.jsonl")],
)
def test_a_text_turn_gives_the_final_answer_and_usage(agent, sample):
    events = read(agent, sample)
    assert ("agent.message", {"content": "DONE"}) in events
    assert agent.final == "DONE" and agent.problem() is None


def test_claude_code_s_partial_messages_and_unknown_lines_do_not_break_it():
    agent = ClaudeCode()
    events = read(agent, "claude_partial.jsonl")
    assert agent.final == "DONE"
    (unknown,) = agent.events("not json", 0)
    assert (unknown.kind, unknown.payload) == ("log", {"stream": "stdout", "line": "not json"})
    assert all(kind in {"log", "agent.message", "tool.call", "command", "tool.result"} for kind, _ in events)


def test_a_cli_that_prints_no_result_line_has_a_problem():
    agent = Codex()
    read(agent, "codex_text.jsonl")
    fresh = Codex()
    fresh.events('{"type": "thread.started", "thread_id": "t"}', 0)
    assert fresh.problem() == "codex exited without a result line"
    failed = ClaudeCode()
    failed.events('{"type": "result", "subtype": "error_max_turns", "is_error": true, "result": ""}', 0)
    assert failed.problem() == "claude-code reported an error: error_max_turns"


@pytest.mark.parametrize(
    ("model", "agent"),
    [
        ("anthropic/claude-sonnet-4-5", "claude-code"),
        ("claude-opus-4-1", "claude-code"),
        ("gemini/gemini-2.5-pro", "gemini-cli"),
        ("openai/gpt-5", "codex"),
        ("o3-mini", "codex"),
        ("scripted/default", "jetty-agent"),
        ("hosted_vllm/qwen", "jetty-agent"),
    ],
)
def test_leaving_the_agent_out_picks_the_model_s_family(model, agent):
    chosen = agent_for(None, model)
    assert chosen is not None and chosen.name == agent
    assert agent_for(None, model) is not chosen  # a fresh adapter per run: nothing shared between runs


def test_each_cli_is_told_its_own_family_s_model_name():
    assert ClaudeCode().cli_model("anthropic/claude-sonnet-4-5") == "claude-sonnet-4-5"
    assert ClaudeCode().cli_model("scripted/default") == ClaudeCode.family_model
    assert Codex().cli_model("openai/gpt-5") == "gpt-5"
    assert GeminiCli().cli_model("gemini/gemini-2.5-flash") == "gemini-2.5-flash"


def test_a_runbook_too_long_for_a_command_line_is_handed_over_as_a_file(tmp_path):
    mission = Mission(runbook="x" * (MAX_PROMPT_CHARS + 1), instruction="go", model="m", gateway_url="u", run_token="t")
    prompt = mission_prompt(mission, tmp_path)
    assert len(prompt) < 2000 and "/home/agent/RUNBOOK.md" in prompt
    assert (tmp_path / "RUNBOOK.md").read_text() == mission.runbook
    short = Mission(runbook="# Do\n", instruction="go", model="m", gateway_url="u", run_token="t")
    assert "<runbook>\n# Do\n</runbook>" in mission_prompt(short, tmp_path)
    assert JettyAgent().name == "jetty-agent"


GEMINI_REFUSAL = "Blocked: command substitution detected in shell command."
SHELL_CASES = [
    ("claude-code", "exit-3", "exit 3", "", 3),
    ("claude-code", "output-exit-5", "echo before-failing; exit 5", "before-failing", 5),
    ("claude-code", "exit-0", "echo fine", "fine", 0),
    ("claude-code", "substitution", 'echo "$(echo hi)"', "hi", 0),
    ("claude-code", "grep-no-match", "grep -q nomatch /dev/null", "", 1),  # "No matches found", not "Exit code 1"
    ("codex", "exit-3", "/bin/bash -lc 'exit 3'", "", 3),
    ("codex", "output-exit-5", "/bin/bash -lc 'echo before-failing; exit 5'", "before-failing\n", 5),
    ("codex", "exit-0", "/bin/bash -lc 'echo fine'", "fine\n", 0),
    ("codex", "substitution", """/bin/bash -lc 'echo "$(echo hi)"'""", "hi\n", 0),
    ("gemini-cli", "exit-3", "exit 3", "", 3),
    ("gemini-cli", "output-exit-5", "echo before-failing; exit 5", "before-failing", 5),
    ("gemini-cli", "exit-0", "echo fine", "fine", 0),
    ("gemini-cli", "nodebug-exit-3", "exit 3", "", 3),  # "Command exited with code: 3"
    ("gemini-cli", "nodebug-output-exit-5", "echo before-failing; exit 5", "before-failing", None),  # not said
]


def commands_in(agent: str, case: str) -> list[tuple[dict, dict]]:
    """Each ``command`` event of a captured run with the ``tool.result`` that follows it."""
    events = read(AGENTS[agent](), f"{agent}-{case}.jsonl")
    return [(payload, events[i + 1][1]) for i, (kind, payload) in enumerate(events) if kind == "command"]


@pytest.mark.parametrize(("agent", "case", "command", "output", "exit_code"), SHELL_CASES)
def test_a_command_s_exit_code_is_the_one_its_cli_reported(agent, case, command, output, exit_code):
    (step, step_result), (summary, _) = commands_in(agent, case)
    assert step == {"command": command, "output": output, "exit_code": exit_code, "ok": exit_code == 0}
    assert step_result["ok"] is (exit_code == 0)
    assert "Process Group PGID" not in str(step_result["output"])  # Gemini CLI's process id: not the same twice
    # Without --debug an empty display says nothing either: the summary step's exit code is unknown there.
    summary_code = None if case.startswith("nodebug") else 0
    assert summary["exit_code"] == summary_code and summary["ok"] is (summary_code == 0) and "blocked" not in summary


def test_a_command_gemini_cli_refused_is_blocked_with_its_reason_not_ok():
    (step, step_result), (summary, _) = commands_in("gemini-cli", "substitution")
    expected = {"command": 'echo "$(echo hi)"', "output": None, "exit_code": None, "ok": False}
    assert step == expected | {"blocked": GEMINI_REFUSAL}
    assert step_result["ok"] is False and step_result["output"] == GEMINI_REFUSAL
    assert summary["ok"] is True


def claude_bash(call_id: str, command: str) -> dict:
    return {
        "type": "assistant",
        "message": {"content": [{"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": command}}]},
    }


def claude_result(call_id: str, content: str, is_error: bool, record: object) -> dict:
    block = {"type": "tool_result", "tool_use_id": call_id, "is_error": is_error, "content": content}
    return {"type": "user", "message": {"content": [block]}, "tool_use_result": record}


# Shapes from the CLIs' own code, not seen in a run here: a call refused before its command started.
DENIED = "Permission to use Bash has been denied."
REFUSALS = {
    "claude-code": [claude_bash("t1", "rm -rf /"), claude_result("t1", DENIED, True, f"Error: {DENIED}")],
    "codex": [
        {
            "type": "item.completed",
            "item": {"id": "i1", "type": "command_execution", "command": "rm -rf /", "status": "declined"},
        }
    ],
    "gemini-cli": [
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "g1", "parameters": {"command": "rm -rf /"}},
        {
            "type": "tool_result",
            "tool_id": "g1",
            "status": "error",
            "output": "Path not in workspace.",
            "error": {"type": "path_not_in_workspace", "message": "Path not in the workspace: /"},
        },
    ],
}


@pytest.mark.parametrize(
    ("agent", "blocked"),
    [("claude-code", DENIED), ("codex", "declined by Codex"), ("gemini-cli", "Path not in the workspace: /")],
)
def test_a_command_a_cli_never_ran_is_blocked_and_has_no_exit_code(agent, blocked):
    adapter = AGENTS[agent]()
    events = [e for line in REFUSALS[agent] for e in adapter.events(json.dumps(line), 0.0)]
    (command,) = [e.payload for e in events if e.kind == "command"]
    assert command == {"command": "rm -rf /", "output": None, "exit_code": None, "ok": False, "blocked": blocked}


def test_a_claude_code_command_that_was_interrupted_has_no_exit_code():
    agent = ClaudeCode()
    agent.events(json.dumps(claude_bash("t1", "sleep 900")), 0.0)
    record = {"stdout": "", "stderr": "", "interrupted": True}
    line = claude_result("t1", "(Bash completed with no output)", False, record)
    command, _result = agent.events(json.dumps(line), 0.0)
    assert command.payload == {"command": "sleep 900", "output": "", "exit_code": None, "ok": False}
