"""Write functions for trajectories. Each owns its transaction."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import re
import secrets
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from orgs.models import Org
from orgs.redaction import storable

from . import schemas
from .models import Artifact, BlobOwnership, Event, EventKind, Label, LabelChange, Run, RunQuerySet

logger = logging.getLogger(__name__)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _maybe_ts(value: float | None) -> datetime | None:
    return None if value is None else _ts(value)


@dataclass
class EventRecord:
    """An event as produced by whoever observed it; ``ts`` is seconds since the epoch."""

    kind: str
    ts: float
    payload: dict[str, Any] = field(default_factory=dict)
    span: str = ""
    model: str = ""
    provider: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: int | None = None


@dataclass
class RunRecord:
    """A finished run with all its events, written in one go (passthrough calls, ingested runs)."""

    public_id: str
    org_id: int
    task: str
    kind: str
    status: str
    created: float
    events: list[EventRecord]
    collection_id: int | None = None
    model: str = ""
    upstream_model: str = ""
    provider: str = ""
    agent: str = ""
    snapshot: str = ""
    error_kind: str = ""
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    token_prefix: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    error_code: str = ""
    contract: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        events = [EventRecord(**e) for e in data.get("events", [])]
        return cls(**{**data, "events": events})


def admitted(events: list[EventRecord]) -> list[EventRecord]:
    """Events from an untrusted source (an agent's output) as they may be stored: each upgraded to today's shape,
    or kept as a ``log`` naming the problem when it does not fit its kind's schema (``schemas.admit``)."""
    for event in events:
        event.kind, event.payload = schemas.admit(event.kind, event.payload)
    return events


def _checked(events: list[EventRecord], where: str) -> list[EventRecord]:
    """A platform writer's events, each checked against its kind's schema (``schemas.on_append``)."""
    for event in events:
        event.kind, event.payload = schemas.on_append(event.kind, event.payload, where)
    return events


def record_finished_runs(records: list[RunRecord]) -> int:
    """Store finished runs and their events; idempotent on ``public_id``. Returns how many were new."""
    if not records:
        return 0
    unique = {r.public_id: r for r in records}
    for record in unique.values():
        _checked(record.events, f"run {record.public_id}")
    with transaction.atomic():
        existing = set(Run.objects.filter(public_id__in=list(unique)).values_list("public_id", flat=True))
        fresh = [r for r in unique.values() if r.public_id not in existing]
        runs = Run.objects.bulk_create([_run_row(r) for r in fresh])
        events = [
            _event_row(run, seq, e)
            for run, record in zip(runs, fresh, strict=True)
            for seq, e in enumerate(record.events, start=1)
        ]
        Event.objects.bulk_create(events, batch_size=500)
    return len(fresh)


def _run_row(r: RunRecord) -> Run:
    return Run(
        public_id=r.public_id,
        org_id=r.org_id,
        collection_id=r.collection_id,
        task=r.task,
        kind=r.kind,
        status=r.status,
        model=r.model,
        upstream_model=r.upstream_model,
        provider=r.provider,
        agent=r.agent,
        snapshot=r.snapshot,
        error_kind=r.error_kind,
        error=storable(r.error),
        error_code=r.error_code,
        contract=storable(r.contract),
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.total_tokens,
        cost_usd=Decimal(str(r.cost_usd)),
        created=_ts(r.created),
        started_at=_maybe_ts(r.started_at),
        finished_at=_maybe_ts(r.finished_at),
        token_prefix=r.token_prefix,
        metadata=r.metadata,
        last_seq=len(r.events),
    )


def _event_row(run: Run, seq: int, e: EventRecord) -> Event:
    return Event(
        run=run,
        seq=seq,
        kind=e.kind,
        span=e.span,
        ts=_ts(e.ts),
        payload=storable(e.payload),
        model=e.model,
        provider=e.provider,
        prompt_tokens=e.prompt_tokens,
        completion_tokens=e.completion_tokens,
        cost_usd=None if e.cost_usd is None else Decimal(str(e.cost_usd)),
        latency_ms=e.latency_ms,
    )


def append_events(run_id: int, events: list[EventRecord]) -> int:
    """Append events to a run in order, with gap-free sequence numbers. Returns the newest seq. Each must fit its
    kind's schema (``trajectories.schemas``: what happens when one does not is said there).

    A run keeps at most ``JETTY_ORG_MAX_EVENTS_PER_RUN`` of these events: past it they are dropped and counted
    (``Run.events_dropped``), and the first drop leaves one ``log`` event saying so. The run goes on (its state
    changes are always kept): an agent that logs without end loses its log, not its result.
    """
    if not events:
        return Run.objects.filter(pk=run_id).values_list("last_seq", flat=True).get()
    _checked(events, f"run {run_id}")
    with transaction.atomic():
        run = Run.objects.select_for_update().only("id", "last_seq", "events_dropped").get(pk=run_id)
        kept, dropped = _within_event_limit(run, events)
        first = run.last_seq + 1
        Event.objects.bulk_create([_event_row(run, first + i, e) for i, e in enumerate(kept)], batch_size=500)
        run.last_seq = first + len(kept) - 1
        Run.objects.filter(pk=run_id).update(last_seq=run.last_seq, events_dropped=run.events_dropped + dropped)
        if kept:
            notify_run(run_id)
    return run.last_seq


def _within_event_limit(run: Run, events: list[EventRecord]) -> tuple[list[EventRecord], int]:
    """The events the run may still keep (with the marker when it reaches its limit now) and how many are dropped."""
    limit = settings.JETTY_ORG_MAX_EVENTS_PER_RUN
    room = limit - run.last_seq
    if limit <= 0 or len(events) <= room:
        return events, 0
    if run.events_dropped:  # the marker is there already
        return [], len(events)
    kept = events[: max(0, room - 1)]
    marker = EventRecord(
        kind="log",
        ts=events[len(kept)].ts,
        payload={
            "level": "warning",
            "code": "org_events_limit",
            "message": f"this run reached the limit of {limit} events (JETTY_ORG_MAX_EVENTS_PER_RUN): "
            "later events are dropped and counted in the run's events_dropped",
        },
    )
    return [*kept, marker], len(events) - len(kept)


def move_run(
    run_id: int, status: str, *, error_kind: str = "", error: str = "", error_code: str = "", **payload: Any
) -> Run:
    """Move a run through its state machine and record the change as an event, in one transaction."""
    import time

    error = storable(error)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.move_to(status)
        if error:
            run.error_kind, run.error, run.error_code = error_kind, error[:10_000], error_code
        run.save()
        state = {"status": status, **({"error": error} if error else {}), **payload}
        if error_code:
            state["error_code"] = error_code
        kind, state = schemas.on_append(EventKind.RUN_STATE, state, f"run {run.public_id}")
        seq = run.last_seq + 1
        Event.objects.create(run=run, seq=seq, kind=kind, ts=_ts(time.time()), payload=state)
        Run.objects.filter(pk=run_id).update(last_seq=seq)
        run.last_seq = seq
        notify_run(run_id)
    return run


def run_group(run_id: int) -> str:
    """The channel-layer group told when a run changes state (live views, waiting API calls)."""
    return f"run-{run_id}"


def notify_run(run_id: int) -> None:
    """Tell listeners, once committed, that the run moved. Listeners also poll: a lost notice only delays them."""

    def send() -> None:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is not None:
            message = {"type": "run.changed", "run": run_id}
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            try:
                if loop is not None:  # called from async code: schedule the notice on its loop
                    loop.create_task(layer.group_send(run_group(run_id), message))
                    return
                async_to_sync(layer.group_send)(run_group(run_id), message)
            except Exception:  # the channel layer is an optimisation: never fail a write because of it
                logger.warning("could not notify listeners of run %s", run_id, exc_info=True)

    transaction.on_commit(send)


def record_label(
    run: Run,
    key: str,
    value: Any,
    *,
    source: str,
    author: str,
    changed_by: str = "",
    event: Event | None = None,
    **fields: Any,
) -> Label:
    """Set one author's label on a run (or one of its events), keeping the change in its history. Setting the
    same value again changes nothing."""
    with transaction.atomic():
        label = Label.objects.select_for_update().filter(run=run, event=event, key=key, author=author).first()
        previous = label.value if label is not None else None
        if label is not None and previous == value and all(getattr(label, k) == v for k, v in fields.items()):
            return label
        if label is None:
            label = Label(run=run, event=event, key=key, author=author)
        label.value, label.source = value, source
        for name, field_value in fields.items():
            setattr(label, name, field_value)
        label.save()
        if previous != value:
            LabelChange.objects.create(
                label=label, run=run, key=key, author=author, previous=previous, value=value,
                changed_by=changed_by or author,
            )  # fmt: skip
    return label


def remove_label(label: Label, changed_by: str) -> None:
    with transaction.atomic():
        LabelChange.objects.create(
            label=None, run=label.run, key=label.key, author=label.author, previous=label.value, value=None,
            changed_by=changed_by,
        )  # fmt: skip
        label.delete()


def imported_run_id(org_public_id: str, source_id: str) -> str:
    """The id an imported run gets in an org: the same for the same source, so importing again finds it."""
    return "run_" + hashlib.sha256(f"{org_public_id}\x00{source_id}".encode()).hexdigest()[:20]


class ImportConflict(Exception):
    """The run is already in the org, where the caller cannot see it (a collection its token is not scoped to)."""


def record_imported_runs(
    imported: list[Any],
    *,
    org: Org,
    visible: RunQuerySet,
    collection_id: int | None,
    token_prefix: str = "",
    report: Any | None = None,
) -> list[tuple[Run, bool]]:
    """Store runs read from elsewhere (``imports.ImportedRun``) with their events and labels, all or nothing.

    Idempotent on each run's source id: a run already imported into the org (or, for Jetty's own trajectories, the
    very run it was exported from, when the caller can see it) is returned as it is, with ``False``.
    """
    out: list[tuple[Run, bool]] = []
    with transaction.atomic():
        for item in imported:
            derived = imported_run_id(org.public_id, item.source_id)
            existing = visible.filter(public_id__in=[derived, item.source_id]).first()
            if existing is not None:
                out.append((existing, False))
                continue
            if Run.objects.filter(public_id=derived).exists():
                raise ImportConflict(f"run {derived} was imported into a collection this token cannot see")
            record = _without_nul(item.record)
            drop_unheld_blobs(record.events, org, report)
            record.public_id, record.org_id = derived, org.pk
            record.collection_id, record.token_prefix = collection_id, token_prefix
            record_finished_runs([record])
            run = Run.objects.select_related("org", "collection").get(public_id=derived)
            _record_imported_labels(run, [_without_nul(label) for label in item.labels])
            for artifact in item.artifacts:
                row = Artifact(
                    run=run,
                    path=artifact.path,
                    size=len(artifact.content),
                    sha256=hashlib.sha256(artifact.content).hexdigest(),
                    content_type=artifact.content_type
                    or mimetypes.guess_type(artifact.path)[0]
                    or "application/octet-stream",
                )
                row.file.save(stored_file_name(run.public_id, artifact.path), ContentFile(artifact.content), save=False)
                row.save()
            out.append((run, True))
    return out


def _without_nul(value: Any) -> Any:
    """The value with NUL characters replaced: PostgreSQL refuses them in text and JSON, and logs from elsewhere
    (a command's output, say) may hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        for item in fields(value):
            setattr(value, item.name, _without_nul(getattr(value, item.name)))
    return value


def _record_imported_labels(run: Run, labels: list[Any]) -> None:
    if not labels:
        return
    seqs = {label.event_seq for label in labels if label.event_seq is not None}
    events = {e.seq: e for e in run.events.filter(seq__in=seqs)}
    for item in labels:
        label = Label.objects.create(
            run=run,
            event=events.get(item.event_seq) if item.event_seq is not None else None,
            key=item.key,
            value=item.value,
            source=item.source,
            author=item.author,
            criterion=item.criterion,
            rubric=item.rubric,
            judge_model=item.judge_model,
            prompt_version=item.prompt_version,
            raw_output=item.raw_output,
            explanation=item.explanation,
        )
        if item.created is not None or item.updated is not None:  # auto_now fields: kept as they were, after saving
            created = _ts(item.created) if item.created is not None else label.created
            Label.objects.filter(pk=label.pk).update(
                created=created, updated=_ts(item.updated) if item.updated is not None else created
            )
        history = item.history if item.history else [{"previous": None, "value": item.value, "changed_by": "import"}]
        changes = LabelChange.objects.bulk_create(
            LabelChange(
                label=label, run=run, key=item.key, author=item.author, previous=change.get("previous"),
                value=change.get("value"), changed_by=str(change.get("changed_by") or item.author)[:200],
            )
            for change in history
        )  # fmt: skip
        for change, row in zip(history, changes, strict=True):
            if isinstance(change.get("created"), (int, float)):
                LabelChange.objects.filter(pk=row.pk).update(created=_ts(change["created"]))


def stored_file_name(prefix: str, path: str) -> str:
    """The object-storage name of a file a tenant or an agent named: opaque, so no name it chose (``@``, a path of
    600 characters, bytes that are not UTF-8) can fail the storage's own rules; the given path stays on the row."""
    suffix = PurePosixPath(path).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", suffix):
        suffix = ""
    return f"{prefix}/{secrets.token_hex(12)}{suffix}"


def blob_name(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


def store_blob(data: bytes, org_id: int | None) -> str:
    """Keep content once by its SHA-256 in object storage (workspace snapshots) and record that ``org_id`` holds it
    (None: no org may read it back); returns the digest."""
    from django.core.files.storage import default_storage

    digest = hashlib.sha256(data).hexdigest()
    name = blob_name(digest)
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(data))
    if org_id is not None:
        BlobOwnership.objects.get_or_create(org_id=org_id, sha256=digest)
    return digest


def blob_for(run: Run, sha256: str) -> Event | None:
    """The run's file change that recorded this content, if the run's org may read it: the run names the digest and
    its org holds the blob (one of its runs stored it from its own workspace). A digest named only by ingest or by an
    agent's own output line is no proof of holding the content."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return None
    if not BlobOwnership.objects.filter(org_id=run.org_id, sha256=sha256).exists():
        return None
    return run.events.filter(kind=EventKind.FILE_CHANGE, payload__sha256=sha256).first()


BLOB_FIELDS = ("sha256", "previous_sha256")


def drop_unheld_blobs(events: list[EventRecord], org: Org, report: Any | None) -> None:
    """Remove from ingested file changes the blob digests the org does not hold (a trajectory carries no blob
    bytes, so naming a digest would claim content the org never had), listing each in the import's report."""
    named = {e.payload.get(f) for e in events if e.kind == EventKind.FILE_CHANGE for f in BLOB_FIELDS}
    named = {d for d in named if isinstance(d, str)}
    held = set(BlobOwnership.objects.filter(org=org, sha256__in=named).values_list("sha256", flat=True))
    for index, event in enumerate(events):
        if event.kind != EventKind.FILE_CHANGE:
            continue
        for name in BLOB_FIELDS:
            digest = event.payload.get(name)
            if name in event.payload and digest not in held:
                event.payload = {k: v for k, v in event.payload.items() if k != name}
                if report is not None:
                    report.add(
                        f"events[{index}].payload.{name}",
                        f"file content {digest} this org does not hold",
                        "dropped: a trajectory carries no blob content",
                    )
