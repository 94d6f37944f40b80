"""Write functions for runs: start and cancel agent runs. Each owns its transaction and side effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orgs import crypto
from orgs.api_errors import ApiError
from orgs.auth import Principal
from orgs.models import Org
from trajectories.actions import move_run
from trajectories.models import FINAL_STATUSES, Run, RunKind, RunStatus

from .models import Job, Upload


@dataclass
class AgentRequest:
    model: str
    runbook: str
    instruction: str
    task: str
    agent: str
    snapshot: str
    params: dict[str, Any]
    timeout_s: int
    network: bool
    limits: dict[str, Any] = field(default_factory=dict)  # checked by runs.limits.check_limits
    webhook_url: str = ""
    webhook_secret: str = ""
    idempotency_key: str = ""
    collection_id: int | None = None
    file_paths: list[str] = field(default_factory=list)
    file_ids: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # environment variables, encrypted at rest
    parent_id: int | None = None
    task_version: int | None = None
    contract_mode: str = "enforce"  # runs/contract.py: enforce | report


def resolve_uploads(principal: Principal, request: AgentRequest) -> list[str]:
    """The upload keys a run names, all of them the caller's, or ApiError 400.

    A key is what the upload answered (``uploads/<batch>/<path>``); ``uploads/<path>``, as hosted Jetty's own
    examples write it (``"file_paths": ["uploads/diff.patch"]``), names the org's newest upload of that path."""
    found = dict(Upload.objects.filter(org=principal.org, key__in=request.file_paths).values_list("key", "key"))
    for key in request.file_paths:
        if key not in found and key.startswith("uploads/"):
            newest = Upload.objects.filter(org=principal.org, path=key.removeprefix("uploads/")).order_by("-pk")
            found[key] = newest.values_list("key", flat=True).first() or ""
    missing = [k for k in request.file_paths if not found.get(k)]
    if missing:
        raise ApiError(
            400, f"Unknown file_paths: {', '.join(missing[:5])}", code="invalid_value", param="jetty.file_paths"
        )
    by_id = dict(
        Upload.objects.filter(org=principal.org, public_id__in=request.file_ids).values_list("public_id", "key")
    )
    missing = [i for i in request.file_ids if i not in by_id]
    if missing:
        raise ApiError(400, f"Unknown files: {', '.join(missing[:5])}", code="invalid_value", param="jetty.files")
    keys = list(dict.fromkeys([*(found[k] for k in request.file_paths), *(by_id[i] for i in request.file_ids)]))
    places = list(Upload.objects.filter(org=principal.org, key__in=keys).values_list("path", flat=True))
    twice = next((path for path in places if places.count(path) > 1), None)
    if twice is not None:  # one would silently take the other's place
        raise ApiError(
            400,
            f"Two of the run's files would both be /app/assets/{twice}",
            code="duplicate_path",
            param="jetty.file_paths",
        )
    return keys


def start_agent_run(
    principal: Principal, request: AgentRequest, metadata: dict[str, Any] | None = None
) -> tuple[Run, bool]:
    """Create the run and its job, and queue it once committed. Returns (run, created); an idempotency key that
    was seen before returns the earlier run."""
    keys = resolve_uploads(principal, request)
    earlier = earlier_run(principal.org, request.idempotency_key)
    if earlier is not None:
        return earlier, False
    check_queue(principal.org)
    try:
        with transaction.atomic():
            run = Run.objects.create(
                org=principal.org,
                collection_id=request.collection_id,
                task=request.task,
                kind=RunKind.AGENT,
                model=request.model,
                agent=request.agent,
                snapshot=request.snapshot,
                token_prefix=principal.prefix,
                parent_id=request.parent_id,
                metadata={
                    "params": sorted(request.params),
                    **({"task_version": request.task_version} if request.task_version else {}),
                    **(metadata or {}),
                },
            )
            Job.objects.create(
                run=run,
                org=principal.org,
                runbook=request.runbook,
                instruction=request.instruction,
                params=request.params,
                network=request.network,
                timeout_s=request.timeout_s,
                limits=request.limits,
                webhook_url=request.webhook_url,
                webhook_secret_encrypted=crypto.encrypt(request.webhook_secret) if request.webhook_secret else "",
                idempotency_key=request.idempotency_key,
                file_paths=keys,
                env=request.env,
                secrets_encrypted=Job.seal(request.secrets),
                contract_mode=request.contract_mode,
            )
            move_run(run.pk, RunStatus.QUEUED, task=request.task, agent=request.agent, model=request.model)
            org_id = principal.org.pk
            transaction.on_commit(lambda: release_runs(org_id))
    except IntegrityError:
        return Job.objects.get(org=principal.org, idempotency_key=request.idempotency_key).run, False
    return run, True


def earlier_run(org: Org, idempotency_key: str) -> Run | None:
    """The run an idempotency key already started, if any."""
    if not idempotency_key:
        return None
    earlier = Job.objects.filter(org=org, idempotency_key=idempotency_key).select_related("run").first()
    return earlier.run if earlier is not None else None


def check_queue(org: Org) -> None:
    """ApiError 429 ``org_queue_limit`` when the org already has as many agent runs waiting as it may."""
    limit = settings.JETTY_ORG_MAX_QUEUED_RUNS
    if limit <= 0:
        return
    waiting = Run.objects.filter(org=org, kind=RunKind.AGENT, status=RunStatus.QUEUED).count()
    if waiting >= limit:
        raise ApiError(
            429,
            f"This org has {waiting} agent runs waiting to start, the most it may have queued "
            f"(JETTY_ORG_MAX_QUEUED_RUNS): start more when some have run.",
            code="org_queue_limit",
            param="jetty",
            headers={"Retry-After": "30"},
        )


def release_runs(org_id: int) -> list[int]:
    """Send the org's oldest held agent runs to the workers, as many as its concurrency limit has room for.

    Runs are held (queued, not yet sent) so that the broker never holds more than
    ``JETTY_ORG_MAX_CONCURRENT_RUNS`` of one org's runs: another org's run is never behind a long backlog. Called
    when a run is made and when one ends; the sweeper calls it too, so a release lost with a dying process is only
    late. Returns the ids of the runs sent.
    """
    from .tasks import execute_run

    limit = settings.JETTY_ORG_MAX_CONCURRENT_RUNS
    with transaction.atomic():
        Org.objects.select_for_update().filter(pk=org_id).exists()  # one release of an org's runs at a time
        agent_jobs = Job.objects.filter(org_id=org_id, run__kind=RunKind.AGENT)
        held = agent_jobs.filter(dispatched_at__isnull=True, run__status=RunStatus.QUEUED).order_by("pk")
        if limit > 0:
            active = agent_jobs.filter(
                dispatched_at__isnull=False, run__status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
            ).count()
            held = held[: max(0, limit - active)]
        run_ids = list(held.values_list("run_id", flat=True))
        Job.objects.filter(run_id__in=run_ids).update(dispatched_at=timezone.now())
        for run_id in run_ids:
            transaction.on_commit(lambda run_id=run_id: execute_run.delay(run_id))  # type: ignore[misc]
    return run_ids


def cancel_run(run: Run) -> Run:
    """Cancel a run: at once if it has not started, else by asking its worker to kill the sandbox."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(run=run).first()
        run.refresh_from_db()
        if run.status in FINAL_STATUSES:
            return run
        if job is None:  # a model call passing through, or a run recorded elsewhere: nothing here executes it
            raise ApiError(409, "Only runs Jetty executes can be cancelled", code="not_cancellable")
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        if run.status == RunStatus.QUEUED:
            return end_run(run.pk, RunStatus.CANCELLED, error_kind="user", error="cancelled on request")
        if run.kind == RunKind.WORKFLOW:
            from .tasks import execute_run

            # A workflow waiting for child runs holds no worker to notice: wake it. Its children stop now.
            transaction.on_commit(lambda: execute_run.delay(run.pk))
    for child in Run.objects.filter(parent=run).exclude(status__in=FINAL_STATUSES):
        cancel_run(child)
    return run


def end_run(run_id: int, status: str, **fields: Any) -> Run:
    """Move a run to a final state and, once committed, send it to its webhook if it has one."""
    from .tasks import deliver_webhook, execute_run
    from .timeline import flush_pending_calls

    with transaction.atomic():
        flush_pending_calls(run_id)
        run = move_run(run_id, status, **fields)
        Job.objects.filter(run_id=run_id).exclude(secrets_encrypted="").update(secrets_encrypted="")
        if Job.objects.filter(run_id=run_id).exclude(webhook_url="").exists():
            transaction.on_commit(lambda: deliver_webhook.delay(run_id))
        if run.parent_id is not None:
            parent_id = run.parent_id  # a waiting workflow step looks again at once
            transaction.on_commit(lambda: execute_run.delay(parent_id))
        org_id = run.org_id  # its slot is free: the org's next held run goes
        transaction.on_commit(lambda: release_runs(org_id))
    return run
