"""Uploads and artifacts through django-storages on a real S3-compatible server (moto's) on loopback."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import boto3
import pytest
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile

from orgs.models import ApiToken, Org
from runs.execution import collect
from runs.models import Job, Upload
from tests.support import servers
from trajectories.models import Run

BUCKET = "jetty-test"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    port = servers.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    moto = Path(sys.executable).parent / "moto_server"
    proc = servers.spawn([str(moto), "-H", "127.0.0.1", "-p", str(port)], {"PATH": "/usr/bin:/bin"}, log)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    servers.wait_until(lambda: urllib.request.urlopen(url, timeout=1).status == 200, 30, "moto", proc, log)
    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    yield url
    servers.Process(proc, log).stop()


@pytest.fixture
def s3(settings, s3_endpoint):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "file_overwrite": False,
            },
        },
    }
    assert type(storages["default"]).__name__ == "S3Storage"
    return boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )


def test_uploads_land_in_the_bucket_and_download_back(client, db, s3):
    org = Org.objects.create(name="acme")
    token = ApiToken.generate(org)[1]
    response = client.post(
        "/api/v1/sandbox/upload",
        {"files": [SimpleUploadedFile("data.csv", b"a,b\n")]},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201
    upload = Upload.objects.get()
    stored = s3.get_object(Bucket=BUCKET, Key=upload.file.name)["Body"].read()
    assert stored == b"a,b\n"
    download = client.get(f"/api/v1/file/{upload.key}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert b"".join(download.streaming_content) == b"a,b\n"


def test_artifacts_are_collected_into_the_bucket(db, s3, tmp_path):
    org = Org.objects.create(name="acme")
    run = Run.objects.create(org=org, task="t", kind="agent")
    job = Job.objects.create(run=run, org=org, runbook="x")
    results = tmp_path / "results"  # tmp_path stands for the sandbox's workspace, /app
    (results / "nested").mkdir(parents=True)
    (results / "nested" / "out.json").write_text('{"ok": true}')
    (results / "summary.md").write_text("# Done\n")
    (results / "escape").symlink_to("/etc/passwd")
    collect(run, job, tmp_path, None)
    artifacts = {a.path: a for a in run.artifacts.all()}
    assert set(artifacts) == {"nested/out.json", "summary.md"}  # symlinks are never followed
    body = s3.get_object(Bucket=BUCKET, Key=artifacts["nested/out.json"].file.name)["Body"].read()
    assert body == b'{"ok": true}' and artifacts["nested/out.json"].sha256 == hashlib.sha256(body).hexdigest()
    job.refresh_from_db()
    assert job.final_answer == "# Done\n"
