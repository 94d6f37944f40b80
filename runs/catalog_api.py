"""``/api/v1``: collections, their environment and secrets, versioned tasks, runs of stored tasks, the
step-template catalogue and routines. Org-scoped throughout; a collection-scoped token sees its collection only."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from orgs import outbound
from orgs.actions import update_environment
from orgs.api_errors import ApiError, invalid, json_object
from orgs.audit import Actor
from orgs.auth import principal_of
from orgs.models import NAME_PATTERN, NAME_RULE, Collection, CollectionVariable
from trajectories.models import FINAL_STATUSES, Run

from .limits import check_limits
from .models import Cadence, Routine, StepRun, Task, TaskKind, TaskVersion
from .results import run_summary
from .routines import create_routine, run_now, schedule_of
from .stored import declared_secrets, diff_versions, push_version, start_task_run
from .uploads import store_uploads

NAME = NAME_PATTERN
URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.I)
SYNC_POLL_S = 0.2


def get_collection_for(request: Request, name: str) -> Collection:
    """The one way views load a collection: the caller's org and scope, 404 otherwise."""
    principal = principal_of(request)
    collections = Collection.objects.filter(org=principal.org, name=name)
    if principal.collection is not None:
        collections = collections.filter(pk=principal.collection.pk)
    collection = collections.first()
    if collection is None:
        raise Http404
    return collection


def get_task_for(request: Request, collection: str, name: str) -> Task:
    task = (
        Task.objects.for_principal(principal_of(request))
        .filter(collection__name=collection, name=name)
        .select_related("collection")
        .first()
    )
    if task is None:
        raise Http404
    return task


# Collections


def collection_json(collection: Collection) -> dict[str, Any]:
    return {
        "object": "collection",
        "name": collection.name,
        "description": collection.description,
        "created": collection.created.isoformat(),
        "tasks": collection.tasks.count(),
    }


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="collections")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="collections"
)
@api_view(["GET", "POST"])
def collections(request: Request) -> Response:
    """List the collections you can see, or create one (`{"name", "description"}`)."""
    principal = principal_of(request)
    if request.method == "GET":
        found = Collection.objects.filter(org=principal.org).prefetch_related("tasks")
        if principal.collection is not None:
            found = found.filter(pk=principal.collection.pk)
        return Response({"object": "list", "data": [collection_json(c) for c in found]})
    if principal.collection is not None:
        raise ApiError(403, "A collection-scoped token cannot create collections", code="permission_denied")
    body = json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise invalid(f"`name` must be {NAME_RULE}", "name")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise invalid("`description` must be a string", "description")
    try:
        with transaction.atomic():
            collection = Collection.objects.create(org=principal.org, name=name, description=description)
    except IntegrityError:
        raise ApiError(409, f"Collection `{name}` already exists", code="conflict", param="name")
    return Response(collection_json(collection), status=201)


@extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, operation_id="collection")
@api_view(["GET", "PATCH", "DELETE"])
def collection_detail(request: Request, name: str) -> Response:
    collection = get_collection_for(request, name)
    if request.method == "DELETE":
        collection.delete()
        return Response(status=204)
    if request.method == "PATCH":
        description = json_object(request).get("description")
        if not isinstance(description, str):
            raise invalid("`description` must be a string", "description")
        collection.description = description
        collection.save(update_fields=["description"])
    return Response(collection_json(collection))


def environment_json(collection: Collection) -> dict[str, Any]:
    env: dict[str, str] = {}
    secrets: dict[str, Any] = {}
    for variable in CollectionVariable.objects.filter(collection=collection):
        if variable.secret:
            secrets[variable.name] = {"set": True, "updated": variable.updated.isoformat()}
        else:
            env[variable.name] = variable.value
    return {"object": "collection.environment", "collection": collection.name, "env": env, "secrets": secrets}


@extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, operation_id="collection_environment")
@api_view(["GET", "PATCH"])
def collection_environment(request: Request, name: str) -> Response:
    """A collection's environment: plain variables (`env`) and secrets (`secrets`, never returned in clear).
    PATCH merges: names not mentioned are kept, `null` deletes."""
    collection = get_collection_for(request, name)
    if request.method == "PATCH":
        body = json_object(request)
        unknown = set(body) - {"env", "secrets"}
        if unknown:
            raise invalid(f"Unknown field(s) {', '.join(sorted(unknown))}; send `env` and/or `secrets`")
        changes: list[tuple[str, str | None, bool]] = []
        for field, secret in (("env", False), ("secrets", True)):
            values = body.get(field, {})
            if not isinstance(values, dict):
                raise invalid(f"`{field}` must be an object of NAME: value (or null to delete)", field)
            for key, value in values.items():
                if not re.match(CollectionVariable.NAME_PATTERN, key):
                    raise invalid(f"`{key}` is not a valid variable name (letters, digits, `_`)", f"{field}.{key}")
                if value is not None and (not isinstance(value, str) or len(value) > 65536):
                    raise invalid(f"`{field}.{key}` must be a string (at most 64 KiB) or null", f"{field}.{key}")
                changes.append((key, value, secret))
        update_environment(collection, changes, actor=Actor.of(request))
    return Response(environment_json(collection))


@extend_schema(
    parameters=[
        OpenApiParameter("names", str, description="Comma-separated secret names"),
        OpenApiParameter("task", str, description="Check the secrets this runbook task declares"),
    ],
    responses=OpenApiTypes.OBJECT,
    operation_id="collection_secrets_check",
)
@api_view(["GET"])
def secrets_check(request: Request, name: str) -> Response:
    """Which secrets are set on the collection (by name, or those a runbook task declares), never their values."""
    collection = get_collection_for(request, name)
    names = [n for n in (request.query_params.get("names") or "").split(",") if n]
    required: dict[str, bool] = {n: True for n in names}
    if task_name := request.query_params.get("task"):
        task = get_task_for(request, name, task_name)
        if task.kind == TaskKind.RUNBOOK and task.latest_version:  # agent mode may make a task with no version
            declared = declared_secrets(task.version().runbook)
            required.update({n: spec["required"] for n, spec in declared.items()})
    if not required:
        raise invalid("Give `names` or `task`", "names")
    present = set(
        CollectionVariable.objects.filter(collection=collection, secret=True, name__in=required).values_list(
            "name", flat=True
        )
    )
    missing = sorted(n for n, needed in required.items() if needed and n not in present)
    return Response({"secrets": {n: n in present for n in sorted(required)}, "missing": missing, "ok": not missing})


# Tasks and versions


def version_json(version: TaskVersion, content: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "task.version",
        "task": version.task.name,
        "version": version.number,
        "message": version.message,
        "created": version.created.isoformat(),
        "validation": version.validation,
    }
    if content:
        data.update({"runbook": version.runbook or None, "workflow": version.workflow, "files": version.files})
    return data


def task_json(task: Task, content: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "task",
        "collection": task.collection.name,
        "name": task.name,
        "kind": task.kind,
        "description": task.description,
        "latest_version": task.latest_version,
        "created": task.created.isoformat(),
        "updated": task.updated.isoformat(),
    }
    if content and task.latest_version:
        data["version"] = version_json(task.version())
    return data


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="collection_tasks")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="collection_tasks"
)
@api_view(["GET", "POST"])
def tasks(request: Request, name: str) -> Response:
    """List a collection's tasks, or push a version of one: `{"name", "runbook"}` or `{"name", "workflow"}`, with
    optional `files` (other text files of the folder), `message` and `description`. The validator runs on every
    push and refuses (422) a version with errors."""
    collection = get_collection_for(request, name)
    if request.method == "GET":
        found = Task.objects.filter(collection=collection).select_related("collection")
        return Response({"object": "list", "data": [task_json(t) for t in found]})
    body = json_object(request)
    task_name = body.get("name")
    if not isinstance(task_name, str) or not NAME.match(task_name):
        raise invalid(f"`name` must be {NAME_RULE}", "name")
    runbook, workflow = body.get("runbook"), body.get("workflow")
    if (runbook is None) == (workflow is None):
        raise invalid("Send exactly one of `runbook` (markdown) and `workflow` (a JSON object)", "runbook")
    files = body.get("files") or {}
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise invalid("`files` must be an object of relative path: text", "files")
    if sum(len(v) for v in files.values()) > 5 * 1024 * 1024:
        raise ApiError(413, "`files` hold more than 5 MiB", code="request_too_large", param="files")
    for key in ("message", "description"):
        if not isinstance(body.get(key, ""), str):
            raise invalid(f"`{key}` must be a string", key)
    version = push_version(
        principal_of(request),
        collection,
        task_name,
        kind=TaskKind.RUNBOOK if runbook is not None else TaskKind.WORKFLOW,
        runbook=runbook or "",
        workflow=workflow,
        files=files,
        message=body.get("message", ""),
        description=body.get("description", ""),
    )
    return Response({**task_json(version.task), "version": version_json(version)}, status=201)


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="collection_task")
@api_view(["GET", "DELETE"])
def task_detail(request: Request, name: str, task: str) -> Response:
    found = get_task_for(request, name, task)
    if request.method == "DELETE":
        found.delete()
        return Response(status=204)
    return Response(task_json(found, content=True))


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="collection_task_versions")
@api_view(["GET"])
def task_versions(request: Request, name: str, task: str) -> Response:
    found = get_task_for(request, name, task)
    versions = found.versions.select_related("task").order_by("-number")
    return Response({"object": "list", "data": [version_json(v, content=False) for v in versions]})


def _version(task: Task, number: Any, param: str) -> TaskVersion:
    if not str(number).isdecimal():
        raise invalid(f"`{param}` must be a version number", param)
    version = task.versions.filter(number=int(number)).select_related("task").first()
    if version is None:
        raise ApiError(404, f"Task `{task.name}` has no version {number}", code="not_found", param=param)
    return version


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="collection_task_version")
@api_view(["GET"])
def task_version(request: Request, name: str, task: str, number: int) -> Response:
    return Response(version_json(_version(get_task_for(request, name, task), number, "version")))


@extend_schema(
    parameters=[OpenApiParameter("from", int), OpenApiParameter("to", int)],
    responses=OpenApiTypes.OBJECT,
    operation_id="collection_task_diff",
)
@api_view(["GET"])
def task_diff(request: Request, name: str, task: str) -> Response:
    """A unified diff between two versions (default: the one before the latest, and the latest)."""
    found = get_task_for(request, name, task)
    newest = found.latest_version
    old = _version(found, request.query_params.get("from", max(newest - 1, 1)), "from")
    new = _version(found, request.query_params.get("to", newest), "to")
    return Response({"object": "task.diff", "from": old.number, "to": new.number, "diff": diff_versions(old, new)})


# Running stored tasks


def _json_field(request: Request, field: str) -> dict[str, Any]:
    value = request.data.get(field) if hasattr(request.data, "get") else None
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise invalid(f"`{field}` must be a JSON object", field)
    if not isinstance(value, dict):
        raise invalid(f"`{field}` must be a JSON object", field)
    return value


def _start(request: Request, name: str, task: str) -> Run:
    found = get_task_for(request, name, task)
    if not found.latest_version:
        raise ApiError(409, f"Task `{task}` has no version yet", code="conflict")
    principal = principal_of(request)
    init_params = _json_field(request, "init_params")
    secret_params = _json_field(request, "secret_params")
    if not all(isinstance(v, str) for v in secret_params.values()):
        raise invalid("`secret_params` values must be strings", "secret_params")
    data: Any = request.data if hasattr(request.data, "get") else {}
    overrides: dict[str, Any] = {}
    fields = ("model", "agent", "snapshot", "webhook_url", "webhook_secret", "idempotency_key", "network", "contract")
    for field in fields:
        value = data.get(field)
        if value not in (None, ""):
            if not isinstance(value, str):
                raise invalid(f"`{field}` must be a string", field)
            overrides[field] = value
    if "webhook_url" in overrides:
        if not URL.match(overrides["webhook_url"]):
            raise invalid("`webhook_url` must be an http(s) URL", "webhook_url")
        outbound.require_url(overrides["webhook_url"], "webhook_url")
        overrides.setdefault("webhook_secret", "")
        if not overrides["webhook_secret"]:
            raise invalid("`webhook_secret` is required with `webhook_url` (it signs each delivery)", "webhook_secret")
    timeout = data.get("timeout_s")
    if timeout not in (None, ""):
        if not str(timeout).isdecimal() or not 1 <= int(timeout) <= 86400:
            raise invalid("`timeout_s` must be an integer from 1 to 86400", "timeout_s")
        overrides["timeout_s"] = int(timeout)
    if data.get("limits") not in (None, ""):
        try:
            overrides["limits"] = check_limits(_json_field(request, "limits"))
        except ValueError as exc:
            raise invalid(str(exc), "limits") from None
    files = request.FILES.getlist("files") if request.FILES else []
    file_paths = data.getlist("file_paths") if hasattr(data, "getlist") else data.get("file_paths")
    paths = [k for k in (file_paths or []) if isinstance(k, str)]
    if files:
        paths += [u.key for u in store_uploads(principal.org, files)]
    overrides["file_paths"] = paths
    version = data.get("version")
    if version not in (None, "") and not str(version).isdecimal():
        raise invalid("`version` must be a version number", "version")
    return start_task_run(
        principal,
        found,
        init_params,
        secret_params=secret_params,
        version=int(version) if version not in (None, "") else None,
        overrides=overrides,
    )


RUN_REQUEST = {
    "multipart/form-data": {
        "type": "object",
        "properties": {
            "init_params": {"type": "string", "description": "JSON object"},
            "secret_params": {"type": "string", "description": "JSON object of secrets for this run (never stored)"},
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "webhook_url": {"type": "string"},
            "webhook_secret": {"type": "string"},
            "model": {"type": "string"},
            "agent": {"type": "string"},
            "limits": {"type": "string", "description": "JSON object: any of cpus, memory_mb, pids, disk_mb"},
            "version": {"type": "integer"},
        },
    },
    "application/json": {"type": "object"},
}


def _load(run: Run) -> Run:
    return Run.objects.select_related("job", "collection", "parent").prefetch_related("artifacts").get(pk=run.pk)


@extend_schema(request=RUN_REQUEST, responses={202: OpenApiTypes.OBJECT}, operation_id="run_task")
@api_view(["POST"])
def run_task(request: Request, name: str, task: str) -> Response:
    """Start a run of a stored task and answer at once (202) with its id."""
    run = _load(_start(request, name, task))
    return Response({"object": "jetty.run", **run_summary(run)}, status=202)


@extend_schema(
    request=RUN_REQUEST, responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT}, operation_id="run_task_sync"
)
@api_view(["POST"])
def run_task_sync(request: Request, name: str, task: str) -> Response:
    """Start a run of a stored task and answer when it has ended (or with its current state after the wait)."""
    run = _start(request, name, task)
    deadline = time.monotonic() + settings.JETTY_RUN_SYNC_WAIT_S
    while time.monotonic() < deadline:
        if Run.objects.filter(pk=run.pk, status__in=FINAL_STATUSES).exists():
            break
        time.sleep(SYNC_POLL_S)
    run = _load(run)
    return Response({"object": "jetty.run", **run_summary(run)}, status=200 if run.status in FINAL_STATUSES else 202)


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="step_templates")
@api_view(["GET"])
def step_templates(request: Request) -> Response:
    """Every workflow step type, with the schemas of its params and outputs."""
    from .workflows.registry import step_types

    principal_of(request)
    return Response({"object": "list", "data": [cls.describe() for _, cls in sorted(step_types().items())]})


def child_ids(state: dict[str, Any]) -> list[str]:
    return [*state.get("run_ids", []), *([state["run_id"]] if "run_id" in state else [])]


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="runs_steps")
@api_view(["GET"])
def run_steps(request: Request, public_id: str) -> Response:
    """A workflow run's steps: each pass with its inputs, outputs, status and attempts."""
    from trajectories.api import get_run_for

    run = get_run_for(request, public_id)
    steps = StepRun.objects.filter(workflow__run=run).order_by("started", "id")
    return Response(
        {
            "object": "list",
            "data": [
                {
                    "name": s.name,
                    "type": s.step_type,
                    "visit": s.visit,
                    "status": s.status,
                    "attempts": s.attempts,
                    "inputs": s.inputs,
                    "outputs": s.outputs,
                    "error": s.error or None,
                    "children": child_ids(s.state),
                    "started": s.started.isoformat(),
                    "finished": s.finished.isoformat() if s.finished else None,
                }
                for s in steps
            ],
        }
    )


# Routines


def routine_json(routine: Routine) -> dict[str, Any]:
    return {
        "object": "routine",
        "id": routine.public_id,
        "collection": routine.task.collection.name,
        "task": routine.task.name,
        "cadence": routine.cadence,
        "minute": routine.minute,
        "hour": routine.hour,
        "weekday": routine.weekday,
        "init_params": routine.init_params,
        "paused": routine.paused,
        "next_run_at": routine.next_run_at.isoformat(),
        "last_run_id": routine.last_run.public_id if routine.last_run else None,
    }


def get_routine_for(request: Request, public_id: str) -> Routine:
    tasks = Task.objects.for_principal(principal_of(request))
    routine = (
        Routine.objects.filter(task__in=tasks, public_id=public_id)
        .select_related("task__collection", "last_run")
        .first()
    )
    if routine is None:
        raise Http404
    return routine


def routine_fields(body: dict[str, Any], partial: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if "cadence" in body or not partial:
        if body.get("cadence") not in Cadence.values:
            raise invalid(f"`cadence` must be one of {', '.join(Cadence.values)}", "cadence")
        fields["cadence"] = body["cadence"]
    for key, top in (("minute", 59), ("hour", 23), ("weekday", 6)):
        if key in body:
            if type(body[key]) is not int or not 0 <= body[key] <= top:
                raise invalid(f"`{key}` must be an integer from 0 to {top} (UTC; weekday 0 is Monday)", key)
            fields[key] = body[key]
    if "init_params" in body:
        if not isinstance(body["init_params"], dict):
            raise invalid("`init_params` must be an object", "init_params")
        fields["init_params"] = body["init_params"]
    unknown = set(body) - {"cadence", "minute", "hour", "weekday", "init_params"}
    if unknown:
        raise invalid(f"Unknown field(s) {', '.join(sorted(unknown))}")
    return fields


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="task_routines")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="task_routines"
)
@api_view(["GET", "POST"])
def task_routines(request: Request, name: str, task: str) -> Response:
    """A task's routines, or a new one: `{"cadence": "hourly|daily|weekdays|weekly", "minute", "hour", "weekday",
    "init_params"}` (UTC)."""
    found = get_task_for(request, name, task)
    if request.method == "GET":
        routines = found.routines.select_related("task__collection", "last_run")
        return Response({"object": "list", "data": [routine_json(r) for r in routines]})
    fields = routine_fields(json_object(request), partial=False)
    routine = create_routine(principal_of(request), found, fields, timezone.now())
    return Response(routine_json(routine), status=201)


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="routines")
@api_view(["GET"])
def routines(request: Request) -> Response:
    tasks = Task.objects.for_principal(principal_of(request))
    found = Routine.objects.filter(task__in=tasks).select_related("task__collection", "last_run").order_by("id")
    return Response({"object": "list", "data": [routine_json(r) for r in found]})


@extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, operation_id="routine")
@api_view(["GET", "PATCH", "DELETE"])
def routine_detail(request: Request, public_id: str) -> Response:
    routine = get_routine_for(request, public_id)
    if request.method == "DELETE":
        routine.delete()
        return Response(status=204)
    if request.method == "PATCH":
        for key, value in routine_fields(json_object(request), partial=True).items():
            setattr(routine, key, value)
        routine.next_run_at = schedule_of(routine, timezone.now())
        routine.save()
    return Response(routine_json(routine))


@extend_schema(
    request=None, responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT}, operation_id="routine_action"
)
@api_view(["POST"])
def routine_action(request: Request, public_id: str, action: str) -> Response:
    """`pause`, `resume` (from the next scheduled time after now) or `run` (at once, besides the schedule)."""
    routine = get_routine_for(request, public_id)
    now = timezone.now()
    if action == "run":
        run = run_now(routine, now)
        return Response({**routine_json(get_routine_for(request, public_id)), "run_id": run.public_id}, status=202)
    if action not in ("pause", "resume"):
        raise Http404
    routine.paused = action == "pause"
    if not routine.paused:
        routine.next_run_at = schedule_of(routine, now)
    routine.save(update_fields=["paused", "next_run_at"])
    return Response(routine_json(routine))
