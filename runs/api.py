"""Run control through the API: cancel, uploads, runbook validation."""

from __future__ import annotations

import mimetypes

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, parser_classes
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from orgs.api_errors import ApiError
from orgs.auth import principal_of
from orgs.serving import untrusted_file_response
from trajectories.api import get_run_for
from trajectories.serializers import RunSerializer

from .actions import cancel_run
from .models import Upload
from .runbooks import validate
from .uploads import store_uploads


@extend_schema(request=None, responses=RunSerializer, operation_id="runs_cancel")
@api_view(["POST"])
def run_cancel(request: Request, public_id: str) -> Response:
    """Cancel a run: a queued run ends at once; a running one when its worker has killed the sandbox."""
    run = cancel_run(get_run_for(request, public_id))
    return Response(RunSerializer(run).data)


def _check_size(request: Request) -> None:
    from django.conf import settings

    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdecimal() and int(declared) > settings.JETTY_MAX_UPLOAD_BYTES + 1024 * 1024:
        raise ApiError(413, f"The upload is larger than {settings.JETTY_MAX_UPLOAD_BYTES} bytes", code="file_too_large")


def _upload_json(upload: Upload) -> dict:
    return {
        "id": upload.public_id,
        "object": "file",
        "bytes": upload.size,
        "created_at": int(upload.created.timestamp()),
        "filename": upload.path,
        "purpose": upload.purpose,
        "file_path": upload.key,
        "sha256": upload.sha256,
    }


@extend_schema(
    request={
        "multipart/form-data": {
            "type": "object",
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }
    },
    responses={201: OpenApiTypes.OBJECT},
    operation_id="sandbox_upload",
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def sandbox_upload(request: Request) -> Response:
    """Upload files (zip archives are unpacked) for runs; pass the returned `file_paths` in `jetty.file_paths`."""
    _check_size(request)
    uploads = store_uploads(principal_of(request).org, request.FILES.getlist("files"))
    return Response({"file_paths": [u.key for u in uploads], "files": [_upload_json(u) for u in uploads]}, status=201)


@extend_schema(
    request={
        "multipart/form-data": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}},
        }
    },
    responses={201: OpenApiTypes.OBJECT},
    operation_id="files_create",
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def files_create(request: Request) -> Response:
    """OpenAI-style file upload: returns a `file-…` id for `jetty.files`."""
    _check_size(request)
    files = request.FILES.getlist("file")
    if len(files) != 1:
        raise ApiError(400, "Send exactly one file in the multipart field `file`", code="missing_files", param="file")
    purpose = str(request.POST.get("purpose") or "assistants")[:50]
    uploads = store_uploads(principal_of(request).org, files, purpose=purpose)
    if len(uploads) != 1:
        raise ApiError(400, "Archives go to /api/v1/sandbox/upload; /api/v1/files takes one file", param="file")
    return Response(_upload_json(uploads[0]), status=201)


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY}, operation_id="file_download")
@api_view(["GET"])
def file_download(request: Request, key: str) -> FileResponse:
    upload = Upload.objects.filter(org=principal_of(request).org, key=key).first()
    if upload is None:
        raise Http404
    filename = upload.path.rsplit("/", 1)[-1]
    return untrusted_file_response(
        upload.file.open("rb"), filename=filename, content_type=mimetypes.guess_type(filename)[0]
    )


@extend_schema(
    request={"application/json": {"type": "object", "properties": {"runbook": {"type": "string"}}}},
    responses={200: OpenApiTypes.OBJECT},
    operation_id="runbooks_validate",
)
@api_view(["POST"])
def runbook_validate(request: Request) -> Response:
    """Check a runbook: its errors (it cannot work as written) and warnings, each with its line."""
    principal_of(request)
    text = request.data.get("runbook") if hasattr(request.data, "get") else None
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "`runbook` is required: the runbook's markdown as a string", param="runbook")
    return Response(validate(text).as_dict())


def _replay_fields(request: Request) -> dict:
    from orgs.api_errors import json_object

    data = json_object(request) if request.data else {}
    fields: dict = {}
    for name in ("model", "runbook"):
        value = data.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ApiError(400, f"`{name}` must be a non-empty string", code="invalid_value", param=name)
            fields[name] = value.strip() if name == "model" else value
    return fields


def _started(run) -> Response:
    from .results import run_summary

    return Response({"object": "jetty.run", **run_summary(run)}, status=202)


@extend_schema(request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT}, operation_id="runs_replay")
@api_view(["POST"])
def run_replay(request: Request, public_id: str) -> Response:
    """Run a finished agent run again in a fresh sandbox, its model calls answered from the recording. Optional
    `runbook` replaces the mission (the replay stops where the agent's requests part from the recording)."""
    from .replay import start_replay

    source = get_run_for(request, public_id)
    fields = _replay_fields(request)
    fields.pop("model", None)
    return _started(start_replay(principal_of(request), source, **fields))


@extend_schema(request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT}, operation_id="runs_fork")
@api_view(["POST"])
def run_fork(request: Request, public_id: str) -> Response:
    """Fork a finished agent run: replay its first `at` model calls, then go on live with `model` (default: the
    run's own), and optionally another `runbook`."""
    from orgs.api_errors import json_object

    from .replay import start_replay

    source = get_run_for(request, public_id)
    data = json_object(request) if request.data else {}
    at = data.get("at")
    if type(at) is not int:
        raise ApiError(
            400, "`at` (how many model calls to replay) must be an integer", code="invalid_value", param="at"
        )
    fields = _replay_fields(request)
    model = fields.get("model")
    if model is not None:
        from orgs.models import Org

        org: Org = principal_of(request).org
        if not org.may_use_model(model):
            raise ApiError(404, f"The model `{model}` is not enabled for this organisation", code="model_not_found")
    return _started(start_replay(principal_of(request), source, at=at, **fields))
