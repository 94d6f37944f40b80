"""``/api/v1/runs``: export a run (JSONL, trajectory JSON, OTLP spans), ingest Jetty trajectories, import other formats.

Every read goes through ``get_run_for`` and every write is scoped to the caller's org (and a collection-scoped
token's collection); another org's run is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, content_negotiation_class
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from orgs import outbound
from orgs.api_errors import ApiError, parse_json_body
from orgs.auth import Principal, principal_of
from orgs.models import Collection, Org
from orgs.quotas import check_events, check_ingest_size, check_storage, ingest_slot

from . import offload
from .actions import ImportConflict, record_imported_runs
from .api import get_run_for
from .exports import (
    ExportTooLarge,
    OtlpExportFailed,
    dumps,
    export_run_otlp,
    run_to_atif,
    run_to_jsonl,
    run_to_trajectory_json,
)
from .imports import FORMATS, BadImport, ImportedRun, Report, parse_import, parse_trajectory
from .models import Run
from .serializers import RunSerializer

T = TypeVar("T")


class FormatIsOurs(DefaultContentNegotiation):
    """``?format=`` names what to export or import here, not a DRF renderer: always answer with JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


EXPORT_FORMATS = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "trajectory": ("application/json", "trajectory.json"),
    "atif": ("application/json", "atif.json"),
}


@extend_schema(
    parameters=[
        OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), description="Default: trajectory"),
        OpenApiParameter(
            "artifacts", str, enum=["inline"], description="`inline`: trajectory JSON carries each file's content"
        ),
    ],
    responses={
        (200, "application/json"): OpenApiTypes.OBJECT,
        (200, "application/x-ndjson"): OpenApiTypes.STR,
    },
    operation_id="runs_export",
    description="The run with its events, artifacts and labels, as a download: `jsonl` (one object per line: "
    "the header, each event, each artifact, each label), Jetty's `trajectory` JSON (what `ingest` reads), or a "
    "Harbor `atif` trajectory (messages, model calls, tool calls and results; the rest counted in "
    "`extra.jetty.not_in_atif`).",
)
@api_view(["GET"])
@content_negotiation_class(FormatIsOurs)
def run_export(request: Request, public_id: str) -> HttpResponse:
    run = get_run_for(request, public_id)
    kind = request.query_params.get("format", "trajectory")
    if kind not in EXPORT_FORMATS:
        raise ApiError(
            400, f"`format` must be one of {', '.join(EXPORT_FORMATS)}", param="format", code="invalid_value"
        )
    content_type, suffix = EXPORT_FORMATS[kind]
    disposition = f'attachment; filename="{run.public_id}.{suffix}"'
    if kind == "jsonl":
        response: HttpResponse | StreamingHttpResponse = StreamingHttpResponse(
            run_to_jsonl(run), content_type=content_type
        )
    elif kind == "atif":
        response = HttpResponse(dumps(run_to_atif(run)), content_type=content_type)
    else:
        inline = request.query_params.get("artifacts") == "inline"
        try:
            doc = run_to_trajectory_json(run, inline_artifacts=inline, limit=settings.JETTY_MAX_UPLOAD_BYTES)
        except ExportTooLarge as exc:
            raise ApiError(413, str(exc), param="artifacts", code="export_too_large")
        response = HttpResponse(dumps(doc), content_type=content_type)
    response["Content-Disposition"] = disposition
    return response  # type: ignore[return-value]


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


class OtlpRequest(serializers.Serializer):
    endpoint = serializers.URLField(required=False, help_text="OTLP/HTTP traces URL; default JETTY_OTLP_ENDPOINT")
    headers = serializers.DictField(child=serializers.CharField(), required=False, help_text="Sent to `endpoint`")
    include_content = serializers.BooleanField(
        default=False, help_text="Attach messages, tool arguments and results (opt-in in the GenAI conventions)"
    )


class OtlpResult(serializers.Serializer):
    run = serializers.CharField()
    endpoint = serializers.CharField()
    spans = serializers.IntegerField()
    trace_id = serializers.CharField()


@extend_schema(
    request=OtlpRequest,
    responses={200: OtlpResult, 502: OpenApiResponse(description="The collector refused the spans or was unreachable")},
    operation_id="runs_export_otlp",
)
@api_view(["POST"])
def run_export_otlp(request: Request, public_id: str) -> Response:
    """Send the run as OpenTelemetry GenAI spans to an OTLP/HTTP collector."""
    run = get_run_for(request, public_id)
    body = OtlpRequest(data=request.data)
    body.is_valid(raise_exception=True)
    endpoint = body.validated_data.get("endpoint") or settings.JETTY_OTLP_ENDPOINT
    if not endpoint:
        raise ApiError(400, "Give an `endpoint`: no JETTY_OTLP_ENDPOINT is configured", param="endpoint")
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ApiError(400, "`endpoint` must be an http(s) URL", param="endpoint", code="invalid_value")
    # The configured headers (a collector's credentials) go only to the configured endpoint.
    headers = dict(settings.JETTY_OTLP_HEADERS) if endpoint == settings.JETTY_OTLP_ENDPOINT else {}
    for name, value in (body.validated_data.get("headers") or {}).items():
        if not HEADER_NAME.fullmatch(name) or not HEADER_VALUE.fullmatch(value):
            raise ApiError(400, f"`headers` holds {name!r}, which HTTP cannot carry", param="headers")
        headers[name] = value
    trusted = endpoint == settings.JETTY_OTLP_ENDPOINT
    if not trusted:
        outbound.require_url(endpoint, "endpoint")
    try:
        result = export_run_otlp(
            run, endpoint, headers=headers, include_content=body.validated_data["include_content"], trusted=trusted
        )
    except OtlpExportFailed as exc:
        raise ApiError(502, str(exc), code="otlp_export_failed")
    except outbound.OutboundForbidden as exc:
        raise ApiError(400, f"`endpoint`: {exc.message}", code=outbound.CODE, param="endpoint") from None
    return Response(
        {"run": run.public_id, "endpoint": result.endpoint, "spans": result.spans, "trace_id": result.trace_id}
    )


def _collection(principal: Principal, name: str | None, report: Report, *, asked: bool) -> Collection | None:
    """Where imported runs go: a collection-scoped token's own; else the one named, if the org has it."""
    if principal.collection is not None:
        if name and name != principal.collection.name:
            report.note(f"The runs go to collection {principal.collection.name!r}, the token's, not {name!r}.")
        return principal.collection
    if not name:
        return None
    collection = Collection.objects.filter(org=principal.org, name=name).first()
    if collection is None:
        if asked:
            raise ApiError(404, f"No collection {name!r} in this org", param="collection", code="not_found")
        report.note(f"This org has no collection {name!r}: the run is in no collection.")
    return collection


@dataclass(frozen=True)
class Caller:
    """Who is ingesting, as plain data a helper process can take (``trajectories.offload``)."""

    org_id: int
    collection_id: int | None
    prefix: str

    @classmethod
    def of(cls, principal: Principal) -> Caller:
        collection_id = principal.collection.pk if principal.collection is not None else None
        return cls(principal.org.pk, collection_id, principal.prefix)

    def principal(self) -> Principal:
        collection = Collection.objects.get(pk=self.collection_id) if self.collection_id is not None else None
        return Principal(org=Org.objects.get(pk=self.org_id), token=None, collection=collection, prefix=self.prefix)


def _write(
    principal: Principal, imported: list[ImportedRun], collection: Collection | None, report: Report
) -> list[tuple[Run, bool]]:
    visible = Run.objects.for_principal(principal)
    for attempt in (1, 2):
        try:
            return record_imported_runs(
                imported,
                org=principal.org,
                visible=visible,
                collection_id=collection.pk if collection else None,
                token_prefix=principal.prefix,
                report=report,
            )
        except ImportConflict as exc:
            raise ApiError(409, str(exc), code="conflict")
        except IntegrityError:  # the same runs written at the same moment by another request: read them back
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _within_limits(org_id: int, imported: list[ImportedRun]) -> None:
    """Each run within the events limit, and the org within its storage limit once the files are kept."""
    for item in imported:
        check_events(len(item.record.events))
    check_storage(org_id, sum(len(a.content) for item in imported for a in item.artifacts), param="artifacts")


def _off_the_web_process(principal: Principal, size: int, fn: Callable[..., T], *args: Any) -> T:
    """Small bodies are handled here; big ones in a helper process, at most JETTY_ORG_MAX_CONCURRENT_INGESTS of an
    org's at once, so one org's flood of big ingests neither stalls this process nor fills the helpers."""
    if size <= settings.JETTY_INGEST_OFFLOAD_BYTES:
        return fn(*args)
    with ingest_slot(principal.org.pk):
        return offload.call(fn, *args)


class IngestResult(serializers.Serializer):
    run = RunSerializer()
    created = serializers.BooleanField()
    report = serializers.DictField()


@extend_schema(
    request=OpenApiTypes.OBJECT,
    parameters=[OpenApiParameter("collection", str, description="Put the run in this collection of the org")],
    responses={200: IngestResult, 201: IngestResult},
    operation_id="runs_ingest",
    description="Store a finished run produced elsewhere, given as Jetty's trajectory JSON (`GET /runs/{id}/export`)."
    " Idempotent on the run's `id`: the same trajectory again returns the run already stored, with 200.",
)
@api_view(["POST"])
def run_ingest(request: Request) -> Response:
    principal = principal_of(request)
    body = _body(request)
    caller, asked = Caller.of(principal), request.query_params.get("collection")
    status, data = _off_the_web_process(principal, len(body), ingest_trajectory, caller, body, asked)
    return Response(data, status=status)


def ingest_trajectory(caller: Caller, body: bytes, asked: str | None) -> tuple[int, dict[str, Any]]:
    """Parse and store one trajectory; the status and body of the answer (in a helper process for big ones)."""
    principal = caller.principal()
    doc = parse_json_body(body)
    try:
        item, report = parse_trajectory(doc)
    except BadImport as exc:
        raise ApiError(exc.status, exc.message, param=exc.param, code="invalid_trajectory")
    _within_limits(caller.org_id, [item])
    collection = _collection(principal, asked or item.collection, report, asked=bool(asked))
    [(run, created)] = _write(principal, [item], collection, report)
    return 201 if created else 200, {"run": RunSerializer(run).data, "created": created, "report": report.as_dict()}


def _declared_size(request: Request) -> int:
    """The body's size as the client declared it, refused at once over the limits (nothing has parsed it)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    size = int(declared) if declared.isdecimal() else 0
    check_ingest_size(size)
    if size > settings.JETTY_MAX_UPLOAD_BYTES:
        raise ApiError(
            413, f"The body is larger than {settings.JETTY_MAX_UPLOAD_BYTES} bytes", code="request_too_large"
        )
    return size


def _body(request: Request) -> bytes:
    _declared_size(request)
    try:
        body = bytes(request._request.body)
    except RequestDataTooBig:
        raise ApiError(413, "The request body is too large", code="request_too_large")
    check_ingest_size(len(body))  # a body sent without a Content-Length
    return body


def _upload(request: Request) -> tuple[bytes, str]:
    """The file to import: a multipart ``file``, or the whole body."""
    if request.content_type.startswith("multipart/"):
        _declared_size(request)
        upload = request.FILES.get("file")
        if upload is None:
            raise ApiError(400, "Send the log as the multipart field `file`", param="file", code="missing_file")
        if upload.size > settings.JETTY_MAX_UPLOAD_BYTES:
            raise ApiError(413, f"`file` is larger than {settings.JETTY_MAX_UPLOAD_BYTES} bytes", code="file_too_large")
        check_ingest_size(upload.size or 0, param="file")
        return upload.read(), upload.name or ""
    data = _body(request)
    if not data:
        raise ApiError(400, "Send the log as the body or as the multipart field `file`", param="file")
    return data, ""


class ImportResult(serializers.Serializer):
    data = RunSerializer(many=True)  # type: ignore[assignment]
    created = serializers.ListField(child=serializers.CharField())
    existing = serializers.ListField(child=serializers.CharField())
    report = serializers.DictField()


@extend_schema(
    request={
        "multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}},
        "application/json": OpenApiTypes.OBJECT,
        "application/octet-stream": OpenApiTypes.BINARY,
    },
    parameters=[
        OpenApiParameter("format", str, enum=list(FORMATS), required=True),
        OpenApiParameter("task", str, description="The task of the runs (default: from the log)"),
        OpenApiParameter("collection", str, description="Put the runs in this collection of the org"),
    ],
    responses={200: ImportResult, 201: ImportResult},
    operation_id="runs_import",
    description="Runs from a Harbor ATIF trajectory, an Inspect AI eval log (one run per sample), a Claude Code "
    "session log or a Codex session rollout, with a `report` of what could not be mapped and where it was kept. "
    "Importing the same log again returns the runs already stored (200).",
)
@api_view(["POST"])
@content_negotiation_class(FormatIsOurs)
def run_import(request: Request) -> Response:
    kind = request.query_params.get("format", "")
    if kind not in FORMATS:
        raise ApiError(400, f"`format` must be one of {', '.join(FORMATS)}", param="format", code="invalid_value")
    task = request.query_params.get("task", "")
    if len(task) > 200:
        raise ApiError(400, "`task` is longer than 200 characters", param="task", code="invalid_value")
    data, filename = _upload(request)
    principal = principal_of(request)
    caller, asked = Caller.of(principal), request.query_params.get("collection")
    status, body = _off_the_web_process(principal, len(data), import_runs, caller, kind, data, filename, task, asked)
    return Response(body, status=status)


def import_runs(
    caller: Caller, kind: str, data: bytes, filename: str, task: str, asked: str | None
) -> tuple[int, dict[str, Any]]:
    """Parse a log from elsewhere and store its runs; the status and body of the answer."""
    principal = caller.principal()
    try:
        imported, report = parse_import(kind, data, filename=filename, task=task)
    except BadImport as exc:
        raise ApiError(exc.status, exc.message, param=exc.param, code="invalid_import")
    _within_limits(caller.org_id, imported)
    collection = _collection(principal, asked, report, asked=bool(asked))
    written = _write(principal, imported, collection, report)
    body: dict[str, Any] = {
        "data": RunSerializer([run for run, _ in written], many=True).data,
        "created": [run.public_id for run, created in written if created],
        "existing": [run.public_id for run, created in written if not created],
        "report": report.as_dict(),
    }
    return 201 if body["created"] else 200, body
