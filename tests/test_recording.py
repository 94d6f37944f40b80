"""Every passthrough call becomes a one-step run with its full record, and none is lost to a killed server."""

from __future__ import annotations

import base64
import json
import signal
import time

import pytest
from django.core.management import call_command

from orgs.models import ApiToken, Collection
from tests.conftest import client, wait_for_run
from tests.support import servers
from trajectories.models import Run


def test_a_call_is_recorded_with_request_response_usage_and_latency(alice_client, upstream):
    raw = alice_client.chat.completions.with_raw_response.create(
        model="openai/fake", messages=[{"role": "user", "content": "record me"}], seed=1
    )
    run = wait_for_run(raw.headers["x-jetty-run-id"])
    assert (run.task, run.kind, run.status, run.provider) == ("_chat", "chat", "succeeded", "openai")
    assert run.model == "openai/fake" and run.upstream_model == "fake"
    assert (run.prompt_tokens, run.completion_tokens, run.total_tokens) == (11, 7, 18)
    assert run.finished_at >= run.started_at
    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.kind for e in events] == ["run.state", "model.call", "run.state"]
    call = events[1]
    assert call.payload["request"]["messages"][0]["content"] == "record me"
    assert call.payload["request"]["seed"] == 1
    assert call.payload["response"]["choices"][0]["message"]["content"] == "echo: record me"
    assert call.payload["finish_reason"] == "stop"
    assert call.payload["usage"]["total_tokens"] == 18
    assert call.latency_ms is not None and call.prompt_tokens == 11
    assert events[2].payload == {"status": "succeeded"}


def test_a_stream_is_recorded_as_the_assembled_completion(alice_client, upstream):
    with alice_client.chat.completions.with_streaming_response.create(
        model="openai/fake-chunks5", messages=[{"role": "user", "content": "s"}], stream=True
    ) as response:
        run_id = response.headers["x-jetty-run-id"]
        list(response.iter_lines())
    call = wait_for_run(run_id).events.get(kind="model.call")
    assert call.payload["response"]["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 tok4 "
    assert call.payload["usage"]["completion_tokens"] == 5  # asked upstream even though the client did not
    assert call.payload["ttfb_ms"] is not None


def test_known_models_are_priced(alice, jetty, upstream):
    raw = client(jetty, alice.token).chat.completions.with_raw_response.create(
        model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "price"}]
    )
    run = wait_for_run(raw.headers["x-jetty-run-id"])
    assert run.cost_usd > 0
    assert run.events.get(kind="model.call").cost_usd == run.cost_usd


def test_large_inline_images_are_redacted_in_the_record(alice_client, upstream):
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 20000).decode()
    raw = alice_client.chat.completions.with_raw_response.create(
        model="openai/fake",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            }
        ],
    )
    call = wait_for_run(raw.headers["x-jetty-run-id"]).events.get(kind="model.call")
    stored = json.dumps(call.payload)
    assert image not in stored
    part = call.payload["request"]["messages"][0]["content"][1]
    assert part["image_url"]["url"].startswith("data:image/png;base64,[redacted ")
    assert call.payload["request"]["messages"][0]["content"][0]["text"] == "what is this"


def test_a_failed_call_is_recorded_as_failed(alice_client, upstream):
    with pytest.raises(Exception):  # noqa: B017 - the client's error class is not the point here
        alice_client.chat.completions.create(model="openai/fake-500", messages=[{"role": "user", "content": "x"}])
    run = Run.objects.none()
    deadline = time.monotonic() + 10
    while not run and time.monotonic() < deadline:
        run = Run.objects.filter(model="openai/fake-500")
        time.sleep(0.05)
    assert run.get().status == "failed" and run.get().error_kind == "upstream"
    assert "failed (500)" in run.get().error


def test_a_collection_scoped_token_files_runs_in_its_collection(alice, jetty):
    tasks = Collection.objects.create(org=alice.org, name="support")
    _, plain = ApiToken.generate(alice.org, name="scoped", collection=tasks)
    raw = client(jetty, plain).chat.completions.with_raw_response.create(
        model="scripted/default", messages=[{"role": "user", "content": "scoped"}]
    )
    assert wait_for_run(raw.headers["x-jetty-run-id"]).collection == tasks


def test_calls_survive_a_killed_server(alice, process_env, logs, tmp_path):
    """SIGKILL daphne before it flushes: the spool keeps every call and recovery stores each exactly once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**process_env, "JETTY_RECORD_FLUSH_S": "3600", "JETTY_SPOOL_DIR": str(spool), "JETTY_GATEWAY_SOCKET": ""}
    server = servers.start_daphne(env, logs / "daphne-killed.log")
    gateway = client(server, alice.token)
    ids = [
        gateway.chat.completions.with_raw_response.create(
            model="scripted/default", messages=[{"role": "user", "content": f"call {i}"}]
        ).headers["x-jetty-run-id"]
        for i in range(5)
    ]
    server.stop(signal.SIGKILL)
    assert not Run.objects.filter(public_id__in=ids).exists()
    assert list(spool.glob("*.jsonl"))

    call_command("recover_spool", spool_dir=str(spool))
    call_command("recover_spool", spool_dir=str(spool))  # idempotent

    runs = Run.objects.filter(public_id__in=ids)
    assert runs.count() == 5
    assert all(r.events.count() == 3 for r in runs)
    assert not list(spool.glob("*.jsonl"))
