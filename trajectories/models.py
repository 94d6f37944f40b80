"""What happened: run headers, their ordered event streams, and (later) artifacts and blobs.

This app stores; it knows nothing of how runs execute. ``runs`` writes into it through ``actions``.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from orgs.models import Collection, Org, public_code


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT})
ALLOWED_MOVES: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED}),
    # running -> queued: a stalled run handed back to the queue by the sweeper.
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED, *FINAL_STATUSES}),
}


class IllegalMove(Exception):
    pass


class RunKind(models.TextChoices):
    CHAT = "chat", "Passthrough model call"
    AGENT = "agent", "Agent run"
    WORKFLOW = "workflow", "Workflow"


class ErrorKind(models.TextChoices):
    USER = "user", "User error (timeout, limits, bad input)"
    UPSTREAM = "upstream", "Model provider error"
    PLATFORM = "platform", "Platform fault"


class RunQuerySet(models.QuerySet["Run"]):
    def for_org(self, org: Org) -> RunQuerySet:
        return self.filter(org=org)

    def for_principal(self, principal) -> RunQuerySet:
        """Runs the caller may see: its org's, and only one collection's for a collection-scoped token."""
        runs = self.for_org(principal.org)
        if principal.collection is not None:
            runs = runs.filter(collection=principal.collection)
        return runs


class Run(models.Model):
    public_id = models.CharField(max_length=32, unique=True, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="runs")
    collection = models.ForeignKey(Collection, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    task = models.CharField(max_length=200, db_index=True)
    kind = models.CharField(max_length=10, choices=RunKind.choices, default=RunKind.CHAT)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    model = models.CharField(max_length=200, blank=True, db_index=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    agent = models.CharField(max_length=50, blank=True)
    snapshot = models.CharField(max_length=100, blank=True)
    error_kind = models.CharField(max_length=10, choices=ErrorKind.choices, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(
        max_length=40, blank=True, help_text="What a client can switch on, where the failure has a name"
    )
    contract = models.JSONField(
        null=True, blank=True, help_text="The platform's check of the runbook's contract (runs/contract.py)"
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    created = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    token_prefix = models.CharField(max_length=16, blank=True, help_text="Which API token started the run.")
    metadata = models.JSONField(default=dict, blank=True)
    last_seq = models.PositiveIntegerField(default=0, help_text="Sequence number of the newest event.")
    events_dropped = models.PositiveIntegerField(
        default=0, help_text="Events not kept: the run reached JETTY_ORG_MAX_EVENTS_PER_RUN"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children", help_text="The workflow run"
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["org", "-created"]), models.Index(fields=["org", "task", "-created"])]

    def __str__(self) -> str:
        return self.public_id

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = public_code("run")
        super().save(*args, **kwargs)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def move_to(self, status: str) -> None:
        """Change state, refusing moves the state machine does not allow (final states are final)."""
        if status == self.status:
            return
        if status not in ALLOWED_MOVES.get(self.status, frozenset()):
            raise IllegalMove(f"run {self.public_id}: {self.status} -> {status} is not allowed")
        self.status = status
        now = timezone.now()
        if status == RunStatus.RUNNING and self.started_at is None:
            self.started_at = now
        if status in FINAL_STATUSES:
            self.finished_at = now


class EventKind(models.TextChoices):
    RUN_STATE = "run.state"
    MODEL_CALL = "model.call"
    AGENT_MESSAGE = "agent.message"
    TOOL_CALL = "tool.call"
    TOOL_RESULT = "tool.result"
    COMMAND = "command"
    FILE_CHANGE = "file.change"
    LOG = "log"
    STEP_START = "step.start"
    STEP_END = "step.end"
    JUDGE_VERDICT = "judge.verdict"
    ERROR = "error"
    CONTRACT_CHECK = "contract.check"


class Event(models.Model):
    """One thing that happened in a run. ``seq`` is gap-free per run, starting at 1. Its payload fits its kind's
    schema (``trajectories.schemas``)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    span = models.CharField(max_length=100, blank=True)
    ts = models.DateTimeField(default=timezone.now)
    payload = models.JSONField(default=dict)
    # Model calls carry their accounting in columns, so totals and dashboards need not open payloads.
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="event_seq_unique_per_run")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.kind}"


class BlobOwnership(models.Model):
    """An org holds a blob (``blobs/<aa>/<sha256>``, stored once for all orgs) because one of its runs recorded that
    content from its own workspace. Written only where the platform stores a workspace snapshot, never by ingest or
    an agent's own output: a blob is served to an org's members only with this row (``actions.blob_for``)."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="blobs")
    sha256 = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "sha256"], name="blob_owned_once_per_org")]

    def __str__(self) -> str:
        return f"{self.org_id}:{self.sha256[:12]}"


class Artifact(models.Model):
    """A file the run left in /app/results, kept in object storage."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    path = models.CharField(max_length=500, help_text="Relative to /app/results")
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100, blank=True)
    file = models.FileField(upload_to="artifacts/%Y/%m/%d", max_length=500)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["run", "path"], name="artifact_path_unique_per_run")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.path}"


class LabelSource(models.TextChoices):
    HUMAN = "human", "A reviewer"
    JUDGE = "judge", "An LLM judge"
    SYSTEM = "system", "The platform (the run's validation report)"


class Label(models.Model):
    """A value attached to a run or one of its events (``eval.pass``, ``eval.grade``, ``score.<criterion>``, …)
    by one author: each reviewer, judge model or the platform holds its own label per key. Changes are kept in
    ``LabelChange``."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="labels")
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.CASCADE, related_name="labels")
    key = models.CharField(max_length=200, db_index=True)
    value = models.JSONField()
    source = models.CharField(max_length=10, choices=LabelSource.choices)
    author = models.CharField(max_length=200, help_text="Who holds the label: a username, `judge:<model>`, or `system`")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    criterion = models.CharField(max_length=100, blank=True, help_text="The rubric criterion it scores, if any")
    rubric = models.CharField(max_length=100, blank=True, help_text="The rubric's public id, if any")
    judge_model = models.CharField(max_length=200, blank=True)
    prompt_version = models.CharField(max_length=50, blank=True)
    raw_output = models.TextField(blank=True, help_text="The judge's raw answer")
    explanation = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "key", "author"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "key", "author"], condition=models.Q(event__isnull=True), name="one_run_label_per_author"
            ),
            models.UniqueConstraint(
                fields=["run", "event", "key", "author"],
                condition=models.Q(event__isnull=False),
                name="one_event_label_per_author",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value!r} by {self.author}"


class LabelChange(models.Model):
    """One change of a label: who, when, the previous value and the new one (``None`` when it was removed)."""

    label = models.ForeignKey(Label, null=True, on_delete=models.SET_NULL, related_name="history")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="label_changes")
    key = models.CharField(max_length=200)
    author = models.CharField(max_length=200)
    previous = models.JSONField(null=True, blank=True)
    value = models.JSONField(null=True, blank=True)
    changed_by = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.key}: {self.previous!r} -> {self.value!r}"
