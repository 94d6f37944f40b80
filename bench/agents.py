"""Agent CLI benchmark: what the platform adds to a run of each real CLI, and what the gateway adds per model call.

1. A one-turn run (one runbook step, then the summary, then the answer: three model calls) with each CLI, end to
   end through the platform (API, Celery, sandbox, CLI, recording gateway, artifacts, answer), against the same
   CLI started bare in the same kind of sandbox, talking to the bare scripted server (bench/bare_model_server.py).
2. One model call in each CLI's wire format (streamed, as the CLIs ask) through the gateway, against the same
   call to the bare scripted server: the gateway's added latency per call.

    .venv/bin/python bench/agents.py [--repeat 5] [--calls 50] [--backend bubblewrap]
Needs what bench/sandboxes.py needs, plus `scripts/install-agents`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from sandboxes import ROOT, WORK, post, start_platform, timed

from runs.agents import Mission, agent_for
from runs.sandboxes import Limits, SandboxSpec, create_sandbox
from tests.support import servers

ONE_TURN = "# Objective\nOne step.\n\n```bash\necho done > /app/results/done.txt\n```\n"
CLIS = ("claude-code", "codex", "gemini-cli")
TOOL = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
CALLS = {  # one streamed call per wire, offering a shell tool, as the CLIs make them (an API token: any model)
    "claude-code": (
        "/v1/messages",
        {
            "model": "scripted/default",
            "max_tokens": 1000,
            "stream": True,
            "messages": [{"role": "user", "content": "hello"}],
            "tools": [{"name": "Bash", "description": "run", "input_schema": TOOL}],
        },
    ),
    "codex": (
        "/v1/responses",
        {
            "model": "scripted/default",
            "stream": True,
            "input": [{"role": "user", "content": "hello"}],
            "tools": [{"type": "function", "name": "exec_command", "parameters": TOOL}],
        },
    ),
    "gemini-cli": (
        "/v1beta/models/scripted/default:streamGenerateContent?alt=sse",
        {
            "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
            "tools": [{"functionDeclarations": [{"name": "run_shell_command", "parameters": TOOL}]}],
        },
    ),
}


def platform_run(url: str, token: str, agent: str) -> None:
    answer = post(
        f"{url}/v1/chat/completions",
        token,
        {
            "model": "scripted/default",
            "messages": [{"role": "system", "content": ONE_TURN}, {"role": "user", "content": "go"}],
            "jetty": {"runbook": True, "agent": agent, "network": "on"},
        },
    )
    assert answer["jetty"]["status"] == "succeeded", answer["jetty"]


def bare_run(backend: str, agent_name: str, bare_url: str) -> None:
    """The CLI in a fresh sandbox of the same backend, configured the same way, against the bare server."""
    agent = agent_for(agent_name, "scripted/default")
    assert agent is not None
    sandbox = create_sandbox(
        SandboxSpec(name=f"bench-bare-{time.time_ns()}", limits=Limits(wall_s=120), extra_binds=agent.binds()),
        backend=backend,
    )
    try:
        mission = Mission(
            runbook=ONE_TURN, instruction="go", model="scripted/default", gateway_url=f"{bare_url}/v1", run_token="x"
        )
        launch = agent.launch(mission, sandbox.home)
        sandbox.hand_over(sandbox.home)
        outcome = sandbox.start(launch.argv, launch.env).wait()
        assert outcome.exit_code == 0 and (sandbox.results / "done.txt").exists(), outcome
    finally:
        sandbox.destroy()


def one_call(url: str, token: str, path: str, body: dict) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{url}{path}", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and response.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--backend", default="bubblewrap")
    parser.add_argument("--agents", default=",".join(CLIS), help="comma-separated CLIs to run")
    args = parser.parse_args()
    port = servers.free_port()
    bare = servers.Process(
        servers.spawn(
            [sys.executable, str(ROOT / "bench/bare_model_server.py"), "--port", str(port)],
            dict(os.environ),
            WORK / "bare-model-server.log",
        ),
        WORK / "bare-model-server.log",
        url=f"http://127.0.0.1:{port}",
    )
    web, worker, token = start_platform(args.backend, WORK)
    rows: list[tuple[str, float, float]] = []
    try:
        servers.wait_until(
            lambda: subprocess.run(["curl", "-fsI", bare.url], capture_output=True).returncode == 0, 60, "bare server"
        )
        for agent in args.agents.split(","):
            platform_run(web.url, token, agent)  # warm: the first run of a CLI pays for its caches
            ours = timed(lambda a=agent: platform_run(web.url, token, a), args.repeat)
            theirs = timed(lambda a=agent: bare_run(args.backend, a, bare.url), args.repeat)
            rows.append((f"one-turn run, {agent} ({args.backend})", statistics.median(ours), statistics.median(theirs)))
            print(rows[-1], flush=True)
        for path, body in CALLS.values():
            ours = timed(lambda p=path, b=body: one_call(web.url, token, p, b), args.calls)
            theirs = timed(lambda p=path, b=body: one_call(bare.url, token, p, b), args.calls)
            rows.append((f"one model call, {path.split('?')[0]}", statistics.median(ours), statistics.median(theirs)))
    finally:
        worker.stop()
        web.stop()
        bare.stop()
    lines = ["| measurement | Jetty ms (median) | bare ms (median) | added | overhead |", "|---|---:|---:|---:|---:|"]
    for name, ours, theirs in rows:
        overhead = (ours / theirs - 1) * 100
        lines.append(f"| {name} | {ours:.1f} | {theirs:.1f} | {ours - theirs:+.1f} ms | {overhead:+.0f}% |")
    report = "\n".join(lines) + "\n"
    (ROOT / "bench/results/agents.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
