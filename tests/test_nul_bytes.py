"""NUL characters (``\\u0000``) in what clients send: PostgreSQL's text and jsonb cannot hold them, so every API
write refuses them with a 400 that changes nothing, and the gateway forwards them (a provider may accept them) while
its recording replaces them. (Trajectories ingested from elsewhere keep theirs as U+FFFD:
tests/test_trajectory_io.py.) Against the live server, on the suite's database (PostgreSQL in CI)."""

from __future__ import annotations

import json

import httpx
import pytest

from runs.models import Task
from tests.conftest import wait_for_run
from trajectories.models import Label, Run

NUL = "a\u0000b"


@pytest.fixture
def http(jetty, alice):
    with httpx.Client(base_url=jetty.url, headers={"Authorization": f"Bearer {alice.token}"}, timeout=30) as client:
        yield client


def chat(http, content: str) -> Run:
    response = http.post(
        "/v1/chat/completions", json={"model": "scripted/default", "messages": [{"role": "user", "content": content}]}
    )
    assert response.status_code == 200, response.text
    return wait_for_run(response.headers["x-jetty-run-id"])


def test_api_writes_with_nul_characters_are_400_and_change_nothing(http):
    run = chat(http, "hi")
    writes = [
        ("/api/v1/collections", {"name": NUL}),
        (f"/api/v1/runs/{run.public_id}/labels", {"key": "note", "value": NUL}),
        (f"/api/v1/runs/{run.public_id}/labels", {"key": NUL, "value": 1}),
        ("/api/v1/runbooks/validate", {"runbook": f"---\nversion: 1.0.0\n---\n{NUL}"}),
        ("/api/v1/rubrics", {"name": "r", "criteria": [{"name": NUL}]}),
    ]
    before = (Label.objects.count(), Task.objects.count(), Run.objects.count())
    for path, body in writes:
        response = http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.status_code, response.text[:300])
        error = response.json()["error"]
        assert "NUL" in error["message"] and error["code"] == "invalid_value", (path, error)
    assert (Label.objects.count(), Task.objects.count(), Run.objects.count()) == before


def test_an_agent_run_with_nul_characters_is_400_and_starts_nothing(http):
    body = {
        "model": "scripted/default",
        "messages": [{"role": "system", "content": f"# Objective\n{NUL}"}, {"role": "user", "content": "go"}],
        "jetty": {"runbook": True, "async": True},
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400 and "NUL" in response.json()["error"]["message"]
    assert not Run.objects.filter(kind="agent").exists()


def test_the_gateway_forwards_nul_characters_and_records_them_replaced(http):
    run = chat(http, f"echo {NUL}")
    stored = json.dumps([e.payload for e in run.events.all()])
    assert "a\\ufffdb" in stored and "\\u0000" not in stored
    assert chat(http, "next").status == "succeeded"  # the recorder is not stuck on it
