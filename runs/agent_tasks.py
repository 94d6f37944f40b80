"""The stored task an agent-mode call runs as.

``POST /v1/chat/completions`` with ``jetty.runbook``, a collection and a ``task`` keeps the runbook it sends as that
task's newest version, so the task page and the tasks API list the call's runs beside those of ``/api/v1/run``. The
first call creates the collection (for an org-wide token) and the task, as the hosted product does; later calls add
a version only when the runbook changed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from django.db import transaction

from orgs.api_errors import ApiError
from orgs.auth import Principal
from orgs.models import Collection
from trajectories.actions import EventRecord, append_events
from trajectories.models import Run

from .actions import AgentRequest, earlier_run, start_agent_run
from .models import Task, TaskKind, TaskVersion
from .stored import check_version, push_version

VERSION_MESSAGE = "sent to POST /v1/chat/completions (agent mode)"


@dataclass(frozen=True)
class TaskTarget:
    collection: str  # created with the run when it does not exist yet
    task: str | None  # None: the run joins the collection under agent mode's default task name, nothing is stored
    runbook: str  # as sent, its {{placeholders}} unfilled: each call fills them with its own values


def start_agent_mode_run(principal: Principal, request: AgentRequest, target: TaskTarget | None) -> tuple[Run, bool]:
    """Start an agent-mode run, as a run of its stored task when it names one. Returns (run, created).

    Everything is written in one transaction with the run itself, so a call refused on the way (unknown uploads, a
    full queue) leaves no collection, task or version behind. A runbook the validator refuses still runs (agent mode
    runs what it is sent) but is not stored: the run's log and its ``warnings`` say so.
    """
    if target is None:
        return start_agent_run(principal, request)
    earlier = earlier_run(principal.org, request.idempotency_key)
    if earlier is not None:  # that call stored what there was to store
        return earlier, False
    refusal = ""
    if target.task is not None:
        refuse_other_kinds(principal, target)
        try:
            check_version(TaskKind.RUNBOOK, target.runbook, None)
        except ApiError as error:
            refusal = error.message
    with transaction.atomic():
        collection, version, warnings = keep(principal, target, refusal)
        number = version.number if version is not None else None
        request = dataclasses.replace(request, collection_id=collection.pk, task_version=number)
        run, created = start_agent_run(principal, request, {"warnings": warnings} if warnings else None)
        if created and warnings:
            payloads = [{"level": "warning", "message": warning} for warning in warnings]
            append_events(run.pk, [EventRecord(kind="log", ts=time.time(), payload=p) for p in payloads])
    return run, created


def keep(principal: Principal, target: TaskTarget, refusal: str) -> tuple[Collection, TaskVersion | None, list[str]]:
    """The call's collection (made if new), its task and the version holding its runbook (none when the validator
    refused it, ``refusal``), and the warnings to give the run. Race-safe: the unique names make a second
    concurrent first call find what the first one made."""
    collection, _ = Collection.objects.get_or_create(org=principal.org, name=target.collection)
    if target.task is None:
        return collection, None, []
    if refusal:
        keep_task(collection, target.task)
        warning = (
            f"The runbook was not stored as a version of task `{target.task}`: {refusal}. It ran as sent; fix it "
            "(POST /api/v1/runbooks/validate shows every finding) to keep it with the task."
        )
        return collection, None, [warning]
    return collection, keep_runbook(principal, collection, target.task, target.runbook), []


def refuse_other_kinds(principal: Principal, target: TaskTarget) -> None:
    """ApiError 409 when the task exists as a workflow: agent mode never turns it into a runbook (nor runs under its
    name a run the task's page would take for one of its own)."""
    existing = Task.objects.filter(
        collection__org=principal.org, collection__name=target.collection, name=target.task
    ).first()
    if existing is not None and existing.kind != TaskKind.RUNBOOK:
        raise ApiError(
            409,
            f"Task `{target.collection}/{target.task}` is a {existing.kind} task; agent mode stores runbooks. Name "
            f"another `jetty.task`, or run it with POST /api/v1/run/{target.collection}/{target.task}",
            code="conflict",
            param="jetty.task",
        )


def keep_runbook(principal: Principal, collection: Collection, name: str, runbook: str) -> TaskVersion:
    """The task's newest version holding the runbook sent: the same text adds nothing; a changed one is pushed as a
    new version, keeping the folder's other files (agent mode sends only the runbook)."""
    task = Task.objects.filter(collection=collection, name=name).first()
    latest = task.versions.filter(number=task.latest_version).first() if task is not None else None
    if latest is not None and latest.runbook == runbook:
        return latest
    files = latest.files if latest is not None else None
    return push_version(
        principal, collection, name, kind=TaskKind.RUNBOOK, runbook=runbook, files=files, message=VERSION_MESSAGE
    )


def keep_task(collection: Collection, name: str) -> Task:
    """The task row alone (its versions untouched), so its page lists the run of a runbook that was not stored."""
    task, _ = Task.objects.get_or_create(collection=collection, name=name, defaults={"kind": TaskKind.RUNBOOK})
    if task.kind != TaskKind.RUNBOOK:  # made a workflow since refuse_other_kinds() looked
        raise ApiError(409, f"Task `{name}` is a {task.kind} task", code="conflict", param="jetty.task")
    return task
