"""How agent runs execute: the job behind each agent run, and the short-lived tokens sandboxes talk back with."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from orgs import crypto
from orgs.models import Collection, Org, hash_token
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
    limits = models.JSONField(default=dict, blank=True, help_text="Sandbox limits the run asked for (runs/limits.py)")
    webhook_url = models.URLField(blank=True, max_length=2000)
    webhook_secret_encrypted = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the run was sent to the workers (held until its org has a free slot)"
    )
    cancel_requested = models.BooleanField(default=False)
    stop_reason = models.TextField(blank=True, help_text="Why the platform stopped the run (a replay that drifted)")
    model_calls = models.PositiveIntegerField(
        default=0, help_text="Model calls the run has made so far (its budget; a replay's position)"
    )
    final_answer = models.TextField(blank=True)
    validation = models.JSONField(null=True, blank=True)
    contract_mode = models.CharField(
        max_length=10, default="enforce", help_text="enforce: a broken contract fails the run; report: only reported"
    )
    env = models.JSONField(default=dict, blank=True, help_text="Plain environment variables for the sandbox")
    secrets_encrypted = models.TextField(
        blank=True, help_text="Secret environment variables (encrypted JSON), wiped when the run ends"
    )
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

    @property
    def secrets(self) -> dict[str, str]:
        return json.loads(crypto.decrypt(self.secrets_encrypted)) if self.secrets_encrypted else {}

    @staticmethod
    def seal(secrets: dict[str, str]) -> str:
        return crypto.encrypt(json.dumps(secrets)) if secrets else ""


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


class TaskKind(models.TextChoices):
    RUNBOOK = "runbook", "Runbook"
    WORKFLOW = "workflow", "Workflow"


class TaskQuerySet(models.QuerySet["Task"]):
    def for_principal(self, principal) -> TaskQuerySet:
        """The tasks a caller may see: its org's, and only its collection's for a collection-scoped token."""
        tasks = self.filter(collection__org=principal.org)
        if principal.collection is not None:
            tasks = tasks.filter(collection=principal.collection)
        return tasks


class Task(models.Model):
    """A named, versioned runbook or workflow in a collection. Every push makes a new version."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="tasks")
    name = models.SlugField(max_length=100)
    kind = models.CharField(max_length=10, choices=TaskKind.choices)
    description = models.TextField(blank=True)
    latest_version = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "name"], name="task_name_per_collection")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.collection.name}/{self.name}"

    def version(self, number: int | None = None) -> TaskVersion:
        return self.versions.get(number=number or self.latest_version)


class TaskVersion(models.Model):
    """One stored version of a task: the runbook markdown or the workflow definition, plus its folder's files."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    runbook = models.TextField(blank=True)
    workflow = models.JSONField(null=True, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="Other text files of the folder, by relative path")
    validation = models.JSONField(default=dict, blank=True, help_text="The validator's report at save time")
    message = models.CharField(max_length=500, blank=True)
    token_prefix = models.CharField(max_length=16, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="one_task_version_number")]
        ordering = ["task", "number"]

    def __str__(self) -> str:
        return f"{self.task} v{self.number}"

    @property
    def source(self) -> str:
        """The version as text: the runbook, or the workflow as indented JSON (what diffs compare)."""
        if self.workflow is not None:
            return json.dumps(self.workflow, indent=2, sort_keys=True) + "\n"
        return self.runbook


class Workflow(models.Model):
    """A workflow run's definition and where it is: the checkpoint a resumed worker continues from."""

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="workflow")
    definition = models.JSONField()
    cursor = models.PositiveIntegerField(default=0, help_text="Index of the next step to run")
    moves = models.PositiveIntegerField(default=0, help_text="Steps started, jumps included (bounds runaway loops)")

    def __str__(self) -> str:
        return f"workflow of {self.run}"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting for child runs"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"

    @classmethod
    def final(cls) -> frozenset[str]:
        return frozenset({cls.SUCCEEDED, cls.FAILED})


class StepRun(models.Model):
    """One execution of one workflow step (a step inside a loop runs once per pass): its checkpoint."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=100)
    index = models.PositiveIntegerField()
    visit = models.PositiveIntegerField(default=1, help_text="Which pass over this step (loops pass again)")
    step_type = models.CharField(max_length=50)
    status = models.CharField(max_length=10, choices=StepStatus.choices, default=StepStatus.RUNNING)
    inputs = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    state = models.JSONField(default=dict, blank=True, help_text="What a step keeps between attempts (child runs)")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "name", "visit"], name="one_step_run_per_visit")]
        ordering = ["workflow", "started", "id"]

    def __str__(self) -> str:
        return f"{self.name} #{self.visit} ({self.status})"


class Cadence(models.TextChoices):
    HOURLY = "hourly", "Every hour"
    DAILY = "daily", "Every day"
    WEEKDAYS = "weekdays", "Monday to Friday"
    WEEKLY = "weekly", "Every week"


class Routine(models.Model):
    """A schedule that runs a stored task (UTC), fired by Celery beat."""

    public_id = models.CharField(max_length=32, unique=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="routines")
    cadence = models.CharField(max_length=10, choices=Cadence.choices)
    minute = models.PositiveSmallIntegerField(default=0)
    hour = models.PositiveSmallIntegerField(default=0, help_text="Ignored for hourly")
    weekday = models.PositiveSmallIntegerField(default=0, help_text="0 is Monday; weekly only")
    init_params = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(db_index=True)
    last_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    token_prefix = models.CharField(max_length=16, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.task} {self.cadence}"
