"""A host secret for the hostile-tree attacks, and the check that none of its bytes reached anything a tenant sees.

The secret is a folder under the repository's ``var/`` readable by root only (the worker's user), holding files
whose names a hostile agent would point a link at: ``summary.md``, ``validation_report.json`` and ``secret.txt``,
each carrying one marker string made for the test. The sandbox user cannot read them; only the worker, following
a link the sandbox planted, could.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.db import models
from django.test import Client

from trajectories.actions import blob_name
from trajectories.models import Run

ROOT = Path(__file__).resolve().parents[2]
APPS = ("orgs", "trajectories", "runs", "evals")


@dataclass
class HostSecret:
    folder: Path
    marker: str

    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


@pytest.fixture(name="host_secret")
def host_secret_fixture() -> Iterator[HostSecret]:
    """Import ``host_secret_fixture`` to use the ``host_secret`` fixture in a test module."""
    marker = f"jetty-host-secret-{uuid.uuid4().hex}"
    folder = ROOT / "var" / f"host-secret-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, mode=0o700)
    folder.chmod(0o700)
    report = {"overall_passed": True, "stages": [{"name": marker, "passed": True}], "note": marker}
    contents = {
        "summary.md": f"# {marker}\n",
        "validation_report.json": json.dumps(report),
        "secret.txt": f"{marker}\n",
    }
    for name, text in contents.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o600)
    secret = HostSecret(folder, marker)
    _forget_blobs(secret)
    yield secret
    _forget_blobs(secret)
    shutil.rmtree(folder, ignore_errors=True)


def _forget_blobs(secret: HostSecret) -> None:
    """Blobs are stored once for everyone: one an earlier (unfixed) run stored must not count against this one."""
    for path in secret.files():
        name = blob_name(hashlib.sha256(path.read_bytes()).hexdigest())
        if default_storage.exists(name):
            default_storage.delete(name)


def _text_columns(model: type[models.Model]) -> list[str]:
    kinds = (models.CharField, models.TextField, models.JSONField)
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, kinds)]


def places_holding(secret: HostSecret, runs: list[Run], tenant) -> list[str]:
    """Every place the marker (or a secret file's content) reached: stored rows, artifacts' and blobs' bytes,
    exports, the run pages, and the API's answers about the runs."""
    from trajectories.exports import dumps, run_to_atif, run_to_jsonl, run_to_otel_spans, run_to_trajectory_json

    found: list[str] = []
    marker = secret.marker
    for config in APPS:
        for model in apps.get_app_config(config).get_models():
            columns = _text_columns(model)
            if columns:
                for row in model.objects.values_list("pk", *columns).iterator():
                    if marker in json.dumps(row[1:], default=str):
                        found.append(f"{model._meta.label} #{row[0]}")
    for path in secret.files():
        if default_storage.exists(blob_name(hashlib.sha256(path.read_bytes()).hexdigest())):
            found.append(f"blob of {path.name}")
    web = Client()
    web.force_login(tenant.owner)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant.token}")
    for run in runs:
        for artifact in run.artifacts.all():
            with artifact.file.open("rb") as handle:
                if marker.encode() in handle.read():
                    found.append(f"{run.public_id} artifact {artifact.path}")
        exports = {
            "jsonl": "\n".join(run_to_jsonl(run)),
            "trajectory": dumps(run_to_trajectory_json(run)),
            "atif": dumps(run_to_atif(run)),
            "otel": "\n".join(span.to_json() for span in run_to_otel_spans(run, include_content=True)),
        }
        found += [f"{run.public_id} {kind} export" for kind, text in exports.items() if marker in text]
        answers = {
            "run page": web.get(f"/runs/{run.public_id}/"),
            "events fragment": web.get(f"/runs/{run.public_id}/events"),
            "run API": api.get(f"/api/v1/runs/{run.public_id}"),
            "events API": api.get(f"/api/v1/runs/{run.public_id}/events"),
            "labels API": api.get(f"/api/v1/runs/{run.public_id}/labels"),
            "artifacts API": api.get(f"/api/v1/runs/{run.public_id}/artifacts"),
            "export API": api.get(f"/api/v1/runs/{run.public_id}/export?format=trajectory&artifacts=inline"),
        }
        for artifact in run.artifacts.all():
            answers[f"artifact {artifact.path}"] = api.get(f"/api/v1/runs/{run.public_id}/artifacts/{artifact.path}")
        for where, response in answers.items():
            assert response.status_code == 200, (where, response.status_code)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if marker.encode() in body:
                found.append(f"{run.public_id} {where}")
    return found
