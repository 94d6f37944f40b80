"""``/api/v1/runs``: list, read and page through recorded runs and their events. Org-scoped throughout."""

from __future__ import annotations

import re

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from orgs.api_errors import ApiError
from orgs.auth import principal_of
from orgs.serving import untrusted_file_response

from .actions import record_label, remove_label
from .models import Label, LabelSource, Run, RunStatus
from .serializers import EventPageSerializer, EventSerializer, RunPageSerializer, RunSerializer

MAX_EVENTS_PAGE = 500


def get_run_for(request: Request, public_id: str) -> Run:
    """The one way API views load a run: scoped to the caller, 404 otherwise."""
    run = (
        Run.objects.for_principal(request.user).select_related("org", "collection").filter(public_id=public_id).first()
    )
    if run is None:
        raise Http404
    return run


class RunCursorPagination(CursorPagination):
    ordering = ("-created", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


RUN_FILTERS = [
    OpenApiParameter("task", str, description="Only runs of this task"),
    OpenApiParameter("model", str, description="Only runs of this model"),
    OpenApiParameter("status", str, enum=list(RunStatus.values)),
    OpenApiParameter("collection", str),
    OpenApiParameter("agent", str),
    OpenApiParameter("kind", str),
    OpenApiParameter("limit", int, description="Page size (max 200)"),
    OpenApiParameter("cursor", str, description="Opaque cursor from `next`/`previous`"),
]


@extend_schema(parameters=RUN_FILTERS, responses=RunPageSerializer, operation_id="runs_list")
@api_view(["GET"])
def run_list(request: Request) -> Response:
    runs = Run.objects.for_principal(request.user).select_related("org", "collection")
    status = request.query_params.get("status")
    if status is not None and status not in RunStatus.values:
        raise ApiError(
            400, f"`status` must be one of {', '.join(RunStatus.values)}", param="status", code="invalid_value"
        )
    for field in ("task", "model", "status", "agent", "kind"):
        value = request.query_params.get(field)
        if value:
            runs = runs.filter(**{field: value})
    if collection := request.query_params.get("collection"):
        runs = runs.filter(collection__name=collection)
    paginator = RunCursorPagination()
    try:
        page = paginator.paginate_queryset(runs, request)
    except Exception as exc:  # DRF raises NotFound for a cursor it cannot decode
        raise ApiError(400, "Invalid `cursor`", param="cursor", code="invalid_value") from exc
    return paginator.get_paginated_response(RunSerializer(page, many=True).data)


@extend_schema(responses=RunSerializer, operation_id="runs_retrieve")
@api_view(["GET"])
def run_detail(request: Request, public_id: str) -> Response:
    return Response(RunSerializer(get_run_for(request, public_id)).data)


class AfterQuery(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=MAX_EVENTS_PAGE, default=100)


@extend_schema(
    parameters=[
        OpenApiParameter("after", OpenApiTypes.INT, description="Return events with seq greater than this"),
        OpenApiParameter("limit", OpenApiTypes.INT, description=f"At most this many (max {MAX_EVENTS_PAGE})"),
    ],
    responses=EventPageSerializer,
    operation_id="runs_events_list",
)
@api_view(["GET"])
def run_events(request: Request, public_id: str) -> Response:
    run = get_run_for(request, public_id)
    query = AfterQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    after, limit = query.validated_data["after"], query.validated_data["limit"]
    events = list(run.events.filter(seq__gt=after).order_by("seq")[: limit + 1])
    page = events[:limit]
    return Response(
        {
            "data": EventSerializer(page, many=True).data,
            "has_more": len(events) > limit,
            "next_after": page[-1].seq if page else after,
        }
    )


class ArtifactSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    content_type = serializers.CharField()
    url = serializers.CharField()


class ArtifactListSerializer(serializers.Serializer):
    data = ArtifactSerializer(many=True)  # type: ignore[assignment]


@extend_schema(responses=ArtifactListSerializer, operation_id="runs_artifacts_list")
@api_view(["GET"])
def run_artifacts(request: Request, public_id: str) -> Response:
    run = get_run_for(request, public_id)
    return Response(
        {
            "data": [
                {
                    "path": a.path,
                    "size": a.size,
                    "sha256": a.sha256,
                    "content_type": a.content_type,
                    "url": f"/api/v1/runs/{run.public_id}/artifacts/{a.path}",
                }
                for a in run.artifacts.all()
            ]
        }
    )


@extend_schema(
    responses={(200, "application/octet-stream"): OpenApiTypes.BINARY}, operation_id="runs_artifacts_download"
)
@api_view(["GET"])
def run_artifact_download(request: Request, public_id: str, path: str) -> FileResponse:
    run = get_run_for(request, public_id)
    artifact = run.artifacts.filter(path=path).first()
    if artifact is None:
        raise Http404
    return untrusted_file_response(
        artifact.file.open("rb"), filename=path.rsplit("/", 1)[-1], content_type=artifact.content_type
    )


def label_json(label: Label) -> dict:
    return {
        "id": label.pk,
        "key": label.key,
        "value": label.value,
        "event_seq": label.event.seq if label.event_id and label.event else None,
        "source": label.source,
        "author": label.author,
        "criterion": label.criterion or None,
        "rubric": label.rubric or None,
        "judge_model": label.judge_model or None,
        "prompt_version": label.prompt_version or None,
        "explanation": label.explanation,
        "raw_output": label.raw_output or None,
        "created": label.created.isoformat(),
        "updated": label.updated.isoformat(),
    }


LABEL_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="runs_labels")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="runs_labels"
)
@api_view(["GET", "POST"])
def run_labels(request: Request, public_id: str) -> Response:
    """A run's labels (every author's), or set one: `{"key", "value", "event_seq"?, "criterion"?, "reviewer"?,
    "explanation"?}`. A reviewer holds one label per key; setting it again keeps the old value in its history."""
    run = get_run_for(request, public_id)
    if request.method == "POST":
        body = request.data if isinstance(request.data, dict) else None
        if body is None:
            raise ApiError(400, "The body must be a JSON object")
        key = body.get("key")
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            raise ApiError(400, "`key` must be a name like `eval.pass` or `score.correctness`", param="key")
        if "value" not in body or body["value"] is None:
            raise ApiError(400, "`value` is required (DELETE the label to remove it)", param="value")
        event = None
        if body.get("event_seq") is not None:
            event = run.events.filter(seq=body["event_seq"]).first() if isinstance(body["event_seq"], int) else None
            if event is None:
                raise ApiError(400, f"The run has no event {body['event_seq']!r}", param="event_seq")
        principal = principal_of(request)
        reviewer = body.get("reviewer") or f"token:{principal.prefix}"
        for field in ("reviewer", "criterion", "explanation"):
            if not isinstance(body.get(field, ""), str) or len(body.get(field, "")) > 10_000:
                raise ApiError(400, f"`{field}` must be a string", param=field)
        label = record_label(
            run,
            key,
            body["value"],
            source=LabelSource.HUMAN,
            author=reviewer[:200],
            changed_by=f"token:{principal.prefix}",
            event=event,
            criterion=body.get("criterion") or (key.removeprefix("score.") if key.startswith("score.") else ""),
            explanation=body.get("explanation", ""),
        )
        return Response(label_json(label), status=201)
    labels = run.labels.select_related("event").order_by("key", "author")
    return Response({"object": "list", "data": [label_json(label) for label in labels]})


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="runs_labels_delete")
@api_view(["DELETE"])
def run_label_delete(request: Request, public_id: str, label_id: int) -> Response:
    run = get_run_for(request, public_id)
    label = run.labels.filter(pk=label_id).first()
    if label is None:
        raise Http404
    remove_label(label, changed_by=f"token:{principal_of(request).prefix}")
    return Response(status=204)


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="runs_labels_history")
@api_view(["GET"])
def run_label_history(request: Request, public_id: str) -> Response:
    """Every change of the run's labels: who, when, the previous value and the new one."""
    run = get_run_for(request, public_id)
    changes = run.label_changes.order_by("created", "id")[:5000]
    return Response(
        {
            "object": "list",
            "data": [
                {
                    "key": c.key,
                    "author": c.author,
                    "previous": c.previous,
                    "value": c.value,
                    "changed_by": c.changed_by,
                    "created": c.created.isoformat(),
                }
                for c in changes
            ],
        }
    )
