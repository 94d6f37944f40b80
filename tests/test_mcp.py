"""`jetty mcp` driven by the `mcp` client library against a live server: over stdio (the process Claude Code
starts) and over streamable HTTP, where each caller may bring its own token."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from jetty_cli.main import mcp as mcp_command
from jetty_cli.main import parser
from tests.support import servers

from .test_runbooks import GOOD

JETTY = Path(sys.executable).parent / "jetty"
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}
ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "claude-code" / "jetty"
TOOLS = {
    "list_collections",
    "create_collection",
    "list_tasks",
    "get_task",
    "push_task",
    "task_diff",
    "validate_runbook",
    "run_task",
    "run_task_sync",
    "list_runs",
    "get_run",
    "get_trajectory",
    "list_artifacts",
    "read_artifact",
    "cancel_run",
    "labels",
    "step_templates",
    "check_secrets",
}

# tests/test_agent_runs.py's runbook, with the sections the validator asks of a stored task.
RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
agent: jetty-agent
primary_outputs: [count.txt]
---
# Objective
Count the words of a greeting for {{name}} and report.

## REQUIRED OUTPUT FILES
- `/app/results/count.txt`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Parameters
- `name`: who to greet

## Dependencies
- coreutils

## Step 1: write the greeting
```bash
mkdir -p {{results_dir}} && echo "hello {{name}} from jetty" > {{results_dir}}/greeting.txt
```

## Step 2: count
```bash
wc -w < /app/results/greeting.txt > /app/results/count.txt && cp /app/assets/names.txt /app/results/names.txt
```

## Evaluate
| result | when |
|---|---|
| PASS | count.txt holds 4 |

## Iterate (max 3 rounds)
| symptom | fix |
|---|---|
| empty count | rerun step 2 |

## Summary
Write summary.md.

## Validation report
```bash
echo '{"version": "1.0.0", "overall_passed": true, "results": {"pass": 1, "partial": 0, "fail": 0},' \\
  '"stages": [{"name": "count", "passed": true, "message": "ok"}]}' \\
  > /app/results/validation_report.json
```

## Final Checklist
```bash
test -s /app/results/count.txt && test -s /app/results/validation_report.json
```

## Tips
Keep it short.
"""


class Session:
    """An MCP client session with shortcuts: `call` expects success and returns the structured result,
    `fail` expects a tool error and returns its text."""

    def __init__(self, client: Client):
        self.client = client

    async def tools(self) -> set[str]:
        return {tool.name for tool in (await self.client.list_tools()).tools}

    async def call(self, tool: str, /, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content)
        assert not result.is_error, f"{tool} failed: {text}"
        assert result.structured_content is not None
        assert json.loads(text) == result.structured_content  # the same result as text, for clients without it
        return result.structured_content

    async def fail(self, tool: str, /, **arguments: Any) -> str:
        result = await self.client.call_tool(tool, arguments)
        assert result.is_error, f"{tool} should have failed: {result.structured_content}"
        return " ".join(getattr(c, "text", "") for c in result.content)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No stored login and no JETTY_ variables but those given."""
    return {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "PATH": os.environ["PATH"], **extra}


@asynccontextmanager
async def over_stdio(home: Path, url: str | None, token: str | None):
    env = clean_env(home, **({"JETTY_URL": url} if url else {}), **({"JETTY_TOKEN": token} if token else {}))
    params = StdioServerParameters(command=str(JETTY), args=["mcp"], env=env)
    async with Client(params, read_timeout_seconds=120) as client:
        yield Session(client)


@asynccontextmanager
async def over_http(url: str, token: str | None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120) as client:
            yield Session(client)


def drive(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


@pytest.fixture(scope="module")
def mcp_http(jetty_server, tmp_path_factory):
    """`jetty mcp --http` on a free port, knowing the server but holding no token: callers bring their own."""
    home = tmp_path_factory.mktemp("mcp-home")
    port = servers.free_port()
    log = home / "mcp.log"
    proc = servers.spawn(
        [str(JETTY), "mcp", "--http", "--port", str(port)], clean_env(home, JETTY_URL=jetty_server.url), log
    )
    url = f"http://127.0.0.1:{port}/mcp"
    servers.wait_until(lambda: httpx.get(url, timeout=1).status_code < 500, 30, "jetty mcp --http", proc, log)
    yield url
    servers.Process(proc, log).stop()


def test_every_verb_is_a_tool_over_stdio_and_http(tmp_path, jetty, alice, mcp_http):
    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as stdio:
            assert await stdio.tools() == TOOLS
        async with over_http(mcp_http, alice.token) as http:
            assert await http.tools() == TOOLS
            templates = (await http.call("step_templates"))["step_types"]
            assert {"runbook", "text_echo", "conditional_branch"} <= {t["type"] for t in templates}
            echo = await http.call("step_templates", step_type="text_echo")
            assert echo["type"] == "text_echo" and "params" in echo and "outputs" in echo

    drive(scenario)


def test_a_runbook_is_validated_pushed_versioned_and_diffed(tmp_path, jetty, alice):
    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as mcp:
            made = await mcp.call("create_collection", name="greetings", description="hello world")
            assert made["name"] == "greetings"

            bad = await mcp.call(
                "validate_runbook", runbook=RUNBOOK.replace("evaluation: programmatic", "evaluation: vibes")
            )
            assert bad["valid"] is False
            assert [(e["code"], e["line"]) for e in bad["errors"]] == [("evaluation_unknown", 3)]
            good = await mcp.call("validate_runbook", runbook=RUNBOOK)
            assert good["valid"] is True and good["errors"] == []

            refused = await mcp.fail(
                "push_task", collection="greetings", task="greet", runbook=RUNBOOK.split("# Objective")[1]
            )
            assert "422" in refused and "error(s)" in refused

            first = await mcp.call("push_task", collection="greetings", task="greet", runbook=RUNBOOK, message="first")
            assert first["latest_version"] == 1 and first["version"]["message"] == "first"
            changed = RUNBOOK.replace("Keep it short.", "Keep it very short.")
            second = await mcp.call("push_task", collection="greetings", task="greet", runbook=changed)
            assert second["latest_version"] == 2
            same = await mcp.call("push_task", collection="greetings", task="greet", runbook=changed)
            assert same["latest_version"] == 2  # nothing new to store

            diff = await mcp.call("task_diff", collection="greetings", task="greet")
            assert (diff["from"], diff["to"]) == (1, 2)
            assert "-Keep it short.\n+Keep it very short.\n" in diff["diff"]
            task = await mcp.call("get_task", collection="greetings", task="greet", version=1)
            assert task["kind"] == "runbook" and task["version"]["runbook"] == RUNBOOK
            assert [v["version"] for v in task["versions"]] == [2, 1]
            tasks = (await mcp.call("list_tasks", collection="greetings"))["tasks"]
            assert [(t["name"], t["latest_version"]) for t in tasks] == [("greet", 2)]
            collections = (await mcp.call("list_collections"))["collections"]
            assert [(c["name"], c["tasks"]) for c in collections] == [("greetings", 1)]

    drive(scenario)


def test_a_stored_runbook_runs_and_is_inspected_through_the_tools(tmp_path, jetty, alice, worker):
    names = tmp_path / "names.txt"
    names.write_text("ada\nbo\n")

    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as mcp:
            await mcp.call("create_collection", name="greetings")
            await mcp.call("push_task", collection="greetings", task="greet", runbook=RUNBOOK)
            run = await mcp.call(
                "run_task_sync",
                collection="greetings",
                task="greet",
                init_params={"name": "ada"},
                files=[str(names)],
                model="scripted/default",
                agent="jetty-agent",
            )
            assert run["status"] == "succeeded", run
            assert (run["agent"], run["model"], run["collection"]) == ("jetty-agent", "scripted/default", "greetings")
            assert run["validation"]["overall_passed"] is True
            run_id = run["run_id"]

            listed = {a["path"]: a for a in (await mcp.call("list_artifacts", run_id=run_id))["artifacts"]}
            assert {"count.txt", "names.txt", "summary.md", "validation_report.json"} <= set(listed)
            count = await mcp.call("read_artifact", run_id=run_id, path="count.txt")
            assert count["text"] == "4\n" and count["truncated"] is False
            assert (await mcp.call("read_artifact", run_id=run_id, path="names.txt"))["text"] == "ada\nbo\n"
            missing = await mcp.fail("read_artifact", run_id=run_id, path="nope.txt")
            assert "404" in missing

            header = await mcp.call("get_run", run_id=run_id)
            assert header["status"] == "succeeded" and header["task"] == "greet"
            assert {a["path"] for a in header["artifacts"]} == set(listed)

            # Follow the trajectory a few events at a time: every event once, in order, then done.
            seqs, kinds, after = [], [], 0
            while True:
                page = await mcp.call("get_trajectory", run_id=run_id, after=after, limit=4, max_chars=120)
                seqs += [e["seq"] for e in page["events"]]
                kinds += [e["kind"] for e in page["events"]]
                after = page["next_after"]
                if not page["has_more"]:
                    break
                assert page["done"] is False
            assert page["done"] is True and page["status"] == "succeeded"
            assert seqs == list(range(1, header["last_seq"] + 1))
            assert kinds[0] == "run.state" and "model.call" in kinds and "command" in kinds
            commands = await mcp.call("get_trajectory", run_id=run_id, kinds=["command"], limit=500)
            assert commands["events"] and {e["kind"] for e in commands["events"]} == {"command"}
            assert any("hello ada from jetty" in json.dumps(e["payload"]) for e in commands["events"])
            calls = (await mcp.call("get_trajectory", run_id=run_id, kinds=["model.call"], limit=500))["events"]
            for call in calls:  # the request alone holds the whole runbook: a compacted call is smaller
                assert call["model"] == "scripted/default" and call["prompt_tokens"] > 0
                assert "payload" not in call and len(json.dumps(call)) < len(RUNBOOK)
            assert calls[0]["response"]["tool_calls"][0]["name"] == "shell"
            assert "hello ada from jetty" in calls[0]["response"]["tool_calls"][0]["arguments"]
            clipped = await mcp.call("get_trajectory", run_id=run_id, kinds=["model.call"], limit=3, max_chars=60)
            assert clipped["events"][0]["response"].endswith(" more characters]")

            runs = (await mcp.call("list_runs", task="greet", collection="greetings"))["runs"]
            assert [r["id"] for r in runs] == [run_id]
            assert (await mcp.call("list_runs", status="failed"))["runs"] == []

            found = (await mcp.call("labels", run_id=run_id))["labels"]
            labels = {(x["key"], x["author"]): x["value"] for x in found}
            assert labels[("validation.overall_passed", "system")] is True

            queued = await mcp.call("run_task", collection="greetings", task="greet", init_params={"name": "bo"})
            assert queued["status"] in ("queued", "running")
            cancelled = await mcp.call("cancel_run", run_id=queued["run_id"])
            assert cancelled["run_id"] == queued["run_id"]
            with anyio.fail_after(30):  # a running run ends once its worker has stopped the sandbox
                while cancelled["status"] not in FINAL:
                    await anyio.sleep(0.2)
                    cancelled = await mcp.call("get_run", run_id=queued["run_id"])
            assert cancelled["status"] == "cancelled"

    drive(scenario)


def test_check_secrets_reports_missing_then_set(tmp_path, jetty, alice):
    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as mcp:
            await mcp.call("create_collection", name="vault")
            await mcp.call("push_task", collection="vault", task="counter", runbook=GOOD)
            before = await mcp.call("check_secrets", collection="vault", task="counter")
            assert before == {"secrets": {"API_TOKEN": False}, "missing": ["API_TOKEN"], "ok": False}

            http = httpx.Client(base_url=jetty.url, headers={"authorization": f"Bearer {alice.token}"})
            patched = http.patch("/api/v1/collections/vault/environment", json={"secrets": {"API_TOKEN": "s3cret"}})
            assert patched.status_code == 200, patched.text
            after = await mcp.call("check_secrets", collection="vault", task="counter")
            assert after == {"secrets": {"API_TOKEN": True}, "missing": [], "ok": True}
            by_name = await mcp.call("check_secrets", collection="vault", names=["API_TOKEN", "OTHER"])
            assert by_name["secrets"] == {"API_TOKEN": True, "OTHER": False} and by_name["missing"] == ["OTHER"]
            assert "s3cret" not in json.dumps([before, after, by_name])

    drive(scenario)


def test_api_errors_come_back_as_tool_errors_with_the_api_message(tmp_path, jetty, alice):
    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as mcp:
            assert "404" in await mcp.fail("get_run", run_id="run_nope")
            assert "`name` must be lower-case" in await mcp.fail("create_collection", name="Bad Name")
            await mcp.call("create_collection", name="twice")
            assert "409: Collection `twice` already exists" in await mcp.fail("create_collection", name="twice")
            assert "Send exactly one of" in await mcp.fail("push_task", collection="twice", task="t")
            assert "unknown step type 'nope'" in await mcp.fail("step_templates", step_type="nope")
            assert "no such file" in await mcp.fail("run_task", collection="twice", task="t", files=["/nope.pdf"])
        async with over_stdio(tmp_path, None, None) as anonymous:
            assert "not logged in" in await anonymous.fail("list_collections")

    drive(scenario)


def test_another_org_cannot_see_alices_collection(tmp_path, jetty, alice, bob, mcp_http):
    async def scenario():
        async with over_stdio(tmp_path, jetty.url, alice.token) as mcp:
            await mcp.call("create_collection", name="private")
            await mcp.call("push_task", collection="private", task="greet", runbook=RUNBOOK)
        async with over_stdio(tmp_path, jetty.url, bob.token) as outsider:
            assert (await outsider.call("list_collections"))["collections"] == []
            assert "404" in await outsider.fail("list_tasks", collection="private")
            assert "404" in await outsider.fail("run_task", collection="private", task="greet")
        async with over_http(mcp_http, bob.token) as outsider:
            assert (await outsider.call("list_collections"))["collections"] == []
            assert "404" in await outsider.fail("get_task", collection="private", task="greet")
        async with over_http(mcp_http, alice.token) as owner:
            assert [c["name"] for c in (await owner.call("list_collections"))["collections"]] == ["private"]
            # the MCP server's own files are not for a caller who brought another identity
            secret = await owner.fail("run_task", collection="private", task="greet", files=[str(tmp_path / "x")])
            assert "may not" in secret
        async with over_http(mcp_http, None) as anonymous:  # this server holds no token of its own
            assert "not logged in" in await anonymous.fail("list_collections")

    drive(scenario)


# The Claude Code plugin


def skill(name: str) -> tuple[dict[str, Any], str]:
    text = (PLUGIN / "skills" / name / "SKILL.md").read_text()
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def test_the_plugin_starts_this_server_and_the_marketplace_lists_it():
    manifest = json.loads((PLUGIN / ".claude-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "jetty" and re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    started = json.loads((PLUGIN / ".mcp.json").read_text())["mcpServers"]["jetty"]
    assert started["command"] == "jetty"
    assert parser().parse_args(started["args"]).handler is mcp_command  # `jetty mcp`, over stdio
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    [entry] = market["plugins"]
    assert entry["name"] == manifest["name"] and (ROOT / entry["source"]).resolve() == PLUGIN


def test_the_skills_name_only_tools_the_server_has():
    mentioned: set[str] = set()
    for name in ("set-up", "create-runbook", "run-and-inspect"):
        meta, body = skill(name)
        assert meta["name"] == name and len(meta["description"]) > 40
        words = set(re.findall(r"`([a-z_]+)`", body))
        verbs = {w for w in words if w.split("_")[0] in {"list", "get", "create", "push", "read", "cancel", "check"}}
        assert verbs <= TOOLS, f"{name} names tools the server lacks: {verbs - TOOLS}"
        mentioned |= words & TOOLS
    assert mentioned == TOOLS


def test_the_create_runbook_skill_lists_every_validator_finding():
    source = (ROOT / "runs" / "runbooks.py").read_text()
    codes = set(re.findall(r'"([a-z_]+_(?:missing|invalid|unknown|unbounded|undeclared|left))"', source))
    _, body = skill("create-runbook")
    listed = set(re.findall(r"`([a-z_]+_(?:missing|invalid|unknown|unbounded|undeclared|left))`", body))
    assert listed == codes
