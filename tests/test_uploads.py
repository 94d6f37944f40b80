"""Uploads: files and archives in, safely; referenced by runs through `file_paths` and `files`."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orgs.models import ApiToken, Org
from runs.models import Upload
from tests.test_agent_runs import final_run
from trajectories.models import Run


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def acme(db):
    org = Org.objects.create(name="acme")
    return org, ApiToken.generate(org)[1]


def upload(client, token: str, *files: tuple[str, bytes], url: str = "/api/v1/sandbox/upload", field="files"):
    payload = {field: [SimpleUploadedFile(name, data) for name, data in files]}
    return client.post(url, payload, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_files_are_stored_and_listed_by_key(client, acme):
    response = upload(client, acme[1], ("data.csv", b"a,b\n1,2\n"), ("notes.txt", b"hi"))
    assert response.status_code == 201
    body = response.json()
    assert len(body["file_paths"]) == 2 and all(p.startswith("uploads/") for p in body["file_paths"])
    assert {f["filename"] for f in body["files"]} == {"data.csv", "notes.txt"}
    download = client.get(f"/api/v1/file/{body['file_paths'][0]}", HTTP_AUTHORIZATION=f"Bearer {acme[1]}")
    assert b"".join(download.streaming_content) == b"a,b\n1,2\n"


def test_zip_archives_are_unpacked(client, acme):
    archive = zipped({"inputs/a.txt": b"A", "inputs/deep/b.txt": b"B"})
    body = upload(client, acme[1], ("bundle.zip", archive)).json()
    assert sorted(f["filename"] for f in body["files"]) == ["inputs/a.txt", "inputs/deep/b.txt"]


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/passwd", "a/../../b.txt"])
def test_traversal_in_archives_is_refused_and_nothing_stored(client, acme, member):
    response = upload(client, acme[1], ("bad.zip", zipped({"ok.txt": b"x", member: b"pwn"})))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsafe_path"
    assert not Upload.objects.exists()


def test_a_zip_bomb_is_refused(client, acme, settings):
    settings.JETTY_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
    response = upload(client, acme[1], ("bomb.zip", zipped({"zeros.bin": b"\0" * (64 * 1024 * 1024)})))
    assert response.status_code == 413
    assert not Upload.objects.exists()


def test_an_oversized_upload_is_413(client, acme, settings):
    settings.JETTY_MAX_UPLOAD_BYTES = 1024
    response = upload(client, acme[1], ("big.bin", b"x" * 4096))
    assert response.status_code == 413
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_corrupt_archive_is_400(client, acme):
    assert upload(client, acme[1], ("broken.zip", b"PK\x03\x04 not really")).status_code == 400


def test_openai_style_files_get_file_ids(client, acme):
    response = upload(client, acme[1], ("report.pdf", b"%PDF-1.4"), url="/api/v1/files", field="file")
    assert response.status_code == 201
    assert response.json()["id"].startswith("file-") and response.json()["object"] == "file"


def test_other_orgs_files_are_404(client, acme):
    key = upload(client, acme[1], ("secret.txt", b"s")).json()["file_paths"][0]
    other = Org.objects.create(name="globex")
    token = ApiToken.generate(other)[1]
    assert client.get(f"/api/v1/file/{key}", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404


READER = """# Objective
Read the inputs.

```bash
cat /app/assets/data.csv /app/assets/inputs/deep/b.txt > /app/results/seen.txt
```

```bash
(echo tamper > /app/assets/data.csv) 2>/dev/null || echo read-only >> /app/results/seen.txt
```
"""


def test_a_run_sees_its_uploads_read_only_under_app_assets(alice, alice_client, jetty, worker):
    headers = {"Authorization": f"Bearer {alice.token}"}
    files = [("files", ("data.csv", b"a,b\n")), ("files", ("bundle.zip", zipped({"inputs/deep/b.txt": b"B\n"})))]
    keys = httpx.post(f"{jetty.url}/api/v1/sandbox/upload", files=files, headers=headers).json()["file_paths"]
    single = httpx.post(f"{jetty.url}/api/v1/files", files={"file": ("x.txt", b"x")}, headers=headers).json()
    raw = alice_client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": READER}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "file_paths": keys, "files": [single["id"]]}},
    )
    run = final_run(json.loads(raw.http_response.text)["jetty"]["run_id"])
    assert run.status == "succeeded", run.error
    assert run.artifacts.get(path="seen.txt").file.read() == b"a,b\nB\nread-only\n"


def test_unknown_file_paths_are_400_and_start_nothing(alice_client, worker):
    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="scripted/default",
            messages=[{"role": "system", "content": READER}, {"role": "user", "content": "go"}],
            extra_body={"jetty": {"runbook": True, "file_paths": ["uploads/nope/data.csv"]}},
        )
    assert caught.value.body["param"] == "jetty.file_paths"
    assert not Run.objects.exists()
