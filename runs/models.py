"""How agent runs execute: the job behind each agent run, and the short-lived tokens sandboxes talk back with."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from orgs import crypto
from orgs.models import Org, hash_token
from trajectories.models import Run

RUN_TOKEN_PREFIX = "jrt_"


class Job(models.Model):
    """An agent run's request and its execution bookkeeping (attempts, heartbeat, cancellation)."""

    HEARTBEAT_EVERY = timedelta(seconds=2)

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="job")
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="jobs")
    runbook = models.TextField()
    instruction = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    file_paths = models.JSONField(default=list, blank=True)
    network = models.BooleanField(default=True)
    timeout_s = models.PositiveIntegerField(default=1800)
    webhook_url = models.URLField(blank=True, max_length=2000)
    webhook_secret_encrypted = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    final_answer = models.TextField(blank=True)
    validation = models.JSONField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="idempotency_key_unique_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"job of {self.run}"

    @staticmethod
    def stalled_after() -> timedelta:
        """A running job whose heartbeat is older than this has lost its worker."""
        return timedelta(seconds=settings.JETTY_RUN_STALLED_S)

    @property
    def webhook_secret(self) -> str:
        return crypto.decrypt(self.webhook_secret_encrypted) if self.webhook_secret_encrypted else ""


class RunTokenQuerySet(models.QuerySet["RunToken"]):
    def usable(self) -> RunTokenQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class PendingModelCall(models.Model):
    """A sandbox's model call, stored by the gateway before the agent sees the whole answer, waiting for the run's
    worker to place it in the trajectory among the agent's own output by time (calls end, lines are read)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="pending_calls")
    ended = models.FloatField(help_text="When the answer was complete (epoch seconds)")
    event = models.JSONField()

    def __str__(self) -> str:
        return f"pending call of {self.run}"


class RunToken(models.Model):
    """The credential a sandbox uses to reach the gateway: bound to one run, dead when the run ends."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = RunTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"run token of {self.run}"

    @classmethod
    def mint(cls, run: Run, ttl_s: float) -> str:
        plain = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        cls.objects.create(run=run, token_hash=hash_token(plain), expires_at=timezone.now() + timedelta(seconds=ttl_s))
        return plain

    @classmethod
    def revoke_all(cls, run_id: int) -> None:
        cls.objects.filter(run_id=run_id, revoked_at__isnull=True).update(revoked_at=timezone.now())


class WebhookDelivery(models.Model):
    """One attempt to deliver a finished run to its webhook."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.URLField(max_length=2000)
    attempt = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    delivered = models.BooleanField(default=False)
    duration_ms = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "attempt"]
        constraints = [models.UniqueConstraint(fields=["run", "attempt"], name="one_delivery_per_attempt")]

    def __str__(self) -> str:
        return f"webhook of {self.run_id} attempt {self.attempt}"


class Upload(models.Model):
    """A file uploaded for runs: referenced by ``key`` (``file_paths``) or ``public_id`` (``files``)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="uploads")
    public_id = models.CharField(max_length=40, unique=True)
    key = models.CharField(max_length=500, help_text="uploads/<batch>/<path>: what file_paths name")
    path = models.CharField(max_length=400, help_text="Where it lands under /app/assets")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    purpose = models.CharField(max_length=50, default="assistants")
    file = models.FileField(upload_to="uploads/%Y/%m/%d", max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "key"], name="upload_key_unique_per_org")]

    def __str__(self) -> str:
        return self.key
