"""Signed webhook delivery of finished runs: ``hex(HMAC_SHA256(secret, f"{timestamp}.{body}"))``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from django.conf import settings

from trajectories.models import Run

from .models import Job, WebhookDelivery
from .results import run_summary


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def payload(run: Run) -> bytes:
    return json.dumps(
        {"id": run.public_id, "object": "jetty.run", "status": run.status, "jetty": run_summary(run)}
    ).encode()


def deliver(run_id: int, attempt: int) -> bool:
    """Make one delivery attempt and record it. True once the receiver answered 2xx."""
    run = Run.objects.select_related("job", "collection").prefetch_related("artifacts").get(pk=run_id)
    job: Job = run.job
    body = payload(run)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "jetty-webhooks/1",
        "X-Jetty-Run-Id": run.public_id,
        "X-Jetty-Timestamp": str(timestamp),
        "X-Jetty-Signature": sign(job.webhook_secret, timestamp, body),
    }
    started = time.monotonic()
    status, error = None, ""
    try:
        response = httpx.post(
            job.webhook_url,
            content=body,
            headers=headers,
            timeout=settings.JETTY_WEBHOOK_TIMEOUT_S,
            follow_redirects=False,
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"the receiver answered {status}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    WebhookDelivery.objects.update_or_create(
        run=run,
        attempt=attempt,
        defaults={
            "url": job.webhook_url,
            "status_code": status,
            "error": error[:2000],
            "delivered": not error,
            "duration_ms": int((time.monotonic() - started) * 1000),
        },
    )
    return not error
