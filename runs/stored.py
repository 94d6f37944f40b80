"""Stored tasks: push versions, and start runs of them (runbook tasks as agent runs, workflow tasks as workflow
runs), with the collection's environment and the caller's secrets reaching only what the runbook declares."""

from __future__ import annotations

import difflib
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from orgs.api_errors import ApiError
from orgs.auth import Principal
from orgs.models import Collection, CollectionVariable
from trajectories.actions import move_run
from trajectories.models import Run, RunKind, RunStatus

from .actions import AgentRequest, start_agent_run
from .contract import parse_mode
from .limits import runbook_limits
from .models import Job, Task, TaskKind, TaskVersion, Workflow
from .runbooks import parse as parse_runbook
from .runbooks import validate as validate_runbook

SECRET_PLACEHOLDER = re.compile(r"{{\s*secrets\.([A-Za-z_]\w*)\s*}}")
DEFAULT_MODEL = "scripted/default"


def declared_secrets(runbook: str) -> dict[str, dict[str, Any]]:
    """The runbook's ``secrets`` frontmatter: NAME -> {env, description, required}."""
    meta = parse_runbook(runbook)[0].frontmatter or {}
    declared = meta.get("secrets") if isinstance(meta.get("secrets"), dict) else {}
    result = {}
    for name, spec in (declared or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        result[str(name)] = {"env": str(spec.get("env") or name), "required": bool(spec.get("required", True))}
    return result


def fill_secret_placeholders(runbook: str, declared: dict[str, dict[str, Any]]) -> str:
    """``{{secrets.NAME}}`` becomes a reference to its environment variable (``$ENV``): the value itself reaches the
    sandbox only as that variable, never the runbook, the model or the trajectory."""
    return SECRET_PLACEHOLDER.sub(lambda m: f"${{{declared.get(m.group(1), {}).get('env', m.group(1))}}}", runbook)


def collection_environment(collection: Collection | None) -> tuple[dict[str, str], dict[str, str]]:
    """(plain variables, secrets) of a collection."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    if collection is not None:
        for variable in CollectionVariable.objects.filter(collection=collection):
            (secret if variable.secret else plain)[variable.name] = variable.value
    return plain, secret


def sandbox_secrets(runbook: str, available: dict[str, str]) -> dict[str, str]:
    """The secret environment of an agent run: only the secrets its runbook declares, under their env names."""
    env = {}
    missing = []
    for name, spec in declared_secrets(runbook).items():
        if name in available:
            env[spec["env"]] = available[name]
        elif spec["required"]:
            missing.append(name)
    if missing:
        raise ApiError(
            400,
            f"The runbook needs secret(s) {', '.join(missing)}: set them on the collection or pass `secret_params`",
            code="missing_secret",
            param="secret_params",
        )
    return env


# Versions


def diff_versions(old: TaskVersion, new: TaskVersion) -> str:
    return "".join(
        difflib.unified_diff(
            old.source.splitlines(keepends=True),
            new.source.splitlines(keepends=True),
            fromfile=f"{old.task.name}@v{old.number}",
            tofile=f"{new.task.name}@v{new.number}",
        )
    )


def check_version(kind: str, runbook: str, workflow: Any) -> dict[str, Any]:
    """The validator's report for a version about to be stored; ApiError 422 when it has errors."""
    if kind == TaskKind.RUNBOOK:
        if not isinstance(runbook, str) or not runbook.strip():
            raise ApiError(400, "A runbook task needs `runbook` (the markdown)", code="invalid_value", param="runbook")
        report = validate_runbook(runbook).as_dict()
        if not report["valid"]:
            first = report["errors"][0]
            line = f" (line {first['line']})" if first.get("line") else ""
            raise ApiError(
                422,
                f"The runbook has {len(report['errors'])} error(s); first: {first['message']}{line}",
                code="invalid_runbook",
                param="runbook",
            )
        return report
    from .workflows.definition import check_definition, outbound_problems

    problems = check_definition(workflow)
    if problems:
        raise ApiError(
            422,
            "The workflow is not valid: " + "; ".join(p.message for p in problems[:10]),
            code="invalid_workflow",
            param=problems[0].param,
        )
    refused = outbound_problems(workflow)
    if refused:
        raise ApiError(400, refused[0].message, code="outbound_forbidden", param=refused[0].param)
    return {"valid": True, "errors": [], "warnings": []}


def push_version(
    principal: Principal,
    collection: Collection,
    name: str,
    *,
    kind: str,
    runbook: str = "",
    workflow: Any = None,
    files: dict[str, str] | None = None,
    message: str = "",
    description: str = "",
) -> TaskVersion:
    """Store a new version of a task (creating the task on its first push). Refused (422) when it does not
    validate; the same content as the latest version stores nothing new and returns that version."""
    report = check_version(kind, runbook, workflow)
    with transaction.atomic():
        task, _ = Task.objects.select_for_update().get_or_create(
            collection=collection, name=name, defaults={"kind": kind, "description": description}
        )
        if task.kind != kind:
            raise ApiError(409, f"Task `{name}` is a {task.kind} task, not a {kind}", code="conflict", param="kind")
        latest = task.versions.filter(number=task.latest_version).first()
        content = {"runbook": runbook if kind == TaskKind.RUNBOOK else "", "workflow": workflow, "files": files or {}}
        if latest is not None and (latest.runbook, latest.workflow, latest.files) == tuple(content.values()):
            return latest
        task.latest_version += 1
        if description:
            task.description = description
        task.save()
        return TaskVersion.objects.create(
            task=task,
            number=task.latest_version,
            validation=report,
            message=message[:500],
            token_prefix=principal.prefix,
            **content,
        )


# Starting runs


def _principal_of(run: Run) -> Principal:
    return Principal(org=run.org, token=None, collection=run.collection, prefix=run.token_prefix)


def runbook_request(
    text: str,
    init_params: dict[str, Any],
    *,
    task: str,
    collection_id: int | None,
    version: int | None = None,
    secrets: dict[str, str],
    env: dict[str, str],
    overrides: dict[str, Any],
) -> AgentRequest:
    """An agent run of a stored runbook: settings from its frontmatter, the caller's overrides on top."""
    from .gateway.agent_mode import render_runbook

    meta = parse_runbook(text)[0].frontmatter or {}
    model = overrides.get("model") or meta.get("model") or DEFAULT_MODEL
    from .agents import agent_for, agent_names

    agent = overrides.get("agent") or meta.get("agent")
    if agent is not None and agent not in agent_names():
        raise ApiError(400, f"Unknown agent {agent!r}; available: {', '.join(agent_names())}", param="agent")
    chosen = agent_for(agent, model)
    assert chosen is not None
    runbook = render_runbook(fill_secret_placeholders(text, declared_secrets(text)), init_params, "init_params")
    contract_mode = parse_mode(overrides.get("contract"), text)
    if contract_mode is None:
        raise ApiError(400, "`contract` must be `enforce` (the default) or `report`", param="contract")
    return AgentRequest(
        model=model,
        runbook=runbook,
        instruction=overrides.get("instruction") or "Do the runbook.",
        task=task,
        agent=chosen.name,
        snapshot=overrides.get("snapshot") or meta.get("snapshot") or "general",
        params=init_params,
        timeout_s=int(overrides.get("timeout_s") or meta.get("timeout_s") or 1800),
        network=(overrides.get("network") or meta.get("network") or "on") == "on",
        limits={**runbook_limits(meta), **overrides.get("limits", {})},
        webhook_url=overrides.get("webhook_url", ""),
        webhook_secret=overrides.get("webhook_secret", ""),
        idempotency_key=overrides.get("idempotency_key", ""),
        collection_id=collection_id,
        file_paths=list(overrides.get("file_paths") or []),
        env=env,
        secrets=sandbox_secrets(text, secrets),
        parent_id=overrides.get("parent_id"),
        task_version=version,
        contract_mode=contract_mode,
    )


def start_workflow(
    principal: Principal,
    definition: dict[str, Any],
    init_params: dict[str, Any],
    *,
    task: str,
    collection_id: int | None,
    secrets: dict[str, str],
    env: dict[str, str],
    parent_id: int | None = None,
    idempotency_key: str = "",
    webhook_url: str = "",
    webhook_secret: str = "",
    file_paths: list[str] | None = None,
    task_version: int | None = None,
) -> Run:
    """Create a workflow run and queue it once committed (an idempotency key seen before returns that run)."""
    from orgs import crypto

    from .tasks import execute_run

    if idempotency_key:
        earlier = Job.objects.filter(org=principal.org, idempotency_key=idempotency_key).select_related("run").first()
        if earlier is not None:
            return earlier.run
    params = {**(definition.get("init_params") or {}), **init_params}
    try:
        with transaction.atomic():
            run = Run.objects.create(
                org=principal.org,
                collection_id=collection_id,
                task=task,
                kind=RunKind.WORKFLOW,
                token_prefix=principal.prefix,
                parent_id=parent_id,
                metadata={"params": sorted(params), **({"task_version": task_version} if task_version else {})},
            )
            Job.objects.create(
                run=run,
                org=principal.org,
                runbook="",
                params=params,
                env=env,
                secrets_encrypted=Job.seal(secrets),
                webhook_url=webhook_url,
                webhook_secret_encrypted=crypto.encrypt(webhook_secret) if webhook_secret else "",
                idempotency_key=idempotency_key,
                file_paths=file_paths or [],
                dispatched_at=timezone.now(),  # a workflow holds no worker while it waits: never held back
            )
            Workflow.objects.create(run=run, definition=definition)
            move_run(run.pk, RunStatus.QUEUED, task=task, kind="workflow")
            transaction.on_commit(lambda: execute_run.delay(run.pk))
    except IntegrityError:
        return Job.objects.get(org=principal.org, idempotency_key=idempotency_key).run
    return run


def start_task_run(
    principal: Principal,
    task: Task,
    init_params: dict[str, Any],
    *,
    secret_params: dict[str, str] | None = None,
    version: int | None = None,
    overrides: dict[str, Any] | None = None,
    inherited_secrets: dict[str, str] | None = None,
) -> Run:
    """Start a run of a stored task: its latest version (or the one named), with the collection's variables."""
    stored = task.versions.filter(number=version or task.latest_version).select_related("task").first()
    if stored is None:
        raise ApiError(404, f"Task `{task.name}` has no version {version}", code="not_found", param="version")
    plain, secret = collection_environment(task.collection)
    secrets = {**secret, **(inherited_secrets or {}), **(secret_params or {})}
    overrides = overrides or {}
    if task.kind == TaskKind.RUNBOOK:
        request = runbook_request(
            stored.runbook,
            init_params,
            task=task.name,
            collection_id=task.collection_id,
            version=stored.number,
            secrets=secrets,
            env=plain,
            overrides=overrides,
        )
        run, _ = start_agent_run(principal, request)
        return run
    return start_workflow(
        principal,
        stored.workflow or {},
        init_params,
        task=task.name,
        collection_id=task.collection_id,
        secrets=secrets,
        env=plain,
        parent_id=overrides.get("parent_id"),
        idempotency_key=overrides.get("idempotency_key", ""),
        webhook_url=overrides.get("webhook_url", ""),
        webhook_secret=overrides.get("webhook_secret", ""),
        file_paths=list(overrides.get("file_paths") or []),
        task_version=stored.number,
    )


def find_task(org_id: int, collection: Collection | None, ref: str) -> Task:
    """A task by ``name`` (in the given collection) or ``collection/name``."""
    collection_name, _, name = ref.rpartition("/")
    tasks = Task.objects.filter(collection__org_id=org_id, name=name)
    if collection_name:
        tasks = tasks.filter(collection__name=collection_name)
    elif collection is not None:
        tasks = tasks.filter(collection=collection)
    found = tasks.select_related("collection").first()
    if found is None:
        raise LookupError(f"no task {ref!r}")
    return found


def start_child_task(parent: Run, ref: str, init_params: dict[str, Any], *, key: str, secrets: dict[str, str]) -> Run:
    """A child run of a stored task, started by a workflow step (idempotent by ``key``)."""
    from .workflows.registry import StepFailed

    try:
        task = find_task(parent.org_id, parent.collection, ref)
    except LookupError as exc:
        raise StepFailed(f"task: {exc}") from None
    overrides = {"parent_id": parent.pk, "idempotency_key": key}
    try:
        return start_task_run(_principal_of(parent), task, init_params, overrides=overrides, inherited_secrets=secrets)
    except ApiError as exc:
        raise StepFailed(f"task {ref}: {exc.message}") from None


def start_child_runbook(
    parent: Run, params: dict[str, Any], *, key: str, secrets: dict[str, str], env: dict[str, str]
) -> Run:
    """The agent run of a workflow's ``runbook`` step (idempotent by ``key``)."""
    from .workflows.registry import StepFailed

    overrides = {**params, "parent_id": parent.pk, "idempotency_key": key}
    variables = params.get("template_variables") or {}
    try:
        if params.get("task"):
            task = find_task(parent.org_id, parent.collection, params["task"])
            if task.kind != TaskKind.RUNBOOK:
                raise StepFailed(f"task: {params['task']!r} is a workflow, not a runbook")
            return start_task_run(
                _principal_of(parent), task, variables, overrides=overrides, inherited_secrets=secrets
            )
        if not params.get("runbook"):
            raise StepFailed("give `runbook` (the markdown) or `task` (a stored runbook)")
        request = runbook_request(
            params["runbook"],
            variables,
            task=f"{parent.task}.runbook",
            collection_id=parent.collection_id,
            secrets=secrets,
            env=env,
            overrides=overrides,
        )
        run, _ = start_agent_run(_principal_of(parent), request)
        return run
    except LookupError as exc:
        raise StepFailed(f"task: {exc}") from None
    except ApiError as exc:
        raise StepFailed(exc.message) from None
