"""The gateway's recorder: spool first, batch to the database, replay orphans exactly once."""

from __future__ import annotations

import fcntl
import json
import os
import time

import pytest

from orgs.models import Org, public_code
from runs.gateway.recorder import Recorder, recover_spool
from runs.tasks import recover_gateway_spool
from tests.support import servers
from trajectories.models import Run
from trajectories.schemas import model_call


def record_for(org: Org, **overrides) -> dict:
    now = time.time()
    record = {
        "public_id": public_code("run"),
        "org_id": org.pk,
        "task": "_chat",
        "kind": "chat",
        "status": "succeeded",
        "created": now,
        "started_at": now,
        "finished_at": now + 0.5,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "total_tokens": 1100,
        "cost_usd": None,
        "events": [
            {
                "kind": "model.call",
                "ts": now,
                "payload": model_call("chat", {}, {}, usage={"prompt_tokens": 1000, "completion_tokens": 100}),
                "model": "gpt-4o-mini",
                "provider": "openai",
                "prompt_tokens": 1000,
                "completion_tokens": 100,
                "cost_usd": None,
                "latency_ms": 500,
            }
        ],
    }
    record.update(overrides)
    return record


@pytest.fixture
def org(db):
    return Org.objects.create(name="acme")


def test_submitted_records_reach_the_database_in_one_flush(org, tmp_path):
    recorder = Recorder(tmp_path, flush_s=3600)
    records = [record_for(org) for _ in range(3)]
    for record in records:
        recorder.submit(record)
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    assert recorder.flush() == 3
    assert Run.objects.count() == 3
    assert not list(tmp_path.glob("*"))  # the segment is gone once stored


def test_costs_are_filled_in_off_the_request_path(org, tmp_path):
    recorder = Recorder(tmp_path, flush_s=3600)
    record = record_for(org)
    recorder.submit(record)
    recorder.flush()
    run = Run.objects.get(public_id=record["public_id"])
    assert run.cost_usd > 0
    assert run.events.get().cost_usd == run.cost_usd


def test_orphaned_segments_are_replayed_once(org, tmp_path):
    records = [record_for(org) for _ in range(2)]
    segment = tmp_path / "deadhost-123-abc.jsonl"
    segment.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn": ')
    assert recover_spool(tmp_path) == 2
    assert recover_spool(tmp_path) == 0
    assert Run.objects.count() == 2 and not segment.exists()


def test_a_replay_of_already_stored_runs_stores_nothing_twice(org, tmp_path):
    record = record_for(org)
    recorder = Recorder(tmp_path, flush_s=3600)
    recorder.submit(record)
    recorder.flush()
    (tmp_path / "x.jsonl").write_text(json.dumps(record) + "\n")
    assert recover_spool(tmp_path) == 0
    assert Run.objects.filter(public_id=record["public_id"]).count() == 1
    assert Run.objects.get().events.count() == 1


def test_segments_of_live_processes_are_left_alone(org, tmp_path):
    segment = tmp_path / "live.jsonl"
    segment.write_text(json.dumps(record_for(org)) + "\n")
    fd = os.open(segment, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert recover_spool(tmp_path) == 0
        assert segment.exists()
    finally:
        os.close(fd)
    assert recover_spool(tmp_path) == 1


def test_a_celery_worker_process_recovers_the_spool(alice, process_env, logs):
    """Beat's task, executed by a real worker process over the configured broker."""
    from pathlib import Path

    spool = Path(process_env["JETTY_SPOOL_DIR"])
    record = record_for(alice.org)
    (spool / "crashed-web.jsonl").write_text(json.dumps(record) + "\n")
    worker = servers.start_celery_worker(process_env, logs / "celery-worker.log")
    try:
        recover_gateway_spool.delay()
        servers.wait_until(
            lambda: Run.objects.filter(public_id=record["public_id"]).exists(),
            30,
            "worker recovery",
            worker.proc,
            worker.log,
        )
    finally:
        worker.stop()
    assert "recover_gateway_spool" in worker.log.read_text()
