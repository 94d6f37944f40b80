"""A trajectory that tells the truth about commands: each agent, in each sandbox backend, runs a command that exits 3
and one with command substitution, and the stored ``command`` events carry the exit codes the agent reported, and
Gemini CLI's refusal of the second as ``blocked``."""

from __future__ import annotations

import pytest

from trajectories.models import Run

from .test_agent_clis import describe, run_cli

RUNBOOK = """# Exit codes
## Step 1: a command that fails
```bash
exit 3
```

## Step 2: command substitution
```bash
echo "$(echo substituted)"
```
"""
GEMINI_REFUSAL = "Blocked: command substitution detected in shell command."


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini-cli", "jetty-agent"])
def test_commands_keep_their_real_exit_codes_and_refusals(agent, alice_client, each_backend_worker):
    network = "off" if each_backend_worker.backend == "bubblewrap" else "on"
    _completion, summary = run_cli(alice_client, agent, network, runbook=RUNBOOK, template_variables={})
    run = Run.objects.get(public_id=summary["run_id"])
    commands = [e.payload for e in run.events.filter(kind="command").order_by("seq")]
    assert len(commands) == 3, describe(run.public_id)  # the two steps, then the scripted summary
    failed, substituted, wrote_summary = commands

    assert "exit 3" in failed["command"]
    assert (failed["exit_code"], failed["ok"], "blocked" in failed) == (3, False, False), failed

    assert "$(echo substituted)" in substituted["command"]
    if agent == "gemini-cli":
        refused = {"output": None, "exit_code": None, "ok": False, "blocked": GEMINI_REFUSAL}
        assert {k: substituted.get(k) for k in refused} == refused, substituted
    else:
        assert (substituted["exit_code"], substituted["ok"], "blocked" in substituted) == (0, True, False)
        assert substituted["output"].strip() == "substituted"

    assert (wrote_summary["exit_code"], wrote_summary["ok"]) == (0, True), wrote_summary
    results = [e.payload["ok"] for e in run.events.filter(kind="tool.result").order_by("seq")]
    assert results == [False, agent != "gemini-cli", True]
