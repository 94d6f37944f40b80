"""The CLI adapters read what each real CLI printed (samples captured from Claude Code 2.1.197, Codex 0.171.0 and
Gemini CLI 0.61.0 against a local model, in tests/fixtures/cli-streams/) into trajectory events."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs.agents import JettyAgent, Mission, agent_for
from runs.agents.clis import MAX_PROMPT_CHARS, ClaudeCode, Codex, GeminiCli, mission_prompt

STREAMS = Path(__file__).parent / "fixtures" / "cli-streams"


def read(agent, sample: str):
    events = []
    for line in (STREAMS / sample).read_text().splitlines():
        events += agent.events(line, 0.0)
    return [(e.kind, e.payload) for e in events]


@pytest.mark.parametrize(
    ("agent", "sample", "tool"),
    [
        (ClaudeCode(), "claude_tool_allowed.jsonl", "Bash"),
        (Codex(), "codex_tool_bypass.jsonl", "exec_command"),
        (GeminiCli(), "gemini_tool.jsonl", "run_shell_command"),
    ],
)
def test_a_tool_turn_becomes_call_command_result_then_the_answer(agent, sample, tool):
    events = read(agent, sample)
    kinds = [k for k, _ in events]
    call = kinds.index("tool.call")
    assert kinds[call : call + 3] == ["tool.call", "command", "tool.result"]
    assert events[call][1]["name"] == tool
    command = events[call + 1][1]
    assert "echo hello-from-tool > results/out.txt" in command["command"]
    assert "hello-from-tool" in command["output"] and command["ok"] is True
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
