"""Retention: `prune_runs` deletes old finished runs with their rows and files, the uploads only they used and the
blobs nothing references any more; it keeps what people reviewed, what is not finished, and everything newer."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from orgs.models import AuditEvent, Org
from runs import retention
from runs.models import Job, Upload
from runs.tasks import prune_old_runs
from tests.factories import make_run
from tests.test_s3_storage import s3, s3_endpoint  # noqa: F401  (fixtures)
from trajectories.actions import blob_name, store_blob
from trajectories.models import Artifact, Event, Label, Run

DAY = 24 * 3600


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_runs", *args, stdout=out)
    return out.getvalue()


@dataclass
class World:
    org: Org
    pruned: Run
    judged: Run
    labelled: Run
    recent: Run
    queued: Run
    only_old_upload: Upload
    shared_upload: Upload
    unused_upload: Upload
    artifact_name: str
    shared_blob: str
    old_blob: str
    orphan_blob: str


def upload(org: Org, name: str, data: bytes, *, days_old: int) -> Upload:
    made = Upload(
        org=org, public_id=f"file-{org.public_id}-{name}", key=f"uploads/batch1/{name}", path=name, size=len(data)
    )
    made.file.save(f"{org.public_id}/batch1/{name}", ContentFile(data), save=False)
    made.save()
    Upload.objects.filter(pk=made.pk).update(created=timezone.now() - timedelta(days=days_old))
    return made


def agent_run(org: Org, *, days_old: int, status: str = "succeeded", files: list[str] = (), blobs: list[str] = ()):
    run = make_run(org, status=status, created=time.time() - days_old * DAY)
    Job.objects.create(run=run, org=org, runbook="x", file_paths=list(files))
    for seq, digest in enumerate(blobs, start=run.events.count() + 1):
        Event.objects.create(run=run, seq=seq, kind="file.change", payload={"path": "/app/f", "sha256": digest})
    return run


def build(org: Org) -> World:
    only_old = upload(org, "old.txt", b"only the old run", days_old=100)
    shared = upload(org, "shared.txt", b"both runs", days_old=100)
    unused = upload(org, "unused.txt", b"nobody yet", days_old=100)
    shared_blob, old_blob, orphan_blob = (store_blob(data, org.pk) for data in (b"shared", b"old only", b"orphan"))
    pruned = agent_run(org, days_old=100, files=[only_old.key, shared.key], blobs=[shared_blob, old_blob])
    artifact = Artifact(run=pruned, path="out.txt", size=6, sha256="0" * 64)
    artifact.file.save(f"{pruned.public_id}/out.txt", ContentFile(b"result"), save=True)
    judged = agent_run(org, days_old=100, status="failed")
    Label.objects.create(run=judged, key="eval.pass", value=False, source="judge", author="judge:m")
    labelled = agent_run(org, days_old=100, status="failed")
    Label.objects.create(run=labelled, key="eval.pass", value=True, source="human", author="ann")
    recent = agent_run(org, days_old=10, files=[shared.key], blobs=[shared_blob])
    queued = make_run(org, status="queued", created=time.time() - 100 * DAY)
    return World(
        org, pruned, judged, labelled, recent, queued, only_old, shared, unused, artifact.file.name,
        shared_blob, old_blob, orphan_blob,
    )  # fmt: skip


def exists(pk: int) -> bool:
    return Run.objects.filter(pk=pk).exists()


@pytest.fixture
def local_storage(settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(retention, "BLOB_GRACE", timedelta(0))  # blobs written by the test count as old


def test_prune_runs_deletes_old_finished_runs_with_their_files_and_keeps_the_rest(db, local_storage):
    world = build(Org.objects.create(name="acme"))
    out = prune("--older-than", "30")
    # The pruned and the judged run go; the labelled one, the recent one and the queued one stay.
    assert "deleted: runs 2, events 8, files 4 (artifacts 1, uploads 1, blobs 2)" in out
    assert "kept 1 old run(s)" in out
    assert not exists(world.pruned.pk) and not exists(world.judged.pk)
    assert all(exists(r.pk) for r in (world.labelled, world.recent, world.queued))
    assert not Event.objects.filter(run_id=world.pruned.pk).exists()
    assert not default_storage.exists(world.artifact_name)
    assert not Upload.objects.filter(pk=world.only_old_upload.pk).exists()
    assert not default_storage.exists(world.only_old_upload.file.name)
    for kept in (world.shared_upload, world.unused_upload):
        assert Upload.objects.filter(pk=kept.pk).exists() and default_storage.exists(kept.file.name)
    assert not default_storage.exists(blob_name(world.old_blob))
    assert not default_storage.exists(blob_name(world.orphan_blob))
    assert default_storage.exists(blob_name(world.shared_blob))
    audit = AuditEvent.objects.get(org=world.org, action="runs.pruned")
    assert audit.actor == "command prune_runs" and audit.details["runs"] == 2
    assert "deleted: runs 0, events 0, files 0" in prune("--older-than", "30")  # nothing left to do


def test_bytes_count_the_files_deleted(db, local_storage):
    world = build(Org.objects.create(name="acme"))
    sizes = len(b"result") + world.only_old_upload.size + len(b"old only") + len(b"orphan")
    assert f"bytes {sizes};" in prune("--older-than", "30")


def test_a_dry_run_counts_the_same_and_deletes_nothing(db, local_storage):
    world = build(Org.objects.create(name="acme"))
    before = (Run.objects.count(), Event.objects.count(), Upload.objects.count())
    out = prune("--older-than", "30", "--dry-run")
    assert "would delete: runs 2, events 8, files 4 (artifacts 1, uploads 1, blobs 2)" in out
    assert (Run.objects.count(), Event.objects.count(), Upload.objects.count()) == before
    assert default_storage.exists(world.artifact_name) and default_storage.exists(blob_name(world.old_blob))
    assert not AuditEvent.objects.filter(action="runs.pruned").exists()


def test_a_young_blob_is_kept_even_when_nothing_references_it_yet(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    fresh, stale = store_blob(b"a run is writing me", None), store_blob(b"long forgotten", None)
    stale_path = default_storage.path(blob_name(stale))
    os.utime(stale_path, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    assert "blobs 1)" in prune("--older-than", "30")
    assert default_storage.exists(blob_name(fresh)) and not default_storage.exists(blob_name(stale))


def test_org_and_status_narrow_what_is_pruned(db, local_storage):
    acme, globex = build(Org.objects.create(name="acme")), build(Org.objects.create(name="globex"))
    prune("--older-than", "30", "--org", "globex", "--status", "failed")
    assert exists(acme.pruned.pk) and exists(acme.judged.pk)
    assert exists(globex.pruned.pk) and not exists(globex.judged.pk)  # succeeded stays, failed goes
    assert not AuditEvent.objects.filter(org=acme.org, action="runs.pruned").exists()


def test_unfinished_statuses_and_unknown_orgs_are_refused(db):
    with pytest.raises(CommandError):
        prune("--older-than", "30", "--status", "running")
    with pytest.raises(CommandError, match="No org named"):
        prune("--older-than", "30", "--org", "nobody")
    with pytest.raises(CommandError, match="at least 1 day"):
        prune("--older-than", "0")


def test_a_child_run_is_kept_while_its_workflow_waits(db, local_storage):
    org = Org.objects.create(name="acme")
    parent = make_run(org, status="running", created=time.time() - 100 * DAY)
    child = make_run(org, created=time.time() - 100 * DAY)
    Run.objects.filter(pk=child.pk).update(parent=parent)
    prune("--older-than", "30")
    assert exists(child.pk)
    Run.objects.filter(pk=parent.pk).update(status="succeeded")
    prune("--older-than", "30")
    assert not exists(child.pk) and not exists(parent.pk)


def test_the_daily_task_prunes_only_when_retention_is_set(db, local_storage, settings):
    world = build(Org.objects.create(name="acme"))
    settings.JETTY_RETENTION_DAYS = 0
    assert prune_old_runs() == 0 and exists(world.pruned.pk)
    settings.JETTY_RETENTION_DAYS = 120
    assert prune_old_runs() == 0 and exists(world.pruned.pk)
    settings.JETTY_RETENTION_DAYS = 30
    assert prune_old_runs() == 2 and not exists(world.pruned.pk)
    assert AuditEvent.objects.get(action="runs.pruned").actor == "command prune_old_runs"


def test_files_in_s3_are_deleted_with_their_runs(db, s3, monkeypatch):  # noqa: F811
    from tests.test_s3_storage import BUCKET

    monkeypatch.setattr(retention, "BLOB_GRACE", timedelta(0))
    world = build(Org.objects.create(name="acme"))

    def keys() -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}

    assert {world.artifact_name, blob_name(world.old_blob), world.only_old_upload.file.name} <= keys()
    assert "files 4 (artifacts 1, uploads 1, blobs 2)" in prune("--older-than", "30")
    left = keys()
    assert not {world.artifact_name, blob_name(world.old_blob), blob_name(world.orphan_blob)} & left
    assert world.only_old_upload.file.name not in left
    assert {blob_name(world.shared_blob), world.shared_upload.file.name, world.unused_upload.file.name} <= left


def test_an_upload_a_dataset_still_names_is_kept(db, local_storage):
    from evals.models import Dataset, DatasetItem

    world = build(Org.objects.create(name="acme"))
    dataset = Dataset.objects.create(public_id="ds-1", org=world.org, name="cases")
    DatasetItem.objects.create(dataset=dataset, key="one", file_paths=[world.only_old_upload.key])
    assert "uploads 0," in prune("--older-than", "30")
    assert Upload.objects.filter(pk=world.only_old_upload.pk).exists()
    assert default_storage.exists(world.only_old_upload.file.name)
