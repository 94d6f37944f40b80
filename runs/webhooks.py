"""Signed webhook delivery of finished runs: ``hex(HMAC_SHA256(secret, f"{timestamp}.{body}"))``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from orgs import outbound
from trajectories.models import FINAL_STATUSES, Run

from .models import Job, WebhookDelivery
from .results import run_summary

# What an attempt's row says from the moment it is claimed until the receiver answers (or forever, if the worker
# died in between: the attempt counts as made and failed).
IN_FLIGHT = "attempt started, no answer recorded"
# The sweeper re-sends lost deliveries of runs that finished this recently; later than this a delivery would
# surprise more than help.
RESEND_WITHIN = timedelta(days=7)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def payload(run: Run) -> bytes:
    return json.dumps(
        {"id": run.public_id, "object": "jetty.run", "status": run.status, "jetty": run_summary(run)}
    ).encode()


def deliver(run_id: int, attempt: int) -> bool | None:
    """Make one delivery attempt and record it. True once the receiver answered 2xx, False when it did not, None when
    the attempt was not made: the run was delivered already, or this attempt number was taken (a duplicate message)."""
    run = Run.objects.select_related("job", "collection").prefetch_related("artifacts").get(pk=run_id)
    job: Job = run.job
    if WebhookDelivery.objects.filter(run=run, delivered=True).exists():
        return None
    # The row is the claim: a second message for the same attempt (a retry scheduled before the sweeper re-sent it,
    # a redelivery after a lost worker) finds it and sends nothing.
    try:
        with transaction.atomic():
            record = WebhookDelivery.objects.create(run=run, attempt=attempt, url=job.webhook_url, error=IN_FLIGHT)
    except IntegrityError:
        return None
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
        status = outbound.fetch(
            "POST", job.webhook_url, content=body, headers=headers, timeout=settings.JETTY_WEBHOOK_TIMEOUT_S
        ).status
        if not 200 <= status < 300:
            error = f"the receiver answered {status}"
    except outbound.OutboundForbidden as exc:
        error = exc.message
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    record.status_code, record.error, record.delivered = status, error[:2000], not error
    record.duration_ms = int((time.monotonic() - started) * 1000)
    record.save(update_fields=["status_code", "error", "delivered", "duration_ms"])
    return not error


def overdue(now: datetime) -> list[tuple[int, int]]:
    """(run id, attempt) for each finished run whose webhook is neither delivered nor given up on, and whose next
    attempt is late by more than ``JETTY_WEBHOOK_RESEND_S``: its message was lost (a Redis restart, a worker that
    died before scheduling the retry). Runs that finished more than ``RESEND_WITHIN`` ago are left alone."""
    margin = timedelta(seconds=settings.JETTY_WEBHOOK_RESEND_S)
    candidates = (
        Run.objects.filter(status__in=sorted(FINAL_STATUSES), finished_at__gte=now - RESEND_WITHIN)
        .filter(finished_at__lt=now - margin)
        .filter(job__isnull=False)
        .exclude(job__webhook_url="")
        .exclude(webhook_deliveries__delivered=True)
        .annotate(last_attempt=Max("webhook_deliveries__attempt"))
        .filter(Q(last_attempt__isnull=True) | Q(last_attempt__lt=settings.JETTY_WEBHOOK_MAX_ATTEMPTS))
        .values_list("pk", "last_attempt")
    )
    due: list[tuple[int, int]] = []
    for run_id, last_attempt in candidates:
        if last_attempt is None:
            due.append((run_id, 1))  # the first attempt was due when the run finished
            continue
        last = WebhookDelivery.objects.get(run_id=run_id, attempt=last_attempt)
        retry_at = last.created + timedelta(
            milliseconds=last.duration_ms, seconds=settings.JETTY_WEBHOOK_BACKOFF_S * 2 ** (last_attempt - 1)
        )
        if retry_at < now - margin:
            due.append((run_id, last_attempt + 1))
    return due
