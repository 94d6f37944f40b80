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
from tests.support.servers import RECEIVER_HOST, free_port
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

    server = ThreadingHTTPServer((RECEIVER_HOST, free_port(RECEIVER_HOST)), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{RECEIVER_HOST}:{server.server_port}", received
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
    run_id = json.loads(
        start(alice_client, f"http://{RECEIVER_HOST}:{free_port(RECEIVER_HOST)}/gone").http_response.text
    )["id"]
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
        start(alice_client, f"http://{RECEIVER_HOST}:9/x", secret=None)
    assert caught.value.body["param"] == "jetty.webhook_secret"


# Lost messages: the sweeper finds deliveries whose next attempt is long overdue and sends them again. No worker:
# Celery runs eagerly in this process, so a re-sent delivery (and any retry it schedules) happens at once.


@pytest.fixture
def eager(settings):
    from jetty_site.celery import app

    settings.JETTY_WEBHOOK_RESEND_S, settings.JETTY_WEBHOOK_BACKOFF_S, settings.JETTY_WEBHOOK_MAX_ATTEMPTS = 60, 5, 3
    before, app.conf.task_always_eager = app.conf.task_always_eager, True
    yield
    app.conf.task_always_eager = before


def finished_with_webhook(org, url: str, *, minutes_ago: float) -> Run:
    from orgs import crypto
    from runs.models import Job
    from tests.factories import make_run

    run = make_run(org, created=time.time() - minutes_ago * 60)
    Job.objects.create(run=run, org=org, runbook="x", webhook_url=url, webhook_secret_encrypted=crypto.encrypt(SECRET))
    return run


def attempted(run: Run, attempt: int, *, minutes_ago: float, delivered: bool = False) -> None:
    from datetime import timedelta

    from django.utils import timezone

    WebhookDelivery.objects.create(
        run=run, url="http://x", attempt=attempt, delivered=delivered, error="" if delivered else "500"
    )
    WebhookDelivery.objects.filter(run=run, attempt=attempt).update(
        created=timezone.now() - timedelta(minutes=minutes_ago)
    )


def history(run: Run) -> list[tuple[int, bool]]:
    return list(WebhookDelivery.objects.filter(run=run).order_by("attempt").values_list("attempt", "delivered"))


def test_a_first_delivery_lost_with_the_broker_is_sent_by_the_sweeper_once(alice, receiver, eager):
    from runs.tasks import sweep_webhooks

    url, received = receiver
    run = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=5)
    assert sweep_webhooks() == 1
    assert [r["headers"]["x-jetty-run-id"] for r in received] == [run.public_id]
    assert history(run) == [(1, True)]
    assert sweep_webhooks() == 0 and len(received) == 1  # delivered: never again


def test_a_lost_retry_is_sent_with_the_next_attempt_number(alice, receiver, eager):
    from runs.tasks import sweep_webhooks

    url, received = receiver
    run = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=30)
    attempted(run, 1, minutes_ago=20)  # failed, and its retry's message went with Redis
    assert sweep_webhooks() == 1
    assert history(run) == [(1, False), (2, True)] and len(received) == 1


def test_the_sweeper_leaves_deliveries_that_are_not_yet_late(alice, receiver, eager):
    from runs.tasks import sweep_webhooks

    url, received = receiver
    just_finished = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=0.5)
    retry_pending = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=10)
    attempted(retry_pending, 1, minutes_ago=0.5)  # its retry is due in 5 s, plus the margin
    assert sweep_webhooks() == 0 and received == []
    assert history(just_finished) == [] and history(retry_pending) == [(1, False)]


def test_the_sweeper_leaves_delivered_and_exhausted_webhooks_alone(alice, receiver, eager):
    from runs.tasks import sweep_webhooks

    url, received = receiver
    delivered = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=60)
    attempted(delivered, 1, minutes_ago=50)
    attempted(delivered, 2, minutes_ago=40, delivered=True)
    exhausted = finished_with_webhook(alice.org, f"{url}/hook", minutes_ago=60)
    for attempt in (1, 2, 3):
        attempted(exhausted, attempt, minutes_ago=50 - attempt)
    assert sweep_webhooks() == 0 and received == []


def test_a_duplicate_message_for_an_attempt_sends_nothing(alice, receiver, eager):
    """The sweeper's copy and the original retry both arrive: the second finds the attempt taken."""
    from runs.tasks import deliver_webhook

    url, received = receiver
    run = finished_with_webhook(alice.org, f"{url}/flaky", minutes_ago=5)
    deliver_webhook.apply(args=(run.pk, 1))  # fails (500), and its retry (eager) delivers as attempt 2
    assert history(run) == [(1, False), (2, True)] and len(received) == 2
    deliver_webhook.apply(args=(run.pk, 2))
    deliver_webhook.apply(args=(run.pk, 3))  # a later attempt of a delivered webhook
    assert history(run) == [(1, False), (2, True)] and len(received) == 2
