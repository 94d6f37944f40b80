"""File steps: read an uploaded file, read a run's result file, save text as a result of the workflow."""

from __future__ import annotations

import hashlib
import mimetypes

from django.core.files.base import ContentFile
from django.db.models.fields.files import FieldFile

from trajectories.actions import stored_file_name
from trajectories.models import Artifact, Run

from ...models import Upload
from ..registry import INTEGER, STRING, Json, Step, StepContext, StepFailed, obj, register

MAX_TEXT_BYTES = 5 * 1024 * 1024
FILE_OUT = obj(
    {"path": STRING, "text": STRING, "size": INTEGER, "sha256": STRING, "content_type": STRING, "truncated": {}},
    ("path", "text", "size"),
)


def read_stored(file: FieldFile, path: str, sha256: str, content_type: str, params: Json) -> Json:
    """A stored file as text (cut at ``max_bytes``, at most 5 MiB), with what is known of it."""
    limit = min(params.get("max_bytes", MAX_TEXT_BYTES), MAX_TEXT_BYTES)
    with file.open("rb") as handle:
        data = handle.read(limit + 1)
    return {
        "path": path,
        "text": data[:limit].decode("utf-8", errors="replace"),
        "size": file.size,
        "sha256": sha256,
        "content_type": content_type,
        "truncated": len(data) > limit,
    }


@register
class ReadUploadedFile(Step):
    type = "read_uploaded_file"
    category = "files"
    description = "Read an uploaded file as text: by `file_path` (a key from /api/v1/sandbox/upload) or `file_id`."
    params = obj({"file_path": STRING, "file_id": STRING, "max_bytes": {"type": "integer", "minimum": 1}})
    outputs = FILE_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        uploads = Upload.objects.filter(org_id=ctx.run.org_id)
        if params.get("file_path"):
            upload = uploads.filter(key=params["file_path"]).first()
        elif params.get("file_id"):
            upload = uploads.filter(public_id=params["file_id"]).first()
        else:
            raise StepFailed("give `file_path` or `file_id`")
        if upload is None:
            raise StepFailed(f"no uploaded file {params.get('file_path') or params.get('file_id')!r}")
        content_type = mimetypes.guess_type(upload.path)[0] or "application/octet-stream"
        return read_stored(upload.file, upload.path, upload.sha256, content_type, params)


@register
class ReadTextFile(Step):
    type = "read_text_file"
    category = "files"
    description = "Read a result file of a run (an earlier step's agent run, say) as text."
    params = obj({"run_id": STRING, "path": STRING, "max_bytes": {"type": "integer", "minimum": 1}}, ("run_id", "path"))
    outputs = FILE_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        run = Run.objects.filter(org_id=ctx.run.org_id, public_id=params["run_id"]).first()
        artifact = run.artifacts.filter(path=params["path"].removeprefix("/app/results/")).first() if run else None
        if artifact is None:
            raise StepFailed(f"run {params['run_id']!r} has no result file {params['path']!r}")
        return read_stored(artifact.file, artifact.path, artifact.sha256, artifact.content_type, params)


@register
class SaveTextFile(Step):
    type = "save_text_file"
    category = "files"
    description = "Save a text as a result file of the workflow run (listed with its artifacts)."
    params = obj({"path": {"type": "string", "minLength": 1, "maxLength": 400}, "text": STRING}, ("path", "text"))
    outputs = obj({"path": STRING, "size": INTEGER, "sha256": STRING, "url": STRING}, ("path", "size", "sha256", "url"))

    def run(self, ctx: StepContext, params: Json) -> Json:
        path = params["path"].removeprefix("/app/results/").strip("/")
        if not path or ".." in path.split("/"):
            raise StepFailed(f"path: {params['path']!r} is not a relative path inside the results")
        data = params["text"].encode()
        # Saving again (a resumed step) replaces the file: one artifact per path.
        Artifact.objects.filter(run=ctx.run, path=path).delete()
        artifact = Artifact(
            run=ctx.run,
            path=path,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=mimetypes.guess_type(path)[0] or "text/plain",
        )
        artifact.file.save(stored_file_name(ctx.run.public_id, path), ContentFile(data), save=False)
        artifact.save()
        ctx.record("file.change", {"path": f"/app/results/{path}", "action": "created", "size": len(data)})
        url = f"/api/v1/runs/{ctx.run.public_id}/artifacts/{path}"
        return {"path": path, "size": len(data), "sha256": artifact.sha256, "url": url}
