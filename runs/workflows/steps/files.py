"""File steps: read an uploaded file, read a run's result file, save text as a result of the workflow."""

from __future__ import annotations

import hashlib
import mimetypes

from django.core.files.base import ContentFile

from trajectories.models import Artifact, Run

from ...models import Upload
from ..registry import INTEGER, STRING, Json, Step, StepContext, StepFailed, obj, register

MAX_TEXT_BYTES = 5 * 1024 * 1024
FILE_OUT = obj(
    {"path": STRING, "text": STRING, "size": INTEGER, "sha256": STRING, "content_type": STRING, "truncated": {}},
    ("path", "text", "size"),
)


def text_of(data: bytes, limit: int) -> tuple[str, bool]:
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


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
        with upload.file.open("rb") as handle:
            data = handle.read()
        text, truncated = text_of(data, min(params.get("max_bytes", MAX_TEXT_BYTES), MAX_TEXT_BYTES))
        return {
            "path": upload.path,
            "text": text,
            "size": upload.size,
            "sha256": upload.sha256,
            "content_type": mimetypes.guess_type(upload.path)[0] or "application/octet-stream",
            "truncated": truncated,
        }


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
        with artifact.file.open("rb") as handle:
            data = handle.read()
        text, truncated = text_of(data, min(params.get("max_bytes", MAX_TEXT_BYTES), MAX_TEXT_BYTES))
        return {
            "path": artifact.path,
            "text": text,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "content_type": artifact.content_type,
            "truncated": truncated,
        }


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
        artifact.file.save(f"{ctx.run.public_id}/{path}", ContentFile(data), save=False)
        artifact.save()
        ctx.record("file.change", {"path": f"/app/results/{path}", "action": "created", "size": len(data)})
        url = f"/api/v1/runs/{ctx.run.public_id}/artifacts/{path}"
        return {"path": path, "size": len(data), "sha256": artifact.sha256, "url": url}
