"""Webhooks: a real receiver gets the finished run, signed; failures are retried and every attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runs.models import WebhookDelivery
from tests.support.servers import free_port
from tests.test_agent_runs import RUNBOOK, final_run, wait_for
from trajectories.models import Run

SECRET = "whsec-test-1234"


@pytest.fixture
def receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            status = 500 if len(received) == 1 and self.path == "/flaky" else 200
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def start(client, url: str, secret: str | None = SECRET):
    jetty = {"runbook": True, "template_variables": {"name": "wh"}, "webhook_url": url}
    if secret:
        jetty["webhook_secret"] = secret
    return client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
        extra_body={"jetty": jetty},
    )


def test_a_finished_run_is_posted_signed_to_its_webhook(alice_client, worker, receiver):
    url, received = receiver
    raw = start(alice_client, f"{url}/hook")
    assert raw.http_response.status_code == 202
    run_id = json.loads(raw.http_response.text)["id"]
    wait_for(lambda: received, 60, "the webhook")
    delivery = received[0]
    headers, body = delivery["headers"], delivery["body"]
    assert headers["x-jetty-run-id"] == run_id
    expected = hmac.new(SECRET.encode(), f"{headers['x-jetty-timestamp']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(headers["x-jetty-signature"], expected.hexdigest())
    record = json.loads(body)
    assert record["id"] == run_id and record["status"] == "succeeded"
    assert {f["path"] for f in record["jetty"]["results_files"]} >= {"count.txt", "summary.md"}
    assert abs(int(headers["x-jetty-timestamp"]) - time.time()) < 120
    attempt = wait_for(lambda: WebhookDelivery.objects.filter(run__public_id=run_id).first(), 10, "the record")
    assert attempt.delivered and attempt.status_code == 200 and attempt.attempt == 1


def test_a_failed_delivery_is_retried_with_every_attempt_recorded(alice_client, worker, receiver):
    url, received = receiver
    run_id = json.loads(start(alice_client, f"{url}/flaky").http_response.text)["id"]
    wait_for(lambda: len(received) >= 2, 60, "the retry")
    attempts = wait_for(
        lambda: (
            list(WebhookDelivery.objects.filter(run__public_id=run_id, delivered=True))
            and list(WebhookDelivery.objects.filter(run__public_id=run_id))
        ),
        10,
        "records",
    )
    assert [(a.attempt, a.status_code, a.delivered) for a in attempts] == [(1, 500, False), (2, 200, True)]
    assert received[0]["body"] == received[1]["body"]


def test_a_webhook_that_never_answers_fails_recorded_and_the_run_is_kept(alice_client, worker):
    run_id = json.loads(start(alice_client, f"http://127.0.0.1:{free_port()}/gone").http_response.text)["id"]
    assert final_run(run_id).status == "succeeded"
    attempts = wait_for(
        lambda: (
            WebhookDelivery.objects.filter(run__public_id=run_id).count() == 3
            and list(WebhookDelivery.objects.filter(run__public_id=run_id))
        ),
        30,
        "three attempts",
    )
    assert not any(a.delivered for a in attempts) and all(a.error for a in attempts)
    assert Run.objects.get(public_id=run_id).status == "succeeded"


def test_a_webhook_needs_a_secret(alice_client, worker):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        start(alice_client, "http://127.0.0.1:9/x", secret=None)
    assert caught.value.body["param"] == "jetty.webhook_secret"
