"""Retention: delete finished runs older than a cutoff, with their rows, their files in object storage, the uploads
only they used, and then the workspace-snapshot blobs no remaining event references.

What is kept even when old: runs that are not final (never touched), runs a person labelled (``source=human``), runs
that are trials of an experiment or items of a label queue (their results are what those pages show), and runs whose
parent workflow still waits for them. Uploads go only when a pruned run named them and nothing left names them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from orgs.audit import Actor, record
from orgs.models import AuditAction, Org
from trajectories.models import (
    FINAL_STATUSES,
    Artifact,
    BlobOwnership,
    Event,
    EventKind,
    LabelSource,
    Run,
    RunQuerySet,
    RunStatus,
)

from .models import Job, Routine, TaskVersion, Upload

logger = logging.getLogger(__name__)

BATCH = 100
# A blob is stored before the event that names it commits (a run in progress): younger ones are never collected.
BLOB_GRACE = timedelta(days=1)


@dataclass
class Report:
    """What a prune deleted (or, in a dry run, would delete)."""

    runs: int = 0
    events: int = 0
    kept: int = 0
    artifacts: int = 0
    uploads: int = 0
    blobs: int = 0
    bytes: int = 0
    failed_files: list[str] = field(default_factory=list)
    by_org: dict[int, int] = field(default_factory=dict)

    @property
    def files(self) -> int:
        return self.artifacts + self.uploads + self.blobs

    def summary(self) -> str:
        return (
            f"runs {self.runs}, events {self.events}, files {self.files} (artifacts {self.artifacts}, uploads "
            f"{self.uploads}, blobs {self.blobs}), bytes {self.bytes}; kept {self.kept} old run(s) people reviewed or "
            f"compared"
        )


def old_runs(cutoff: datetime, org: Org | None = None, statuses: Iterable[str] | None = None) -> RunQuerySet:
    """Final runs created before ``cutoff``, less those whose parent workflow still waits for them."""
    wanted = set(statuses or FINAL_STATUSES)
    if not wanted <= FINAL_STATUSES:
        raise ValueError(f"only finished runs can be pruned, not {sorted(wanted - FINAL_STATUSES)}")
    runs = Run.objects.filter(created__lt=cutoff, status__in=sorted(wanted))
    if org is not None:
        runs = runs.for_org(org)
    return runs.exclude(parent__status__in=[RunStatus.QUEUED, RunStatus.RUNNING])


def reviewed(runs: RunQuerySet) -> RunQuerySet:
    """The runs people labelled, or that experiments and label queues are built on."""
    from evals.models import LabelQueueItem, Trial

    return runs.filter(
        Q(labels__source=LabelSource.HUMAN)
        | Q(pk__in=Trial.objects.filter(run__isnull=False).values("run_id"))
        | Q(pk__in=LabelQueueItem.objects.values("run_id"))
    )


def prune(
    cutoff: datetime,
    *,
    org: Org | None = None,
    statuses: Iterable[str] | None = None,
    dry_run: bool = False,
    actor_name: str = "prune_runs",
) -> Report:
    """Delete old finished runs and their files, then unreferenced blobs. Each batch of runs goes in one transaction;
    files are deleted after their rows (a failure leaves an orphaned file, never a row pointing at nothing)."""
    report = Report()
    candidates = old_runs(cutoff, org, statuses)
    report.kept = reviewed(candidates).distinct().count()
    doomed = candidates.exclude(pk__in=reviewed(candidates).values("pk"))
    named: set[tuple[int, str]] = set()
    last = 0
    while True:
        batch = list(doomed.filter(pk__gt=last).order_by("pk").values_list("pk", "org_id")[:BATCH])
        if not batch:
            break
        last = batch[-1][0]
        ids = [pk for pk, _ in batch]
        for _, org_id in batch:
            report.by_org[org_id] = report.by_org.get(org_id, 0) + 1
        for org_id, paths in Job.objects.filter(run_id__in=ids).values_list("org_id", "file_paths"):
            named.update((org_id, key) for key in paths or [])
        files = list(Artifact.objects.filter(run_id__in=ids).values_list("file", "size"))
        report.runs += len(ids)
        report.events += Event.objects.filter(run_id__in=ids).count()
        report.artifacts += len(files)
        report.bytes += sum(size for _, size in files)
        if dry_run:
            continue
        with transaction.atomic():
            Run.objects.filter(pk__in=ids).delete()
        _delete_files((name for name, _ in files), report)
    # In a dry run the doomed runs are still there: the checks below look past them.
    gone = doomed if dry_run else Run.objects.none()
    _prune_uploads(named, cutoff, gone, dry_run, report)
    _collect_blobs(gone, dry_run, report)
    if not dry_run:
        _audit(report, cutoff, statuses, Actor.command(actor_name))
    return report


def _delete_files(names: Iterable[str], report: Report) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception as exc:  # storage trouble: the file stays orphaned, the prune goes on and says so
            logger.warning("retention could not delete %s: %s", name, exc)
            report.failed_files.append(name)


def _needle(key: str) -> str:
    """What a JSON text naming ``key`` surely contains: the key up to the first character JSON may escape."""
    for index, char in enumerate(key):
        if not (char.isascii() and char.isprintable()) or char in '"\\':
            return key[:index]
    return key


def _named_elsewhere(upload: Upload, gone: RunQuerySet) -> bool:
    """Whether anything left names the upload: a run's job, a dataset item, a workflow version or a routine."""
    from evals.models import DatasetItem

    sources = [
        (Job.objects.filter(org_id=upload.org_id).exclude(run__in=gone), "file_paths"),
        (DatasetItem.objects.filter(dataset__org_id=upload.org_id), "file_paths"),
        (DatasetItem.objects.filter(dataset__org_id=upload.org_id), "inputs"),
        (TaskVersion.objects.filter(task__collection__org_id=upload.org_id, workflow__isnull=False), "workflow"),
        (Routine.objects.filter(task__collection__org_id=upload.org_id), "init_params"),
    ]
    for needle in (_needle(upload.key), upload.public_id):
        for rows, column in sources:
            if rows.annotate(text=Cast(column, TextField())).filter(text__contains=needle).exists():
                return True
    return False


def _prune_uploads(
    named: set[tuple[int, str]], cutoff: datetime, gone: RunQuerySet, dry_run: bool, report: Report
) -> None:
    for org_id, key in sorted(named):
        upload = Upload.objects.filter(org_id=org_id, key=key, created__lt=cutoff).first()
        if upload is None or _named_elsewhere(upload, gone):
            continue
        report.uploads += 1
        report.bytes += upload.size
        if dry_run:
            continue
        name = str(upload.file.name)
        upload.delete()
        _delete_files([name], report)


def _collect_blobs(gone: RunQuerySet, dry_run: bool, report: Report) -> None:
    """Delete ``blobs/<aa>/<sha256>`` that no remaining ``file.change`` event names and that are over a day old."""
    referenced: set[str] = set()
    changes = Event.objects.filter(kind=EventKind.FILE_CHANGE).exclude(run__in=gone)
    for digest, previous in changes.values_list("payload__sha256", "payload__previous_sha256").iterator(2000):
        referenced.update(d for d in (digest, previous) if isinstance(d, str))
    try:
        prefixes, _ = default_storage.listdir("blobs")
    except FileNotFoundError:
        return
    young = timezone.now() - BLOB_GRACE
    for prefix in sorted(prefixes):
        _, digests = default_storage.listdir(f"blobs/{prefix}")
        for digest in sorted(digests):
            name = f"blobs/{prefix}/{digest}"
            if digest in referenced or default_storage.get_modified_time(name) > young:
                continue
            report.blobs += 1
            report.bytes += default_storage.size(name)
            if not dry_run:
                _delete_files([name], report)
                BlobOwnership.objects.filter(sha256=digest).delete()  # stored again, it is held anew


def _audit(report: Report, cutoff: datetime, statuses: Iterable[str] | None, actor: Actor) -> None:
    """One audit row per org that lost runs (blobs are shared by every org and audited by none)."""
    for org in Org.objects.filter(pk__in=list(report.by_org)):
        details = {"runs": report.by_org[org.pk], "older_than": cutoff.isoformat()}
        if statuses:
            details["statuses"] = sorted(statuses)
        record(AuditAction.RUNS_PRUNED, org, actor=actor, org=org, details=details)
