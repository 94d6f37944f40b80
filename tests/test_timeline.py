"""The worker merges an agent's output lines and its model calls (stored by the gateway) by time."""

from __future__ import annotations

import json

import pytest

from runs.agents import JettyAgent
from runs.models import PendingModelCall
from runs.timeline import Timeline, flush_pending_calls
from trajectories.models import Run
from trajectories.schemas import model_call


def call(run: Run, ended: float, tokens: int) -> None:
    event = {
        "kind": "model.call",
        "ts": ended - 0.01,
        "payload": model_call("chat", {}, {"n": tokens}, usage={"prompt_tokens": tokens, "completion_tokens": 1}),
        "model": "scripted/default",
        "provider": "scripted",
        "prompt_tokens": tokens,
        "completion_tokens": 1,
        "latency_ms": 10,
    }
    PendingModelCall.objects.create(run=run, ended=ended, event=event)


def line(text: str) -> str:
    return json.dumps({"type": "message", "content": text})


@pytest.fixture
def run(alice):
    return Run.objects.create(org=alice.org, task="t", kind="agent", status="running", model="scripted/default")


def test_lines_and_calls_are_placed_by_time_even_when_the_worker_reads_late(run, tmp_path):
    call(run, ended=10.0, tokens=3)
    call(run, ended=20.0, tokens=5)
    # The worker gets to these lines only after both calls were stored: it still places them by when they were read.
    timeline = Timeline(run.pk, JettyAgent(), tmp_path)
    for read, text in [(5.0, "before any call"), (15.0, "between the calls"), (25.0, "after both")]:
        timeline.lines.put((read, line(text)))
    timeline.lines.put(None)
    timeline.merge()
    events = list(run.events.order_by("seq"))
    assert [(e.kind, e.payload.get("content") or e.payload.get("response")) for e in events] == [
        ("agent.message", "before any call"),
        ("model.call", {"n": 3}),
        ("agent.message", "between the calls"),
        ("model.call", {"n": 5}),
        ("agent.message", "after both"),
    ]
    run.refresh_from_db()
    assert (run.prompt_tokens, run.completion_tokens, run.total_tokens, run.last_seq) == (8, 2, 10, 5)
    assert not PendingModelCall.objects.exists()


def test_calls_left_when_the_agent_is_gone_are_flushed_at_the_end(run):
    call(run, ended=1.0, tokens=2)
    flush_pending_calls(run.pk)
    assert list(run.events.values_list("kind", flat=True)) == ["model.call"]
    assert Run.objects.get(pk=run.pk).prompt_tokens == 2


def test_changes_seen_in_one_scan_come_in_the_order_they_happened(tmp_path):
    import os

    from runs.agents import WorkspaceWatch

    watch = WorkspaceWatch(tmp_path)
    (tmp_path / "results").mkdir()
    for name, mtime in (("zeta.txt", 100), ("alpha.txt", 200)):
        (tmp_path / "results" / name).write_text(name)
        os.utime(tmp_path / "results" / name, ns=(mtime, mtime))
    changes = watch.changes(1.0)
    assert [(e.payload["path"], e.payload["action"]) for e in changes] == [
        ("/app/results/zeta.txt", "created"),
        ("/app/results/alpha.txt", "created"),
    ]
    (tmp_path / "results" / "zeta.txt").unlink()
    assert [(e.payload["path"], e.payload["action"]) for e in watch.changes(2.0)] == [
        ("/app/results/zeta.txt", "deleted")
    ]
