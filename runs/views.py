"""The web UI's pages about executing work: a run's page (header, outputs, artifacts, cancel) and the catalogue
of collections and tasks with a form to start a run. Reads go through the user's org, writes through the same
functions the API calls."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from orgs.api_errors import ApiError
from orgs.auth import Principal
from orgs.models import Collection
from orgs.serving import untrusted_file_response
from orgs.web import membership_for, require_write
from trajectories.models import FINAL_STATUSES, Run
from trajectories.views import get_run_for_user, timeline_rows, window

from .actions import cancel_run
from .models import Job, StepRun, Task, TaskVersion
from .results import final_answer, run_summary
from .stored import diff_versions, start_task_run
from .uploads import store_uploads

PREVIEW_BYTES = 100_000


def _text_of(artifact) -> str | None:
    if artifact is None or artifact.size > PREVIEW_BYTES:
        return None
    with artifact.file.open("rb") as handle:
        data = handle.read()
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _validation_rows(report: Any) -> list[dict[str, Any]]:
    """A validation report's checks as table rows, whatever its exact shape (a list, or a dict of checks)."""
    if not isinstance(report, dict):
        return []
    checks = report.get("stages") or report.get("checks") or report.get("results") or []
    if isinstance(checks, dict):
        checks = [{"name": k, **(v if isinstance(v, dict) else {"passed": v})} for k, v in checks.items()]
    rows = []
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, dict):
            passed = check.get("passed", check.get("ok", check.get("status")))
            rows.append({"name": check.get("name") or check.get("check") or "", "passed": passed, "detail": check})
    return rows


def header_context(run: Run, request: HttpRequest | None = None) -> dict[str, Any]:
    return {
        "run": run,
        "can_write": request is not None and membership_for(request).role != "viewer",
        "final": run.status in FINAL_STATUSES,
        "labels": run.labels.filter(event__isnull=True).order_by("key", "author"),
    }


@login_required
def run_page(request: HttpRequest, public_id: str) -> HttpResponse:
    run = get_run_for_user(request, public_id)
    job = Job.objects.filter(run=run).first()
    artifacts = list(run.artifacts.all())
    by_path = {a.path: a for a in artifacts}
    summary = run_summary(run)
    primary = next((by_path[p] for p in summary["primary_files"]), None)
    steps = StepRun.objects.filter(workflow__run=run).order_by("started", "id") if run.kind == "workflow" else []
    at_text = request.GET.get("at", "")
    at = int(at_text) if at_text.isdecimal() and len(at_text) < 10 else None
    page, more_before, more_after, first, last = window(run, at=at) if at else window(run, after=0)
    context = {
        **header_context(run, request),
        "nav": "runs",
        "replays": Run.objects.for_org(run.org).filter(metadata__replay__source_id=run.pk).order_by("created")[:50],
        "job": job,
        "answer": final_answer(run),
        "artifacts": artifacts,
        "summary_md": _text_of(by_path.get("summary.md")),
        "primary": primary,
        "primary_text": _text_of(primary),
        "validation": job.validation if job else None,
        "validation_rows": _validation_rows(job.validation if job else None),
        "steps": steps,
        "children": run.children.order_by("created")[:100],
        "at": at,
        "rows": timeline_rows(page),
        "more_before": more_before,
        "more_after": more_after,
        "first": first,
        "last": last,
        # Pushed notices need a channel layer shared with the workers (Redis); without one the page polls.
        "live_push": bool(settings.REDIS_URL),
    }
    return render(request, "runs/run.html", context)


@login_required
def run_header(request: HttpRequest, public_id: str) -> HttpResponse:
    """The header alone: the live page swaps it in when the run's state changes."""
    return render(request, "runs/_run_header.html", header_context(get_run_for_user(request, public_id), request))


@login_required
@require_POST
def run_cancel(request: HttpRequest, public_id: str) -> HttpResponse:
    run = get_run_for_user(request, public_id)
    require_write(membership_for(request))
    if Job.objects.filter(run=run).exists():
        cancel_run(run)
        messages.info(request, "Cancel requested: the run stops as soon as its worker notices.")
    if request.htmx:  # type: ignore[attr-defined]
        return run_header(request, public_id)
    return redirect(f"/runs/{run.public_id}/")


@login_required
def artifact_download(request: HttpRequest, public_id: str, path: str) -> FileResponse:
    run = get_run_for_user(request, public_id)
    artifact = run.artifacts.filter(path=path).first()
    if artifact is None:
        raise Http404("No such file")
    return untrusted_file_response(
        artifact.file.open("rb"),
        filename=path.rsplit("/", 1)[-1],
        content_type=artifact.content_type,
        download="download" in request.GET,
    )


def _collections(request: HttpRequest):
    return Collection.objects.filter(org=membership_for(request).org)


def get_task_for_user(request: HttpRequest, collection: str, name: str) -> Task:
    task = (
        Task.objects.filter(collection__org=membership_for(request).org, collection__name=collection, name=name)
        .select_related("collection")
        .first()
    )
    if task is None:
        raise Http404("No such task")
    return task


@login_required
def collections(request: HttpRequest) -> HttpResponse:
    rows = _collections(request).annotate(task_count=Count("tasks")).order_by("name")
    tasks = Task.objects.filter(collection__in=rows).select_related("collection").order_by("collection__name", "name")
    return render(request, "runs/collections.html", {"nav": "tasks", "collections": rows, "tasks": tasks})


@login_required
def task_page(request: HttpRequest, collection: str, name: str) -> HttpResponse:
    task = get_task_for_user(request, collection, name)
    versions = list(task.versions.order_by("-number"))
    shown = versions[0] if versions else None
    if (wanted := request.GET.get("version", "")).isdecimal():
        shown = next((v for v in versions if v.number == int(wanted)), None)
        if shown is None:
            raise Http404("No such version")
    diff = ""
    old, new = request.GET.get("from", ""), request.GET.get("to", "")
    if old.isdecimal() and new.isdecimal():
        pair = {v.number: v for v in versions}
        if int(old) not in pair or int(new) not in pair:
            raise Http404("No such version")
        diff = diff_versions(pair[int(old)], pair[int(new)])
    runs = Run.objects.for_org(task.collection.org).filter(collection=task.collection, task=task.name)[:20]
    return render(
        request,
        "runs/task.html",
        {
            "nav": "tasks",
            "task": task,
            "versions": versions,
            "shown": shown,
            "diff_lines": _diff_rows(diff),
            "runs": runs,
            "frontmatter": _frontmatter(shown),
            "findings": _findings(shown),
            "can_write": membership_for(request).role != "viewer",
        },
    )


def _findings(version: TaskVersion | None) -> list[dict[str, Any]]:
    report = version.validation if version is not None else {}
    return [{**f, "level": level} for level in ("error", "warning") for f in report.get(f"{level}s", [])]


def _diff_rows(diff: str) -> list[tuple[str, str]]:
    from trajectories.present import diff_class

    return [(diff_class(line), line) for line in diff.splitlines()]


def _frontmatter(version: TaskVersion | None) -> dict[str, Any]:
    if version is None or not version.runbook:
        return {}
    from .runbooks import parse

    runbook, _ = parse(version.runbook)
    return {"meta": runbook.frontmatter or {}, "variables": sorted(runbook.variables()), "body": runbook.body}


@login_required
@require_POST
def task_run(request: HttpRequest, collection: str, name: str) -> HttpResponse:
    """Start a run from the task page's form: parameters as JSON, files uploaded, optional model or agent."""
    task = get_task_for_user(request, collection, name)
    membership = membership_for(request)
    require_write(membership)
    back = f"/collections/{collection}/{name}/"
    try:
        params = json.loads(request.POST.get("init_params") or "{}")
    except ValueError:
        params = None
    if not isinstance(params, dict):
        messages.error(request, 'Parameters must be a JSON object, like {"repo": "…"}.')
        return redirect(back)
    if not task.latest_version:
        messages.error(request, "This task has no version yet.")
        return redirect(back)
    overrides: dict[str, Any] = {k: v for k in ("model", "agent", "snapshot") if (v := request.POST.get(k, "").strip())}
    principal = Principal(org=membership.org, token=None, prefix=f"web:{request.user.get_username()}"[:16])
    try:
        files = request.FILES.getlist("files")
        if files:
            overrides["file_paths"] = [u.key for u in store_uploads(membership.org, files)]
        run = start_task_run(principal, task, params, overrides=overrides)
    except ApiError as error:
        messages.error(request, error.message)
        return redirect(back)
    return redirect(f"/runs/{run.public_id}/")


def _web_principal(request: HttpRequest) -> Principal:
    membership = membership_for(request)
    return Principal(org=membership.org, token=None, prefix=f"web:{request.user.get_username()}"[:16])


@login_required
@require_POST
def run_replay(request: HttpRequest, public_id: str) -> HttpResponse:
    """Replay the run from its recording, and open the replay."""
    from .replay import start_replay

    source = get_run_for_user(request, public_id)
    require_write(membership_for(request))
    try:
        replay = start_replay(_web_principal(request), source)
    except ApiError as error:
        messages.error(request, error.message)
        return redirect(f"/runs/{source.public_id}/")
    return redirect(f"/runs/{replay.public_id}/")


@login_required
def fork_form(request: HttpRequest, public_id: str) -> HttpResponse:
    """The "fork from here" form of one model call: the models the org may use, the run's own first."""
    from .gateway.routing import models_for

    run = get_run_for_user(request, public_id)
    at = request.GET.get("at", "")
    if run.kind != "agent" or run.status not in FINAL_STATUSES or not at.isdecimal():
        return HttpResponse("")
    models = [m["id"] for m in models_for(_web_principal(request))]
    ordered = [run.model, *[m for m in models if m != run.model]]
    context = {"run": run, "at": int(at), "models": ordered, "can_write": membership_for(request).role != "viewer"}
    return render(request, "runs/_fork_form.html", context)


@login_required
@require_POST
def run_fork(request: HttpRequest, public_id: str) -> HttpResponse:
    """Fork the run after its first ``at`` model calls with the chosen model, and open it beside its source."""
    from .replay import start_replay

    source = get_run_for_user(request, public_id)
    membership = membership_for(request)
    require_write(membership)
    at, model = request.POST.get("at", ""), request.POST.get("model", "").strip()
    try:
        if not at.isdecimal():
            raise ApiError(400, "Choose where to fork (a model call)", param="at")
        if model and not membership.org.may_use_model(model):
            raise ApiError(404, f"The model `{model}` is not enabled for this organisation", param="model")
        fork = start_replay(_web_principal(request), source, at=int(at), model=model or None)
    except ApiError as error:
        messages.error(request, error.message)
        return redirect(f"/runs/{source.public_id}/")
    return redirect(f"/compare/?runs={source.public_id},{fork.public_id}")
