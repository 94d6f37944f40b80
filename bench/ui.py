"""Web UI benchmark: Jetty's run page against Inspect AI's log viewer on the same trajectory, in one run.

For each size (2,000, 20,000 and 100,000 events by default) one synthetic coding-agent trajectory is built (model
calls with their request window, response and usage; the agent's messages; shell and file-writing tool calls with
their commands, file changes and results) and stored twice: as a Jetty run in a SQLite database of its own, served
by daphne, and as an Inspect eval log (one sample, ``.eval``, written by ``write_eval_log``), served by
``inspect view``. A unique needle word sits in the agent's message 90% of the way through.

A fresh headless Chromium per measurement (no HTTP cache; Jetty's session cookie comes from one login before the
measurements, passed in as storage state) measures:
- first event: from ``page.goto`` until the first event is visible (Jetty: ``#timeline li.event``; Inspect: the
  first event panel of the sample's transcript);
- search hit: from typing the needle (then Enter) until a hit is visible (Jetty: ``#search-hits a.hit``; Inspect:
  its find band, Ctrl+F, until the matched text is selected and on screen);
- browser memory once the page is shown: the page's JS heap (CDP ``Performance.getMetrics``) and the resident
  memory of the whole Chromium process tree (RSS summed; PSS in the JSON).
Jetty's figures are medians of ``--repeat`` measurements, Inspect's of ``--inspect-repeat`` (each capped at
``--timeout`` seconds: "did not load" past it).

    .venv/bin/python bench/ui.py [--sizes 2000,20000,100000] [--out bench/results/ui.json]
Needs playwright (the Python package) and Chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
(ROOT / "var").mkdir(exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-ui-", dir=ROOT / "var"))
os.environ["JETTY_VAR_DIR"] = str(WORK)
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'jetty.sqlite3'}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from orgs.models import Membership, Org  # noqa: E402
from tests.support import servers  # noqa: E402
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from trajectories.models import Event, Run  # noqa: E402

VIEWPORT = {"width": 1400, "height": 900}
MODEL, PROVIDER = "openai/gpt-4.1", "openai"
USERNAME, PASSWORD = "bench", "bench-ui-password-1"
WINDOW = 6  # messages of history each model call's request carries (after the system prompt and the task)
JETTY_FIRST = "#timeline li.event"
JETTY_SEARCH, JETTY_HIT = "#event-search", "#search-hits a.hit"
INSPECT_FIRST = '[id^="event-panel-"]'
INSPECT_FIND = 'input[placeholder="Find"]'
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

# The trajectory ---------------------------------------------------------------------------------------------------

SYSTEM = (
    "You are a careful software engineer working in a sandbox. The repository is checked out in /app. Use the "
    "`bash` tool to run commands and the `write_file` tool to write files. Run the tests after every change. "
    "Keep your changes small and explain what you do before each tool call. When all tests pass, write "
    "/app/results/summary.md describing the fix and stop.\n\nRules: "
) + " ".join(f"({i}) rule text" for i in range(40))
TASK = "The billing service rounds invoice totals wrongly for some tax rates. Find the bug, fix it and add tests."
TOOLS = [
    {
        "name": "bash",
        "description": "Run a bash command in /app and return its output.",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    },
    {
        "name": "write_file",
        "description": "Write a file (path relative to /app).",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
]
FILES = [
    "src/billing/invoice.py",
    "src/billing/tax.py",
    "src/billing/client.py",
    "src/billing/money.py",
    "src/billing/currency.py",
    "tests/test_invoice.py",
    "tests/test_tax.py",
    "tests/test_money.py",
]
THOUGHTS = [
    "The failing case rounds the subtotal before applying the tax rate, so the total drifts by a cent.",
    "This helper converts to float and back, which loses precision for rates like 0.075.",
    "The test fixture builds line items with three decimals; the invoice quantises them too early.",
    "The currency table has JPY with zero decimals, which the rounding code does not handle.",
    "I want to see how `quantize` is called before changing anything.",
    "The tests pass for EUR but not for CHF, whose cash rounding is to five centimes.",
    "That grep shows two places that round; only one of them uses ROUND_HALF_EVEN.",
    "The previous run still has one failure in test_tax.py; let me read the assertion.",
]
NAMES = ["subtotal", "tax_rate", "line_total", "amount", "rounding", "currency", "quantum", "discount", "invoice"]


@dataclass
class Turn:
    text: str  # what the agent says before its tool call
    tool: str  # bash or write_file
    arguments: dict[str, Any]
    output: str
    exit_code: int
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Trajectory:
    size: int  # Jetty events
    needle: str
    turns: list[Turn] = field(default_factory=list)
    needle_turn: int = 0
    payload_bytes: int = 0  # the Jetty events' payloads as JSON

    @property
    def closing(self) -> list[str]:
        left = self.size - 2 - 5 * len(self.turns)
        return [f"agent finished: {n + 1} of {left} closing notes" for n in range(left)]


def code_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        lines.append(
            rng.choice(
                [
                    f"    {a} = {b}.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)",
                    f"def compute_{a}({b}: Decimal, rate: Decimal) -> Decimal:",
                    f"    return ({a} * (1 + rate)).quantize(QUANTUM[{b}.currency])",
                    f"    assert invoice.{a} == Decimal('{rng.randint(1, 999)}.{rng.randint(10, 99)}')",
                    f"    # {a} is kept exact until the final {b} step",
                    f"    if {a} is None:\n        raise ValueError('{b} missing')",
                ]
            )
        )
    return lines


def command_and_output(rng: random.Random, turn: int) -> tuple[str, str, int]:
    path = rng.choice(FILES)
    kind = rng.randrange(4)
    if kind == 0:
        failed = rng.randint(0, 3)
        lines = [f"tests/{rng.choice(['test_invoice', 'test_tax', 'test_money'])}.py " + "." * rng.randint(8, 40)]
        for i in range(failed):
            lines += [
                f"FAILED tests/test_tax.py::test_rate_{turn}_{i} - AssertionError: "
                f"assert Decimal('{rng.randint(1, 99)}.{rng.randint(10, 99)}') == Decimal('10.{rng.randint(10, 99)}')",
                *code_lines(rng, 6),
            ]
        lines.append(f"{failed} failed, {rng.randint(40, 90)} passed in {rng.random() * 3:.2f}s")
        return "python -m pytest -q tests", "\n".join(lines), 1 if failed else 0
    if kind == 1:
        word = rng.choice(NAMES)
        hits = [f"{rng.choice(FILES)}:{rng.randint(1, 300)}:{line.strip()}" for line in code_lines(rng, 8)]
        return f"grep -rn {word} src tests", "\n".join(hits), 0
    if kind == 2:
        start = rng.randint(1, 200)
        return f"sed -n {start},{start + 30}p {path}", "\n".join(code_lines(rng, 30)), 0
    diff = [f"--- a/{path}", f"+++ b/{path}", f"@@ -{turn},7 +{turn},8 @@"]
    diff += [f"{rng.choice('+- ')}{line}" for line in code_lines(rng, 12)]
    return "git diff", "\n".join(diff), 0


def build_trajectory(size: int) -> Trajectory:
    """Turns of five Jetty events each (model call, message, tool call, command or file change, tool result)
    after the two opening messages (system prompt, task), with the needle in one message at 90%; what is left
    over (up to four events) becomes closing log lines."""
    rng = random.Random(size)
    turns = max(1, (size - 2) // 5)
    trajectory = Trajectory(size=max(size, 7), needle=f"zebracorn-{size}", needle_turn=int(turns * 0.9))
    for i in range(turns):
        text = f"Step {i + 1}. {rng.choice(THOUGHTS)} {rng.choice(THOUGHTS)}"
        if i == trajectory.needle_turn:
            text += f" The fixture for CHF cash rounding is tagged {trajectory.needle}; I will check it next."
        if i % 4 == 3:
            path = rng.choice(FILES)
            content = "\n".join(["from decimal import ROUND_HALF_UP, Decimal", "", *code_lines(rng, 24)])
            arguments: dict[str, Any] = {"path": path, "content": content}
            output, code, tool = f"wrote /app/{path} ({len(content.encode())} bytes)", 0, "write_file"
        else:
            command, output, code = command_and_output(rng, i)
            arguments, tool = {"cmd": command}, "bash"
        prompt = 2400 + 40 * min(i, 400) + rng.randint(0, 300)
        trajectory.turns.append(Turn(text, tool, arguments, output, code, prompt, rng.randint(60, 400)))
    return trajectory


def moments(trajectory: Trajectory) -> list[datetime]:
    """When each turn began: a few seconds apart, the same for both stores."""
    return [START + timedelta(seconds=4 * i + 1) for i in range(len(trajectory.turns))]


# As chat messages (the shape Jetty's gateway records: OpenAI chat completions) ------------------------------------


def chat_messages(turn: Turn, i: int) -> list[dict[str, Any]]:
    call_id = f"call_{i:06d}"
    arguments = json.dumps(turn.arguments)
    call = {"id": call_id, "type": "function", "function": {"name": turn.tool, "arguments": arguments}}
    return [
        {"role": "assistant", "content": turn.text, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": turn.output},
    ]


def jetty_events(trajectory: Trajectory, run: Run) -> list[Event]:
    opening = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    tools = [{"type": "function", "function": tool} for tool in TOOLS]
    events = [
        Event(run=run, seq=1, kind="agent.message", ts=START, payload=opening[0]),
        Event(run=run, seq=2, kind="agent.message", ts=START, payload=opening[1]),
    ]
    history: list[dict[str, Any]] = []
    for i, (turn, ts) in enumerate(zip(trajectory.turns, moments(trajectory), strict=True)):
        said, answered = chat_messages(turn, i)
        call_id = said["tool_calls"][0]["id"]
        usage = {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens,
            "total_tokens": turn.prompt_tokens + turn.completion_tokens,
        }
        response = {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": int(ts.timestamp()),
            "model": "gpt-4.1-2025-04-14",
            "choices": [{"index": 0, "message": said, "finish_reason": "tool_calls"}],
            "usage": usage,
        }
        call = {
            "request": {"model": MODEL, "messages": opening + history[-WINDOW:], "tools": tools},
            "response": response,
            "finish_reason": "tool_calls",
            "usage": usage,
            "status_code": 200,
            "stream": False,
            "upstream_model": "gpt-4.1-2025-04-14",
            "ttfb_ms": 850.0,
        }
        cost = (turn.prompt_tokens * 2 + turn.completion_tokens * 8) / 1e6
        seq = len(events)
        shown = {"role": "assistant", "content": turn.text}
        tool_call = {"id": call_id, "name": turn.tool, "arguments": turn.arguments}
        if turn.tool == "bash":
            middle = ("command", {"command": turn.arguments["cmd"], "output": turn.output, "exit_code": turn.exit_code})
            middle[1].update(ok=turn.exit_code == 0, duration_ms=1200)
        else:
            path = f"/app/{turn.arguments['path']}"
            middle = ("file.change", {"path": path, "action": "write", "size": len(turn.arguments["content"])})
        result = {"id": call_id, "name": turn.tool, "output": turn.output, "ok": turn.exit_code == 0}
        second = timedelta(seconds=1)
        events += [
            Event(
                run=run,
                seq=seq + 1,
                kind="model.call",
                ts=ts,
                payload=call,
                model=MODEL,
                provider=PROVIDER,
                prompt_tokens=turn.prompt_tokens,
                completion_tokens=turn.completion_tokens,
                cost_usd=cost,
                latency_ms=1500,
            ),
            Event(run=run, seq=seq + 2, kind="agent.message", ts=ts + 1.5 * second, payload=shown),
            Event(run=run, seq=seq + 3, kind="tool.call", ts=ts + 1.5 * second, payload=tool_call),
            Event(run=run, seq=seq + 4, kind=middle[0], ts=ts + 2.7 * second, payload=middle[1]),
            Event(run=run, seq=seq + 5, kind="tool.result", ts=ts + 2.7 * second, payload=result),
        ]
        history += [said, answered]
    end = moments(trajectory)[-1] + timedelta(seconds=3)
    for note in trajectory.closing:
        events.append(Event(run=run, seq=len(events) + 1, kind="log", ts=end, payload={"message": note}))
    return events


def store_jetty(trajectory: Trajectory, org: Org) -> Run:
    turns = trajectory.turns
    prompt = sum(t.prompt_tokens for t in turns)
    completion = sum(t.completion_tokens for t in turns)
    run = Run.objects.create(
        org=org,
        task=f"ui-bench-{trajectory.size}",
        kind="agent",
        status="succeeded",
        model=MODEL,
        provider=PROVIDER,
        agent="jetty-agent",
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=(prompt * 2 + completion * 8) / 1e6,
        created=START,
        started_at=START,
        finished_at=moments(trajectory)[-1] + timedelta(seconds=3),
    )
    events = jetty_events(trajectory, run)
    assert len(events) == trajectory.size and events[-1].seq == trajectory.size
    trajectory.payload_bytes = sum(len(json.dumps(e.payload)) for e in events)
    for start in range(0, len(events), 2000):
        Event.objects.bulk_create(events[start : start + 2000])
    Run.objects.filter(pk=run.pk).update(last_seq=len(events))
    return run


# As an Inspect eval log ---------------------------------------------------------------------------------------------


def write_inspect_log(trajectory: Trajectory, log_dir: Path) -> tuple[Path, int]:
    """The same trajectory as Inspect records an agent: per turn a model event, then the tool's span holding its
    sandbox event (``exec``, or ``write_file``), then the tool event; the conversation as the sample's messages."""
    from inspect_ai.dataset import Sample
    from inspect_ai.event import (
        InfoEvent,
        ModelEvent,
        SampleInitEvent,
        SandboxEvent,
        SpanBeginEvent,
        SpanEndEvent,
        ToolEvent,
    )
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSample, EvalSpec, EvalStats, write_eval_log
    from inspect_ai.model import (
        ChatCompletionChoice,
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
        GenerateConfig,
        ModelOutput,
        ModelUsage,
    )
    from inspect_ai.tool import ToolCall, ToolInfo

    tools = [ToolInfo.model_validate(tool) for tool in TOOLS]
    opening = [ChatMessageSystem(content=SYSTEM), ChatMessageUser(content=TASK, source="input")]
    messages: list[Any] = list(opening)
    history: list[Any] = []
    solvers = SpanBeginEvent(id="solvers", name="solvers", type="solvers", timestamp=START)
    react = SpanBeginEvent(id="react", parent_id="solvers", name="react", type="solver", timestamp=START)
    events: list[Any] = [
        SpanBeginEvent(id="init", name="init", type="init", timestamp=START),
        SampleInitEvent(
            span_id="init",
            timestamp=START,
            sample=Sample(id="trajectory", input=TASK, target="all tests pass"),
            state={"messages": [m.model_dump(mode="json", exclude_none=True) for m in opening]},
        ),
        SpanEndEvent(id="init", span_id="init", timestamp=START),
        solvers.model_copy(update={"span_id": "solvers"}),
        react.model_copy(update={"span_id": "react"}),
    ]
    working = 0.0
    for i, (turn, ts) in enumerate(zip(trajectory.turns, moments(trajectory), strict=True)):
        call_id = f"call_{i:06d}"
        said = ChatMessageAssistant(
            content=turn.text,
            tool_calls=[ToolCall(id=call_id, function=turn.tool, arguments=turn.arguments)],
            model=MODEL,
            source="generate",
        )
        answered = ChatMessageTool(content=turn.output, tool_call_id=call_id, function=turn.tool)
        usage = ModelUsage(
            input_tokens=turn.prompt_tokens,
            output_tokens=turn.completion_tokens,
            total_tokens=turn.prompt_tokens + turn.completion_tokens,
        )
        output = ModelOutput(
            model="gpt-4.1-2025-04-14",
            choices=[ChatCompletionChoice(message=said, stop_reason="tool_calls")],
            usage=usage,
        )
        second = timedelta(seconds=1)
        span = f"tool-{i}"
        if turn.tool == "bash":
            sandbox = SandboxEvent(
                action="exec",
                cmd=turn.arguments["cmd"],
                result=turn.exit_code,
                output=turn.output,
                span_id=span,
                timestamp=ts + 1.5 * second,
                completed=ts + 2.7 * second,
                working_start=working + 1.5,
            )
        else:
            sandbox = SandboxEvent(
                action="write_file",
                file=f"/app/{turn.arguments['path']}",
                input=turn.arguments["content"],
                span_id=span,
                timestamp=ts + 1.5 * second,
                completed=ts + 2.7 * second,
                working_start=working + 1.5,
            )
        events += [
            ModelEvent(
                model=MODEL,
                input=opening + history[-WINDOW:],
                tools=tools,
                tool_choice="auto",
                config=GenerateConfig(),
                output=output,
                span_id="react",
                timestamp=ts,
                completed=ts + 1.5 * second,
                working_start=working,
                working_time=1.5,
            ),
            SpanBeginEvent(id=span, parent_id="react", name=turn.tool, type="tool", span_id=span, timestamp=ts),
            sandbox,
            SpanEndEvent(id=span, span_id=span, timestamp=ts + 2.7 * second),
            ToolEvent(
                id=call_id,
                function=turn.tool,
                arguments=turn.arguments,
                result=turn.output,
                span_id="react",
                timestamp=ts + 1.5 * second,
                completed=ts + 2.7 * second,
                working_start=working + 1.5,
                working_time=1.2,
            ),
        ]
        history += [said, answered]
        messages += [said, answered]
        working += 4
    end = moments(trajectory)[-1] + timedelta(seconds=3)
    events += [InfoEvent(data=note, span_id="react", timestamp=end) for note in trajectory.closing]
    events += [SpanEndEvent(id="react", span_id="react", timestamp=end), SpanEndEvent(id="solvers", timestamp=end)]
    prompt = sum(t.prompt_tokens for t in trajectory.turns)
    completion = sum(t.completion_tokens for t in trajectory.turns)
    total = {MODEL: ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)}
    sample = EvalSample(
        id="trajectory",
        epoch=1,
        input=TASK,
        target="all tests pass",
        messages=messages,
        output=ModelOutput(model=MODEL, choices=[ChatCompletionChoice(message=messages[-2], stop_reason="stop")]),
        events=events,
        model_usage=total,
        started_at=START.isoformat(),
        completed_at=end.isoformat(),
        total_time=(end - START).total_seconds(),
        working_time=working,
    )
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            created=START.isoformat(),
            task=f"ui_bench_{trajectory.size}",
            dataset=EvalDataset(name="ui-bench", samples=1),
            model=MODEL,
            config=EvalConfig(),
        ),
        stats=EvalStats(started_at=START.isoformat(), completed_at=end.isoformat(), model_usage=total),
        samples=[sample],
    )
    path = log_dir / f"2026-11-01T09-00-00+00-00_ui-bench-{trajectory.size}.eval"
    write_eval_log(log, str(path))
    return path, len(events)


# Measuring ----------------------------------------------------------------------------------------------------------


def chromium_memory(launched_after: set[int]) -> dict[str, int]:
    """Resident memory of the Chromium processes this browser started (RSS summed, and PSS)."""
    rss = pss = 0
    for proc in psutil.Process().children(recursive=True):
        if proc.pid in launched_after:
            continue
        try:
            if "chrom" not in proc.name():
                continue
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return {"rss": rss, "pss": pss}


def js_heap(page) -> int:
    session = page.context.new_cdp_session(page)
    session.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in session.send("Performance.getMetrics")["metrics"]}
    session.detach()
    return int(metrics.get("JSHeapUsedSize", 0))


def measure(
    playwright, url: str, first: str, search, timeout_s: float, storage_state: dict | None, shots: Path | None
) -> dict:
    """One fresh browser: time to the first event, memory once shown, time to a search hit."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    result: dict[str, Any] = {"first_ms": None, "search_ms": None, "error": "", "loadavg": os.getloadavg()[0]}
    crashed: list[str] = []
    try:
        context = browser.new_context(viewport=VIEWPORT, storage_state=storage_state)
        page = context.new_page()
        page.on("crash", lambda _page: crashed.append("renderer crashed"))
        page.set_default_timeout(timeout_s * 1000)
        started = time.perf_counter()
        try:
            page.goto(url, wait_until="commit")
            page.wait_for_selector(first, state="visible")
        except Exception as exc:  # a timeout or a crashed page: it did not load
            result["error"] = crashed[0] if crashed else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            result["memory"] = chromium_memory(before)
            return result
        result["first_ms"] = (time.perf_counter() - started) * 1000
        result["navigation"] = page.evaluate(
            """() => { const n = performance.getEntriesByType("navigation")[0];
                return n && {ttfb_ms: n.responseStart, html_ms: n.responseEnd, html_bytes: n.transferSize,
                             dom_content_loaded_ms: n.domContentLoadedEventEnd}; }"""
        )
        try:
            page.wait_for_load_state("networkidle", timeout=5000)
        except Exception:
            pass
        result["js_heap"] = js_heap(page)
        result["memory"] = chromium_memory(before)
        if shots:
            page.screenshot(path=f"{shots}-shown.png")
        if search is None:
            return result
        try:
            result.update(search(page))
            if shots:
                page.wait_for_timeout(300)
                page.screenshot(path=f"{shots}-hit.png")
            result["js_heap_after_search"] = js_heap(page)
            result["memory_after_search"] = chromium_memory(before)
        except Exception as exc:
            result["error"] = f"search: {crashed[0] if crashed else type(exc).__name__}: {str(exc).splitlines()[0]}"
        return result
    finally:
        browser.close()


def blank_page_memory(playwright) -> dict[str, int]:
    """What Chromium costs with one empty page: the floor under both viewers' figures."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_content("<p>blank</p>")
        page.wait_for_timeout(1000)
        return {"js_heap": js_heap(page), **chromium_memory(before)}
    finally:
        browser.close()


def jetty_search(needle: str):
    def search(page) -> dict[str, Any]:
        box = page.locator(JETTY_SEARCH)
        box.wait_for(state="visible")
        started = time.perf_counter()
        box.click()
        box.press_sequentially(needle)
        box.press("Enter")
        page.wait_for_selector(JETTY_HIT, state="visible")
        hit_ms = (time.perf_counter() - started) * 1000
        # Where Inspect's find band scrolls to the match itself, Jetty lists the hits: following the first one to
        # its event is kept too (in the JSON).
        seq = page.locator(JETTY_HIT).first.get_attribute("data-seq")
        page.locator(JETTY_HIT).first.click()
        page.wait_for_selector(f"#timeline li.event[data-seq='{seq}']", state="visible")
        return {"search_ms": hit_ms, "to_event_ms": (time.perf_counter() - started) * 1000, "hit_seq": int(seq or 0)}

    return search


def inspect_search(needle: str):
    """Inspect's find band (Ctrl+F) searches the transcript, virtualised events included, and selects the match."""

    def search(page) -> dict[str, Any]:
        started = time.perf_counter()
        page.keyboard.press("Control+f")
        page.wait_for_selector(INSPECT_FIND, state="visible")
        page.locator(INSPECT_FIND).press_sequentially(needle)
        page.locator(INSPECT_FIND).press("Enter")
        page.wait_for_function(
            """needle => {
                const selection = window.getSelection();
                if (!selection || !selection.rangeCount) return false;
                if (!String(selection).toLowerCase().includes(needle)) return false;
                const box = selection.getRangeAt(0).getBoundingClientRect();
                return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
            }""",
            arg=needle.lower(),
        )
        return {"search_ms": (time.perf_counter() - started) * 1000}

    return search


def jetty_login(playwright, base: str) -> dict:
    """Log in once through the login form; the measurements reuse its cookies (logging in is not timed)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.goto(f"{base}/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "/login/" not in page.url, f"login failed: still at {page.url}"
        return page.context.storage_state()
    finally:
        browser.close()


def start_inspect_view(log_dir: Path, log: Path) -> servers.Process:
    port = servers.free_port()
    inspect = shutil.which("inspect", path=str(servers.VENV_BIN)) or "inspect"
    args = [inspect, "view", "start", "--log-dir", str(log_dir), "--host", "127.0.0.1", "--port", str(port)]
    proc = servers.spawn(args, dict(os.environ), log)
    url = f"http://127.0.0.1:{port}"
    servers.wait_until(
        lambda: urllib.request.urlopen(f"{url}/api/logs", timeout=2).status == 200,
        60,
        "inspect view",
        proc,
        log,
    )
    return servers.Process(proc, log, url)


def median(values: list[float | None]) -> float | None:
    done = [v for v in values if v is not None]
    return statistics.median(done) if len(done) == len(values) and done else None


def summarise(tries: list[dict]) -> dict:
    ok = [t for t in tries if t["first_ms"] is not None]
    return {
        "first_ms": median([t["first_ms"] for t in tries]),
        "search_ms": median([t["search_ms"] for t in tries]),
        "js_heap": statistics.median([t["js_heap"] for t in ok]) if ok else None,
        "rss": statistics.median([t["memory"]["rss"] for t in ok]) if ok else None,
        "pss": statistics.median([t["memory"]["pss"] for t in ok]) if ok else None,
        "errors": [t["error"] for t in tries if t["error"]],
        "tries": tries,
    }


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def memory(side: dict) -> str:
    return f"{mb(side['js_heap'])} / {mb(side['rss'])} ({mb(side['pss'])})"


def ms(value: float | None, errors: list[str]) -> str:
    if value is not None:
        return f"{value:.0f}"
    return "did not load" if errors else "-"


def table(results: list[dict]) -> str:
    lines = [
        "| events | Jetty first event (ms) | Jetty search hit (ms) | Jetty browser MB: JS heap / RSS (PSS) "
        "| Inspect first event (ms) | Inspect search hit (ms) | Inspect browser MB: JS heap / RSS (PSS) "
        "| Inspect / Jetty (first event) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        jetty, inspect = r["jetty"], r["inspect"]
        ratio = "-"
        if jetty["first_ms"] and inspect["first_ms"]:
            ratio = f"{inspect['first_ms'] / jetty['first_ms']:.1f}x"
        elif jetty["first_ms"] and inspect["errors"]:
            ratio = "did not load"
        lines.append(
            f"| {r['events']:,} | {ms(jetty['first_ms'], jetty['errors'])} | {ms(jetty['search_ms'], [])} "
            f"| {memory(jetty)} | {ms(inspect['first_ms'], inspect['errors'])} "
            f"| {ms(inspect['search_ms'], [])} | {memory(inspect)} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000,20000,100000")
    parser.add_argument("--repeat", type=int, default=3, help="Jetty measurements per size (median)")
    parser.add_argument("--inspect-repeat", type=int, default=2, help="Inspect measurements per size (median)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a page counts as not loaded")
    parser.add_argument("--skip-inspect", action="store_true")
    parser.add_argument("--skip-jetty", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/ui.json"))
    parser.add_argument("--screenshots", help="a folder: screenshots of each page once shown and at the hit")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> Path | None:
        return shots / name if shots else None

    call_command("migrate", verbosity=0)
    org = Org.objects.create(name="bench")
    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    Membership.objects.create(org=org, user=user, role="owner")
    log_dir = WORK / "inspect-logs"
    log_dir.mkdir()
    prepared = []
    for size in sizes:
        started = time.perf_counter()
        trajectory = build_trajectory(size)
        run = None if args.skip_jetty else store_jetty(trajectory, org)
        stored = time.perf_counter()
        log, inspect_events = (None, 0) if args.skip_inspect else write_inspect_log(trajectory, log_dir)
        print(
            f"{size}: {trajectory.size} Jetty events ({stored - started:.1f} s), "
            f"{inspect_events} Inspect events ({time.perf_counter() - stored:.1f} s"
            f"{f', {log.stat().st_size / 2**20:.1f} MB' if log else ''})",
            flush=True,
        )
        prepared.append((size, trajectory, run, log, inspect_events))

    env = dict(os.environ)
    jetty = None if args.skip_jetty else servers.start_daphne(env, WORK / "daphne.log")
    viewer = None if args.skip_inspect else start_inspect_view(log_dir, WORK / "inspect-view.log")
    results = []
    blank: dict[str, int] = {}
    try:
        with sync_playwright() as playwright:
            blank = blank_page_memory(playwright)
            print(f"blank page: {json.dumps(blank)}", flush=True)
            state = jetty_login(playwright, jetty.url) if jetty else None
            # One untimed visit each first: a server's first page pays for imports and template compiling once.
            size, trajectory, run, log, _ = prepared[0]
            if jetty and run:
                measure(playwright, f"{jetty.url}/runs/{run.public_id}/", JETTY_FIRST, None, args.timeout, state, None)
            if viewer and log:
                url = f"{viewer.url}/#/logs/{log.name}/samples/sample/trajectory/1/transcript"
                measure(playwright, url, INSPECT_FIRST, None, args.timeout, None, None)
            for size, trajectory, run, log, inspect_events in prepared:
                row: dict[str, Any] = {
                    "size": size,
                    "events": trajectory.size,
                    "inspect_events": inspect_events,
                    "needle": trajectory.needle,
                    "needle_seq": 2 + 5 * trajectory.needle_turn + 2,
                    "jetty_payload_bytes": trajectory.payload_bytes,
                }
                if jetty and run:
                    url = f"{jetty.url}/runs/{run.public_id}/"
                    search = jetty_search(trajectory.needle)
                    tries = [
                        measure(playwright, url, JETTY_FIRST, search, args.timeout, state, shot(f"jetty-{size}-{n}"))
                        for n in range(args.repeat)
                    ]
                    row["jetty"] = summarise(tries) | {"url": url}
                    print(f"{size} jetty: {json.dumps({k: v for k, v in row['jetty'].items() if k != 'tries'})}")
                else:
                    row["jetty"] = summarise([])
                if viewer and log:
                    url = f"{viewer.url}/#/logs/{log.name}/samples/sample/trajectory/1/transcript"
                    search = inspect_search(trajectory.needle)
                    tries = [
                        measure(playwright, url, INSPECT_FIRST, search, args.timeout, None, shot(f"inspect-{size}-{n}"))
                        for n in range(args.inspect_repeat)
                    ]
                    row["inspect"] = summarise(tries) | {"url": url, "log_bytes": log.stat().st_size}
                    print(f"{size} inspect: {json.dumps({k: v for k, v in row['inspect'].items() if k != 'tries'})}")
                else:
                    row["inspect"] = summarise([])
                results.append(row)
    finally:
        for server in (jetty, viewer):
            if server:
                server.stop()
    import inspect_ai

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "measured": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "inspect_ai": inspect_ai.__version__,
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "inspect_repeat": args.inspect_repeat,
        "timeout_s": args.timeout,
        "blank_page": blank,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    report = table(results)
    loads = [t["loadavg"] for r in results for side in ("jetty", "inspect") for t in r[side].get("tries", [])]
    if blank and loads:
        report += (
            f"\n\nChromium with one blank page: JS heap {mb(blank['js_heap'])} MB, RSS {mb(blank['rss'])} MB "
            f"(PSS {mb(blank['pss'])} MB). Load average when each measurement began: {min(loads):.1f}-{max(loads):.1f}."
        )
    out.with_suffix(".md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
